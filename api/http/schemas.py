"""Request and response models of the API (they make the OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from storage import Agg

from ..core.kpis import BenchmarkPeriod, Period

SeriesFormat = Literal["json", "csv", "arrow", "parquet"]
ArrowCompression = Literal["zstd", "lz4", "none"]
AggName = Agg
PeriodName = Period
RoleName = Literal["member", "analyst", "admin"]
MemberId = Annotated[str, Field(pattern=r"^m-[0-9a-f]{6,32}$", description="A member pseudonym")]


class Problem(BaseModel):
    """An RFC 9457 problem detail (media type ``application/problem+json``)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="URI reference identifying the problem type")
    title: str
    status: int
    detail: str
    instance: str | None = None


class SeriesRow(BaseModel):
    ts: datetime = Field(description="UTC timestamp (RFC 3339, nanoseconds); bucket start when downsampled")
    member: str
    asset: str
    asset_class: str
    signal: str
    value: float | None = Field(description="Numeric value; null for state signals")
    text: str | None = Field(description="The state for state signals, else null")
    quality: int = Field(ge=0, le=2, description="0 good, 1 uncertain, 2 bad")


class SeriesPage(BaseModel):
    rows: int = Field(ge=0, description="Rows in this page")
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next page; null on the last page")
    data: list[SeriesRow]


class KpiRow(BaseModel):
    member: str
    asset: str
    asset_class: str
    period_start: datetime
    period_end: datetime
    energy_kwh: float
    co2e_kg: float
    parts_total: float
    parts_scrap: float
    parts_good: float
    seconds_running: float
    seconds_observed: float
    downtime_s: dict[str, float] = Field(
        default_factory=dict,
        description=(
            "Seconds of downtime by reason (breakdown, tooling, material, ...), from the asset's downtime_reason "
            "signal; reasons without downtime are left out"
        ),
    )
    energy_per_good_part_kwh: float | None
    co2e_per_good_part_kg: float | None
    utilisation: float | None
    scrap_rate: float | None
    good_parts_per_hour: float | None


class KpiResponse(BaseModel):
    period: PeriodName
    start: datetime
    end: datetime
    as_of: datetime | None = Field(
        default=None,
        description=(
            "The rollups this answer was computed from hold every sample the hub had accepted by this time; "
            "samples accepted later are not in it yet (they are folded in within seconds). Null when the hub "
            "has not completed a rollup refresh since it started"
        ),
    )
    data: list[KpiRow]


class OwnPosition(BaseModel):
    value: float = Field(description="The member's own value (its assets of the class pooled), from its own data")
    band: str | None = Field(
        default=None,
        description=(
            "Where the own value lies among the cell's published figures (quantiles, else the mean), named by "
            "the edges: below_median, median_p75, above_p90, below_mean ...; a value on an edge is in the band "
            "above. Null when the cell is suppressed"
        ),
    )


class BenchmarkCell(BaseModel):
    period_start: datetime
    period_end: datetime
    status: Literal["published", "suppressed"]
    reason_code: (
        Literal["not_released", "too_few_contributors", "dominance", "homogeneous", "differencing", "values_erased"]
        | None
    ) = None
    reason: str | None = Field(default=None, description="Why the cell is suppressed; null when published")
    contributors: Literal["5–9", "10–19", "20–49", "50+"] | None = Field(
        default=None, description="Independent contributors (corporate groups), as a band"
    )
    mean: float | None = Field(default=None, description="Mean of the contributors' values (every published cell)")
    p10: float | None = Field(default=None, description="Weeks and months, from 30 contributors on")
    p25: float | None = Field(default=None, description="Weeks and months, from 20 contributors on")
    median: float | None = Field(default=None, description="Weeks and months, from 10 contributors on")
    p75: float | None = Field(default=None, description="Weeks and months, from 20 contributors on")
    p90: float | None = Field(default=None, description="Weeks and months, from 30 contributors on")
    released_at: datetime | None = Field(default=None, description="When the cell was released and frozen")
    own: OwnPosition | None = Field(default=None, description="Member tokens only: the member's own value")


