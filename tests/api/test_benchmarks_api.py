"""``/v1/benchmarks`` and ``/v1/kpis`` on the generated store: hand-computed cells and suppression."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pytest

from storage import DuckDBStore

from .conftest import Hub, make_hub

DAY_QS = "period=day&start=2026-03-03T00:00:00Z&end=2026-03-05T00:00:00Z"


def near(figure: float, truth: float, noise: float = 0.04, digits: int = 2) -> bool:
    """Whether a published figure is ``truth`` perturbed by at most ``noise`` and rounded to ``digits``."""
    step = 10 ** (math.floor(math.log10(abs(truth) * (1 + noise))) - digits + 1)
    return abs(figure - truth) <= noise * abs(truth) + step / 2 + 1e-12


def test_permitted_cell_shows_the_tier_of_its_size(hub: Hub) -> None:
    r = hub.client.get(
        f"/v1/benchmarks/energy_per_good_part_kwh?asset_class=cnc_milling&{DAY_QS}", headers=hub.auth("member_a")
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["unit"] == "kWh" and body["higher_is_better"] is False
    assert [c["period_start"] for c in body["cells"]] == ["2026-03-03T00:00:00Z", "2026-03-04T00:00:00Z"]
    # Group values (grp-a pools its two members): D 0.5, A 1.0, F 1.25, B 1.5, E 2.0, C 3.0
    for cell in body["cells"]:
        assert cell["status"] == "published"
        assert cell["contributors"] == "5–9"  # six groups, as a band
        assert all(cell[q] is None for q in ("p10", "p25", "median", "p75", "p90"))  # 5–9: the mean only
        assert near(cell["mean"], 9.25 / 6) and cell["mean"] != pytest.approx(9.25 / 6)
        assert cell["own"] == {"value": pytest.approx(0.5), "band": "below_mean"}  # m-a00001: 1 kWh / 2 parts
        assert cell["released_at"] == "2026-04-01T00:00:00Z"


def test_analyst_gets_no_own_position(hub: Hub) -> None:
    r = hub.client.get(
        f"/v1/benchmarks/energy_per_good_part_kwh?asset_class=cnc_milling&{DAY_QS}", headers=hub.auth("analyst")
    )
    assert all(c["own"] is None and near(c["mean"], 9.25 / 6) for c in r.json()["cells"])
    assert r.json()["differential_privacy"] is None


@pytest.mark.parametrize(
    ("asset_class", "code"),
    [("press", "too_few_contributors"), ("grinding", "too_few_contributors"), ("welding", "too_few_contributors")],
)
def test_suppressed_cells_say_why_and_carry_no_numbers(hub: Hub, asset_class: str, code: str) -> None:
    r = hub.client.get(f"/v1/benchmarks/scrap_rate?asset_class={asset_class}&{DAY_QS}", headers=hub.auth("member_b"))
    for cell in r.json()["cells"]:
        assert cell["status"] == "suppressed" and cell["reason_code"] == code and cell["reason"]
        peers = {
            k: v
            for k, v in cell.items()
            if k not in ("period_start", "period_end", "status", "reason_code", "reason", "released_at", "own")
        }
        assert all(v is None for v in peers.values()), peers
        # the member's own value is its own data and always shown (m-b00001 has a press and a grinding machine);
        # no band where there are no figures
        if asset_class == "welding":
            assert cell["own"] is None
        else:
            assert cell["own"] is not None and cell["own"]["band"] is None


def test_recent_periods_are_not_released(tmp_path: Path, filled_store: DuckDBStore) -> None:
    h = make_hub(tmp_path, filled_store, now=datetime(2026, 3, 11, 12, tzinfo=UTC))
    url = f"/v1/benchmarks/energy_per_good_part_kwh?asset_class=cnc_milling&{DAY_QS}"
    r = h.client.get(url, headers=h.auth("analyst"))
    codes = [c["reason_code"] for c in r.json()["cells"]]
    assert codes == [None, "not_released"]  # 03-03 ended 03-04 (7.5 days ago); 03-04 ended 03-05
    # utilisation, close to capacity, is released 28 days after the period by default
    r = h.client.get(f"/v1/benchmarks/utilisation?asset_class=cnc_milling&{DAY_QS}", headers=h.auth("analyst"))
    assert r.json()["release_delay_days"] == 28
    assert [c["reason_code"] for c in r.json()["cells"]] == ["not_released", "not_released"]


def test_dominance_suppresses_through_the_api(tmp_path: Path, filled_store: DuckDBStore) -> None:
    h = make_hub(tmp_path, filled_store, max_share_largest=0.2)  # grp-a holds 4/18.5 = 21.6% of the energy
    r = h.client.get(
        f"/v1/benchmarks/energy_per_good_part_kwh?asset_class=cnc_milling&{DAY_QS}", headers=h.auth("analyst")
    )
    assert {c["reason_code"] for c in r.json()["cells"]} == {"dominance"}


def test_differential_privacy_spends_and_exhausts_the_budget(tmp_path: Path, filled_store: DuckDBStore) -> None:
    from api.settings import DPSettings

    dp = DPSettings(enabled=True, epsilon_per_cell=1.0, budget_per_analyst=3.0, budget_file=tmp_path / "b.json")
    h = make_hub(tmp_path, filled_store, dp=dp)
    # energy per good part: six groups with different values (utilisation is 0.75 for everyone here, a cell the
    # spread rule suppresses, as its mean would be every contributor's value)
    url = f"/v1/benchmarks/energy_per_good_part_kwh?asset_class=cnc_milling&{DAY_QS}"
    r = h.client.get(url, headers=h.auth("analyst"))
    body = r.json()
    note = body["differential_privacy"]
    assert (note["epsilon_spent"], note["epsilon_remaining"]) == (2.0, 1.0)
    assert set(note["noisy"]) == {"mean"} and "Laplace" in note["noisy"]["mean"]  # 5–9 contributors: the mean
    assert note["contributors_noised"] is False
    for c in body["cells"]:
        assert 0.0 <= c["mean"] <= 50.0 and c["contributors"] == "5–9"  # the KPI's clip range
    refused = h.client.get(url, headers=h.auth("analyst"))
    assert refused.status_code == 403
    assert refused.json()["type"] == "urn:metalldaten:problem:privacy-budget-exhausted"
    # members are not charged and see exact, disclosure-controlled cells
    member = h.client.get(url, headers=h.auth("member_a")).json()
    assert member["differential_privacy"] is None
    assert near(member["cells"][0]["mean"], 9.25 / 6)


def test_kpis_per_asset_hand_computed(hub: Hub) -> None:
    r = hub.client.get(
        "/v1/kpis?period=day&start=2026-03-03T00:00:00Z&end=2026-03-04T00:00:00Z&asset_class=cnc_milling",
        headers=hub.auth("analyst"),
    )
    rows = {row["member"]: row for row in r.json()["data"]}
    assert len(rows) == 7
    a = rows["m-a00001"]
    assert a["energy_kwh"] == pytest.approx(288 * 1.0)  # 288 five-minute steps a day, 1 kWh each
    assert a["parts_good"] == pytest.approx(288 * 2)
    assert a["co2e_per_good_part_kg"] == pytest.approx(0.5 * 0.5)  # emission factor 0.5 from the register
    assert a["utilisation"] == pytest.approx(0.75)
    assert a["good_parts_per_hour"] == pytest.approx(24 * 12 * 2 / 18)  # 18 running hours
    assert rows["m-c00001"]["scrap_rate"] == pytest.approx(0.5)
    assert rows["m-b00001"]["energy_per_good_part_kwh"] == pytest.approx(1.5)  # across its counter reset


def test_catalog_shows_no_more_than_released_cells(hub: Hub) -> None:
    def bands() -> dict[str, str | None]:
        cat = hub.client.get("/v1/catalog", headers=hub.auth("member_a")).json()
        return {c["name"]: c["contributors"] for c in cat["asset_classes"]}

    # nothing released yet: no class shows anything, though the store holds data of 7, 4 and 5 members
    assert set(bands().values()) == {None}
    for asset_class in ("cnc_milling", "press", "grinding"):
        hub.client.get(
            f"/v1/benchmarks/energy_per_good_part_kwh?asset_class={asset_class}&{DAY_QS}", headers=hub.auth("member_a")
        )
    got = bands()
    # cnc_milling published (band 5–9); press and grinding suppressed: no number that says by how much
    assert got["cnc_milling"] == "5–9" and got["press"] is None and got["grinding"] is None
    cat = hub.client.get("/v1/catalog", headers=hub.auth("member_a")).json()
    assert cat["release_delay_days_by_kpi"]["utilisation"] == 28
    assert {k["name"] for k in cat["kpis"]} == {
        "energy_per_good_part_kwh",
        "co2e_per_good_part_kg",
        "utilisation",
        "scrap_rate",
        "good_parts_per_hour",
    }
    assert "m-a00001" not in str(cat)


def test_released_cells_are_frozen_against_late_data(tmp_path: Path) -> None:
    """A batch backdated into a released day is stored, and the released cell stays as it was."""
    from api.core.cells import contributions, release
    from api.http.params import to_ns
    from storage import RollupQuery
    from wire import Sample

    from .conftest import PLANS, REGISTER, samples_of

    store = DuckDBStore(tmp_path / "hub.duckdb")
    for plan in PLANS:
        store.write(plan.member, samples_of(plan))
    h = make_hub(tmp_path, store)
    url = f"/v1/benchmarks/energy_per_good_part_kwh?asset_class=cnc_milling&{DAY_QS}"
    before = h.client.get(url, headers=h.auth("member_b")).json()["cells"]
    assert before[0]["status"] == "published"
    # late: a second machine of m-f00001 on 2026-03-03, 10 kWh per part
    day = datetime(2026, 3, 3, tzinfo=UTC)
    t0 = to_ns(day)
    late = [
        Sample(ts=t0 + k * 3_600 * 10**9, asset="a-00000f02", asset_class="cnc_milling", signal=sig, value=v * k)
        for k in range(24)
        for sig, v in (("energy_kwh", 100.0), ("parts_total", 10.0), ("parts_scrap_total", 0.0))
    ]
    store.write("m-f00001", late)
    store.refresh_rollups()
    after = h.client.get(url, headers=h.auth("member_b")).json()["cells"]
    assert after == before
    # ... while the same release computed afresh from today's data would differ
    rollups = store.query_rollups(RollupQuery(asset_classes=("cnc_milling",), start_ns=t0 - 14 * 86_400 * 10**9))
    members = REGISTER.member
    fresh = release(
        contributions(
            rollups,
            kpi="energy_per_good_part_kwh",
            period="day",
            groups={m.pseudonym: m.group for m in members},
            emission_factors={m.pseudonym: m.emission_factor_kg_per_kwh for m in members},
            default_factor=0.38,
        ),
        kpi="energy_per_good_part_kwh",
        asset_class="cnc_milling",
        period="day",
        starts=[day],
        overlapping=[],
        rules=h.app.state.ctx.rules,
        key=h.app.state.ctx.cell_key(),
        now=datetime(2026, 4, 1, tzinfo=UTC),
    ).cells[0]
    assert (fresh.status, fresh.figures.get("mean")) != ("published", before[0]["mean"])
    store.close()


def test_cell_whose_mean_would_reveal_everyone_is_suppressed(hub: Hub) -> None:
    """Utilisation is 0.75 for every contributor here: a published mean would be each company's value."""
    from api.settings import ApiSettings

    assert ApiSettings().release_delay_days_by_kpi["utilisation"] == 28
    r = hub.client.get(
        "/v1/benchmarks/utilisation?asset_class=cnc_milling&period=day&start=2026-03-03T00:00:00Z"
        "&end=2026-03-04T00:00:00Z",
        headers=hub.auth("member_a"),
    )
    (cell,) = r.json()["cells"]
    assert cell["status"] == "suppressed" and cell["reason_code"] == "homogeneous" and cell["mean"] is None
    assert cell["own"]["value"] == pytest.approx(0.75) and cell["own"]["band"] is None
