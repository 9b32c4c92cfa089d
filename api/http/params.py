"""Query-parameter helpers shared by routes: UTC times, period windows, downsampling widths."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from ..core.kpis import to_ns
from ..errors import InvalidRequest

#: A bucket width: up to 999999 s or min, 99999 h, 9999 d (so that the width in ns fits a 64-bit integer).
EVERY_PATTERN = r"^([1-9][0-9]{0,5}(s|m)|[1-9][0-9]{0,4}h|[1-9][0-9]{0,3}d)$"
EVERY_RE = re.compile(EVERY_PATTERN)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}

#: Default look-back when a request gives no ``start``.
DEFAULT_SPAN: dict[str, timedelta] = {
    "hour": timedelta(days=7),
    "day": timedelta(days=92),
    "week": timedelta(weeks=53),
    "month": timedelta(days=731),
}
#: Nominal period lengths, for bounding how many periods a request spans.
NOMINAL: dict[str, timedelta] = {
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
    "week": timedelta(weeks=1),
    "month": timedelta(days=28),
}
EARLIEST = datetime(1971, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)

__all__ = ["DEFAULT_SPAN", "EARLIEST", "LATEST", "NOMINAL", "every_seconds", "to_ns", "utc", "window"]


def utc(value: datetime | None) -> datetime | None:
    """``value`` as an aware UTC datetime (naive values are taken as UTC), clamped into the years
    1971..2199 (no data lies outside them, so a query asking for more means the same)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        value = value.astimezone(UTC)
    except OverflowError:  # an offset pushing year 1 or 9999 out of range
        value = EARLIEST if value.year < 1971 else LATEST
    return min(max(value, EARLIEST), LATEST)


def every_seconds(every: str | None) -> int | None:
    if every is None:
        return None
    m = EVERY_RE.match(every)
    if m is None:
        raise InvalidRequest("every: a duration like 30s, 15m, 1h or 1d")
    return int(every[:-1]) * _UNIT_S[every[-1]]


def window(
    start: datetime | None, end: datetime | None, period: str, now: datetime, max_periods: int
) -> tuple[datetime, datetime]:
    """The [start, end) a KPI or benchmark request covers, bounded to ``max_periods`` periods."""
    end_ = utc(end) or now
    start_ = utc(start) or (end_ - DEFAULT_SPAN[period])
    start_ = min(start_, end_)  # start >= end: an empty window
    if (end_ - start_) / NOMINAL[period] > max_periods:
        raise InvalidRequest(f"the time range spans more than {max_periods} {period} periods; narrow it")
    return start_, end_
