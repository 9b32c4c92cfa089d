"""Deleting a member from an InfluxDB store: its raw samples, rollup markers and rollups, and the contributors'
values of the released cells its group contributed to (see :mod:`storage.ledger`).

InfluxDB 1.x deletes with InfluxQL ``DELETE FROM <measurement> WHERE "member" = '…'`` (across every
retention policy of the database); InfluxDB 2.x with ``POST /api/v2/delete`` and a predicate on the
measurement and the member tag. Both write tombstones: the points are gone from every query at once and
leave the files when InfluxDB compacts the shards. The counts come from ``count()`` queries before the
deletion; a count query afterwards must find none.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from wire.codec import MAX_TS_NS, MIN_TS_NS

from ..errors import StoreUnavailable
from ..ledger import ReleasedCell, erase_values
from .connection import Execute, WriteLines, source
from .influxql import ident, literal, time_range, where
from .lineprotocol import encode_lines, encode_point

#: (measurement, which retention policy it lives in, a field every point of it has).
MEMBER_MEASUREMENTS: tuple[tuple[str, str, str], ...] = (
    ("samples", "raw", "quality"),
    ("rollup_dirty", "raw", "written_ns"),
    ("rollups", "rollups", "samples"),
)


def count_member_points(execute: Execute, rps: dict[str, str | None], member: str) -> dict[str, int]:
    """Points of ``member`` per measurement."""
    counts: dict[str, int] = {}
    for measurement, rp, field in MEMBER_MEASUREMENTS:
        cond = where(f"{ident('member')} = {literal(member)}", time_range(None, None))
        rows = execute(f"SELECT count({ident(field)}) FROM {source(measurement, rps[rp])} WHERE {cond}")
        values = rows.columns.get("count") or [0]
        counts[measurement] = int(values[0] or 0)
    return counts


def delete_points_v1(execute: Execute, member: str) -> None:
    for measurement, _, _ in MEMBER_MEASUREMENTS:
        execute(f"DELETE FROM {ident(measurement)} WHERE {ident('member')} = {literal(member)}")


def delete_points_v2(post: Callable[[dict[str, str]], httpx.Response], member: str) -> None:
    """``POST /api/v2/delete`` once per measurement (``post`` adds org and bucket)."""
    for measurement, _, _ in MEMBER_MEASUREMENTS:
        body = {
            "start": _rfc3339(MIN_TS_NS),
            "stop": _rfc3339(MAX_TS_NS),
            "predicate": f'_measurement="{measurement}" AND member="{member}"',
        }
        r = post(body)
        if r.status_code != 204:
            raise StoreUnavailable(
                f"InfluxDB delete of {member} in {measurement} failed: HTTP {r.status_code} {r.text[:300]}"
            )


def erase_ledger_values(
    execute: Execute, write_lines: WriteLines, ledger_rp: str | None, group: str, now_ns: int
) -> int:
    """Rewrite every ledger point whose cell ``group`` contributed to without its values; return how many."""
    rows = execute(f"SELECT {ident('entry')} FROM {source('release_ledger', ledger_rp)} WHERE {time_range(None, None)}")
    lines: list[str] = []
    for text in rows.columns.get("entry", []):
        changed = erase_values(ReleasedCell.from_json(text), group, now_ns)
        if changed is not None:
            tags = {"kpi": changed.kpi, "asset_class": changed.asset_class, "period": changed.period}
            lines.append(encode_point("release_ledger", tags, {"entry": changed.to_json()}, changed.period_start_ns))
    if lines:
        write_lines(encode_lines(lines), rp=ledger_rp)
    return len(lines)


def _rfc3339(ns: int) -> str:
    from datetime import UTC, datetime

    seconds, rest = divmod(ns, 10**9)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{rest:09d}Z"
