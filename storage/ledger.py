"""The release ledger: benchmark cells as they were released, frozen (see docs/disclosure.md).

A released cell is computed once and kept here; the API serves it from here ever
after, so data that arrives later for a released period never changes it. Entries
are written "if absent": the first release of a cell wins, a second one is
ignored. Both stores keep the ledger (DuckDB: table ``release_ledger``; InfluxDB:
measurement ``release_ledger``, one point per cell with the entry as a JSON string
field, tags ``kpi``, ``asset_class`` and ``period``, time = period start).

``groups`` and ``values`` are the trustee's working data (the contributor set and
the contributors' values, for the differencing rule and for analysts' differential
privacy); they are never sent to a client.

When a member's data is deleted (:meth:`storage.base.Store.delete_member`), every
cell its corporate group contributed to loses its ``values`` (:func:`erase_values`):
they are kept sorted and unlinked from the groups, so the member's own value cannot be
picked out, and all of them go. The published figures (aggregates of at least five
groups), the band, the digest and ``groups`` (group pseudonyms, which the differencing
rule of later releases needs) stay; ``values_erased_ns`` records when.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

CellStatus = Literal["published", "suppressed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleasedCell:
    kpi: str
    asset_class: str
    period: str
    period_start_ns: int
    period_end_ns: int
    status: CellStatus
    reason_code: str | None = None
    #: The published figures (``mean`` and the quantiles of the tier), already perturbed and rounded.
    figures: dict[str, float] = field(default_factory=dict)
    #: The contributor band (``5–9`` ...); ``None`` for a suppressed cell.
    contributors: str | None = None
    #: Digest of the contributor set (groups whose contribution entered the cell).
    digest: str = ""
    released_at_ns: int = 0
    rules_version: str = ""
    #: Contributions excluded as implausible when the cell was released.
    excluded: int = 0
    #: Trustee-internal: the contributor set and the contributors' values.
    groups: tuple[str, ...] = ()
    values: tuple[float, ...] = ()
    #: When ``values`` were erased because a contributor's data was deleted (0: never).
    values_erased_ns: int = 0

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.kpi, self.asset_class, self.period, self.period_start_ns)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ReleasedCell:
        raw: dict[str, Any] = json.loads(text)
        raw["groups"] = tuple(raw.get("groups", ()))
        raw["values"] = tuple(float(v) for v in raw.get("values", ()))
        raw["figures"] = {str(k): float(v) for k, v in raw.get("figures", {}).items()}
        return cls(**raw)


def erase_values(cell: ReleasedCell, group: str, now_ns: int) -> ReleasedCell | None:
    """``cell`` without its contributors' values if ``group`` contributed to it and values are left; else ``None``."""
    if group not in cell.groups or not cell.values:
        return None
    return replace(cell, values=(), values_erased_ns=now_ns)
