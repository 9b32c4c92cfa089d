"""A real DuckDB store filled with generated samples of several members of several corporate groups,
and the API on top of it (FastAPI TestClient; the dashboard test uses a real uvicorn)."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # Starlette asks for the httpx2 fork for its test client; httpx (pinned) works the same for these tests.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

from api.http.app import create_app
from api.settings import ApiSettings
from api.tokens import TokenStore
from core.register import Member, Register
from storage import DuckDBStore
from wire import Sample

T0 = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
DAYS = 4
STEP = timedelta(minutes=5)
STEPS = DAYS * 24 * 12
#: Data ends 2026-03-06; with the default 7-day release delay every day of it is released by then.
NOW = datetime(2026, 4, 1, tzinfo=UTC)


@dataclass(frozen=True)
class AssetPlan:
    member: str
    asset: str
    asset_class: str
    energy: float  # kWh per step
    parts: int  # parts per step
    scrap: int  # scrapped parts per step
    reset_at: int | None = None  # counters restart at this step
    gap: tuple[int, int] | None = None  # no samples in [from, to)


PLANS: tuple[AssetPlan, ...] = (
    # cnc_milling: 7 members of 6 groups (grp-a has two members); energy per good part per group:
    # A (1+3)/(2+2) = 1.0, B 3/2 = 1.5, C 3/1 = 3.0, D 2/4 = 0.5, E 4/2 = 2.0, F 2.5/2 = 1.25
    AssetPlan(member="m-a00001", asset="a-00000a01", asset_class="cnc_milling", energy=1.0, parts=2, scrap=0),
    AssetPlan(member="m-a00002", asset="a-00000a02", asset_class="cnc_milling", energy=3.0, parts=2, scrap=0),
    AssetPlan(
        member="m-b00001", asset="a-00000b01", asset_class="cnc_milling", energy=3.0, parts=2, scrap=0, reset_at=500
    ),
    AssetPlan(
        member="m-c00001", asset="a-00000c01", asset_class="cnc_milling", energy=3.0, parts=2, scrap=1, gap=(700, 760)
    ),
    AssetPlan(member="m-d00001", asset="a-00000d01", asset_class="cnc_milling", energy=2.0, parts=4, scrap=0),
    AssetPlan(member="m-e00001", asset="a-00000e01", asset_class="cnc_milling", energy=4.0, parts=2, scrap=0),
    AssetPlan(member="m-f00001", asset="a-00000f01", asset_class="cnc_milling", energy=2.5, parts=2, scrap=0),
    # press: 4 groups only
    *(
        AssetPlan(member=m, asset=f"a-0000{i:04x}", asset_class="press", energy=5.0 + i, parts=3, scrap=0)
        for i, m in enumerate(["m-b00001", "m-c00001", "m-d00001", "m-e00001"], start=0x100)
    ),
    # grinding: 5 members, but m-a00001 and m-a00002 are one group: 4 groups
    *(
        AssetPlan(member=m, asset=f"a-0000{i:04x}", asset_class="grinding", energy=1.0, parts=1, scrap=0)
        for i, m in enumerate(["m-a00001", "m-a00002", "m-b00001", "m-c00001", "m-d00001"], start=0x200)
    ),
)

GROUPS = {
    "m-a00001": "grp-a",
    "m-a00002": "grp-a",
    "m-b00001": "grp-b",
    "m-c00001": "grp-c",
    "m-d00001": "grp-d",
    "m-e00001": "grp-e",
    "m-f00001": "grp-f",
}
REGISTER = Register(
    member=[
        Member(pseudonym=p, group=g, region="DE-NW", emission_factor_kg_per_kwh=0.5 if p == "m-a00001" else 0.38)
        for p, g in GROUPS.items()
    ]
)


def samples_of(plan: AssetPlan) -> list[Sample]:
    out: list[Sample] = []
    energy = parts = scrap = 0.0
    for step in range(STEPS + 1):
        if plan.reset_at is not None and step == plan.reset_at:
            energy = parts = scrap = 0.0
        if step:
            energy += plan.energy
            parts += plan.parts
            scrap += plan.scrap
        if plan.gap is not None and plan.gap[0] <= step < plan.gap[1]:
            continue
        ts = int((T0 + step * STEP).timestamp()) * 1_000_000_000
        kw = dict(ts=ts, asset=plan.asset, asset_class=plan.asset_class)
        out += [
            Sample(**kw, signal="state", value="running" if step % 12 < 9 else "idle"),  # type: ignore[arg-type]
            Sample(**kw, signal="energy_kwh", value=energy),  # type: ignore[arg-type]
            Sample(**kw, signal="parts_total", value=parts),  # type: ignore[arg-type]
            Sample(**kw, signal="parts_scrap_total", value=scrap),  # type: ignore[arg-type]
            Sample(**kw, signal="power_kw", value=plan.energy * 12 + (step % 7) * 0.25),  # type: ignore[arg-type]
        ]
    return out


@pytest.fixture(scope="session")
def filled_store_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("store") / "hub.duckdb"
    store = DuckDBStore(path)
    for plan in PLANS:
        store.write(plan.member, samples_of(plan))
    store.close()
    return path


@pytest.fixture
def filled_store(filled_store_file: Path, tmp_path: Path) -> Iterator[DuckDBStore]:
    """A copy of the generated store per test: its release ledger starts empty, and writes stay in the test."""
    path = tmp_path / "hub.duckdb"
    shutil.copyfile(filled_store_file, path)
    store = DuckDBStore(path)
    yield store
    store.close()


@dataclass
class Hub:
    app: FastAPI
    client: TestClient
    settings: ApiSettings
    tokens: dict[str, str]  # name -> token: member_a, member_b, analyst, admin

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


def make_hub(
    tmp_path: Path,
    store: DuckDBStore,
    *,
    now: datetime = NOW,
    register_provider: Callable[[], Register] = lambda: REGISTER,
    **overrides: object,
) -> Hub:
    settings = ApiSettings(
        tokens_file=tmp_path / "tokens.json",
        audit_log=tmp_path / "audit.log",
        cell_key_file=tmp_path / "cell_key",
        **overrides,  # type: ignore[arg-type]
    )
    settings = settings.model_copy(update={"dp": settings.dp.model_copy(update={"budget_file": tmp_path / "b.json"})})
    ts = TokenStore(settings.tokens_file)
    tokens = {
        "member_a": ts.create("member", member="m-a00001")[0],
        "member_b": ts.create("member", member="m-b00001")[0],
        "analyst": ts.create("analyst")[0],
        "admin": ts.create("admin")[0],
    }
    app = create_app(settings, store, register_provider, clock=lambda: now)
    return Hub(app=app, client=TestClient(app), settings=settings, tokens=tokens)


@pytest.fixture
def hub(tmp_path: Path, filled_store: DuckDBStore) -> Iterator[Hub]:
    h = make_hub(tmp_path, filled_store)
    with h.client:
        yield h
