"""Settings of the analytics API: one plain pydantic section the hub composes into its settings file.

Nothing here is built at import time; the entry point builds :class:`ApiSettings`
(usually as the ``[api]`` table of the hub's TOML file) and passes it to
:func:`api.app.create_app`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.configfile import with_paths_resolved

from .core.disclosure import DEFAULT_RELEASE_DELAYS, Rules

#: The disclosure rules' defaults are the settings' defaults: one place says what a cell needs.
_RULES = Rules()


class DPSettings(BaseModel):
    """Optional differential privacy for analyst benchmark answers (see docs/disclosure.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    #: Privacy cost of one published benchmark cell (count, mean and five percentiles together).
    epsilon_per_cell: float = Field(default=0.5, gt=0, le=10)
    #: Total epsilon an analyst token may spend; answers that would exceed it are refused.
    budget_per_analyst: float = Field(default=10.0, gt=0)
    #: JSON file recording the epsilon spent per analyst token.
    budget_file: Path = Path("dp_budget.json")
    #: Clipping bounds per KPI: each company's value is clipped into [low, high] before noise.
    clip: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: {
            "energy_per_good_part_kwh": (0.0, 50.0),
            "co2e_per_good_part_kg": (0.0, 25.0),
            "utilisation": (0.0, 1.0),
            "scrap_rate": (0.0, 1.0),
            "good_parts_per_hour": (0.0, 2000.0),
        }
    )

    @model_validator(mode="after")
    def _bounds_ordered(self) -> DPSettings:
        for kpi, (low, high) in self.clip.items():
            if not low < high:
                raise ValueError(f"dp.clip.{kpi}: low must be below high (got {low}, {high})")
        return self


class ApiSettings(BaseModel):
    """The ``[api]`` section of the hub's settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    #: How long one thread may keep Python's interpreter lock while another waits for it (``sys.setswitchinterval``),
    #: set for the whole process when the API role starts. Python's own 5 ms let the process's busy threads
    #: (ingest, rollup refresh, store writers) hold up a request at every return from I/O: with 0.5 ms the p95 of a
    #: member's /v1/kpis under live ingest fell from ~230 to ~85 ms, for ~6 % more CPU per point of an ingestor in
    #: the same process (docs/api.md, "Latency under load").
    switch_interval_ms: float = Field(default=0.5, gt=0, le=100)
    #: JSON file of hashed tokens (written by ``metalldaten tokens``).
    tokens_file: Path = Path("tokens.json")
    #: JSON-lines audit log of every analyst and admin request.
    audit_log: Path = Path("audit.log")
    #: A benchmark period is published only once it ended at least this many days ago.
    release_delay_days: int = Field(default=_RULES.release_delay.days, ge=0)
    #: Release delay per KPI, overriding ``release_delay_days`` (utilisation: close to capacity, so later).
    release_delay_days_by_kpi: dict[str, int] = Field(
        default_factory=lambda: {k: d.days for k, d in DEFAULT_RELEASE_DELAYS.items()}
    )
    #: p%-rule: no contributor may estimate another's total within this fraction (not published).
    p_percent: float = Field(default=_RULES.p_percent, gt=0, lt=1)
    #: Bound of the keyed multiplicative noise on every published benchmark figure.
    cell_noise: float = Field(default=_RULES.noise, ge=0, lt=0.5)
    #: Significant digits of published benchmark figures.
    significant_digits: int = Field(default=_RULES.significant_digits, ge=1, le=6)
    #: Secret key of the keyed noise (made on first start, 0600). Keep it with the store.
    cell_key_file: Path = Path("cell_key")
    #: Independent contributors (corporate groups) a published cell needs at least.
    min_contributors: int = Field(default=_RULES.min_contributors, ge=2)
    #: Largest contributor's share of an additive cell total: at most this.
    max_share_largest: float = Field(default=_RULES.max_share_largest, gt=0, le=1)
    #: The two largest contributors' share of an additive cell total: strictly below this.
    max_share_two_largest: float = Field(default=_RULES.max_share_two_largest, gt=0, le=1)
    #: Most rows one page of ``/v1/series`` may carry (the default page size too).
    max_page_rows: int = Field(default=1_000_000, ge=1)
    #: Most periods one benchmark or KPI answer may span.
    max_periods: int = Field(default=800, ge=1)
    dp: DPSettings = Field(default_factory=DPSettings)
    #: A KPI or benchmark request folds in the pending data of the assets it reads when at most this many
    #: of them are pending; else (or while the background refresh runs) it reads the rollups as kept and its
    #: ``as_of`` says up to when they are complete. 0: never refresh in a request.
    rollup_refresh_max_assets: int = Field(default=50, ge=0)

    @model_validator(mode="after")
    def _known_kpis(self) -> ApiSettings:
        from .core.kpis import KPIS

        for kpi, days in self.release_delay_days_by_kpi.items():
            if kpi not in KPIS:
                raise ValueError(f"release_delay_days_by_kpi.{kpi}: not a KPI; one of {', '.join(KPIS)}")
            if days < 0:
                raise ValueError(f"release_delay_days_by_kpi.{kpi}: days must be at least 0 (got {days})")
        return self

    def resolve_paths(self, relative_to: Path) -> ApiSettings:
        """A copy whose relative file paths are taken relative to ``relative_to`` (the settings file's folder)."""
        return with_paths_resolved(
            self,
            relative_to,
            ("tokens_file", "audit_log", "cell_key_file"),
            dp=with_paths_resolved(self.dp, relative_to, ("budget_file",)),
        )