class PrivacyNote(BaseModel):
    epsilon_spent: float = Field(description="Epsilon this answer cost")
    epsilon_remaining: float = Field(description="What the analyst's budget has left")
    noisy: dict[str, str] = Field(
        default_factory=dict, description="Per figure: the differential-privacy noise it carries and its scale"
    )
    contributors_noised: bool = Field(
        default=False, description="False: the contributor band is the released one, not noised"
    )


class BenchmarkResponse(BaseModel):
    kpi: str
    unit: str
    higher_is_better: bool
    asset_class: str
    period: BenchmarkPeriod
    release_delay_days: int = Field(description="Cells of this KPI are released this many days after the period")
    quantile_method: str
    perturbation: str = Field(description="How every published figure is perturbed and rounded")
    differential_privacy: PrivacyNote | None = None
    as_of: datetime | None = Field(
        default=None,
        description=(
            "For the member's own values and the cells this request released: their rollups hold every sample "
            "the hub had accepted by this time. Null when no rollups were read (cells served from the release "
            "ledger are frozen as released, see released_at)"
        ),
    )
    cells: list[BenchmarkCell]


class SignalInfo(BaseModel):
    name: str
    unit: str
    kind: str
    description: str


class AssetClassInfo(BaseModel):
    name: str
    label: str
    contributors: Literal["5–9", "10–19", "20–49", "50+"] | None = Field(
        default=None,
        description=(
            "Contributor band of the class's most recent published daily benchmark cell; null while none is "
            "published (the same figure a benchmark shows, never more)"
        ),
    )


class KpiInfo(BaseModel):
    name: str
    unit: str
    description: str
    higher_is_better: bool


class Catalog(BaseModel):
    signals: list[SignalInfo]
    asset_classes: list[AssetClassInfo]
    kpis: list[KpiInfo]
    periods: list[PeriodName]
    benchmark_periods: list[BenchmarkPeriod]
    release_delay_days: int
    release_delay_days_by_kpi: dict[str, int] = Field(description="Release delay of each KPI's benchmark cells")
    min_contributors: int
    formats: list[SeriesFormat]


class Me(BaseModel):
    token_id: str
    role: RoleName
    member: str | None
    asset_classes: list[str] = Field(description="Asset classes the member has data in (member tokens)")


class MemberTokenCreate(BaseModel):
    """A member token: bound to one member pseudonym."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["member"]
    member: MemberId
    label: str = Field(default="", max_length=200)


class StaffTokenCreate(BaseModel):
    """An analyst or admin token: bound to no member."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["analyst", "admin"]
    label: str = Field(default="", max_length=200)
    purpose: str | None = Field(
        default=None,
        pattern=r"^[a-z][a-z0-9_-]{1,31}$",
        description="Analyst tokens: the purpose their queries serve (default research); members' consent decides",
    )


TokenCreate = Annotated[MemberTokenCreate | StaffTokenCreate, Field(discriminator="role")]


class TokenInfo(BaseModel):
    id: str
    role: RoleName
    member: str | None
    label: str
    created: str
    revoked: str | None
    purpose: str | None = None


class TokenCreated(TokenInfo):
    token: str = Field(description="The token itself; shown only in this response")


class AccessLogEntry(BaseModel):
    time: datetime = Field(description="When the answer was sent (UTC)")
    token_id: str = Field(description="The analyst token's id (never the token)")
    endpoint: str
    purpose: str | None = Field(description="The purpose the analyst token is bound to")
    rows: int = Field(description="Rows of this member in the answer")
    status: int = Field(description="HTTP status of the answer")


class AccessLog(BaseModel):
    member: str
    entries: list[AccessLogEntry]


class Health(BaseModel):
    status: Literal["ok", "ready"]
    checks: dict[str, Any] = Field(default_factory=dict)
