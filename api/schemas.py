"""Request and response models of the API (they make the OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .disclosure import Band

SeriesFormat = Literal["json", "csv", "arrow", "parquet"]
ArrowCompression = Literal["zstd", "lz4", "none"]
AggName = Literal["mean", "min", "max", "last", "sum", "count"]
PeriodName = Literal["hour", "day", "week", "month"]
BenchmarkPeriod = Literal["day", "week", "month"]
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
    energy_per_good_part_kwh: float | None
    co2e_per_good_part_kg: float | None
    utilisation: float | None
    scrap_rate: float | None
    good_parts_per_hour: float | None


class KpiResponse(BaseModel):
    period: PeriodName
    start: datetime
    end: datetime
    data: list[KpiRow]


class OwnPosition(BaseModel):
    value: float = Field(description="The member's own value (its assets of the class pooled)")
    band: Band = Field(description="Where the own value lies among the published percentiles")


class BenchmarkCell(BaseModel):
    period_start: datetime
    period_end: datetime
    status: Literal["published", "suppressed"]
    reason_code: Literal["not_released", "too_few_contributors", "dominance"] | None = None
    reason: str | None = Field(default=None, description="Why the cell is suppressed; null when published")
    contributors: int | None = None
    p10: float | None = None
    p25: float | None = None
    median: float | None = None
    p75: float | None = None
    p90: float | None = None
    mean: float | None = None
    own: OwnPosition | None = Field(default=None, description="Member tokens only, published cells only")


class PrivacyNote(BaseModel):
    epsilon_spent: float = Field(description="Epsilon this answer cost")
    epsilon_remaining: float = Field(description="What the analyst's budget has left")


class BenchmarkResponse(BaseModel):
    kpi: str
    unit: str
    higher_is_better: bool
    asset_class: str
    period: BenchmarkPeriod
    percentile_method: str
    differential_privacy: PrivacyNote | None = None
    cells: list[BenchmarkCell]


class SignalInfo(BaseModel):
    name: str
    unit: str
    kind: str
    description: str


class AssetClassInfo(BaseModel):
    name: str
    label: str
    contributing_members: int = Field(ge=0, description="Members with data in this class")


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


TokenCreate = Annotated[MemberTokenCreate | StaffTokenCreate, Field(discriminator="role")]


class TokenInfo(BaseModel):
    id: str
    role: RoleName
    member: str | None
    label: str
    created: str
    revoked: str | None


class TokenCreated(TokenInfo):
    token: str = Field(description="The token itself; shown only in this response")


class Health(BaseModel):
    status: Literal["ok", "ready"]
    checks: dict[str, Any] = Field(default_factory=dict)
