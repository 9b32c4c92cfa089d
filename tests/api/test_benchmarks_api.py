"""``/v1/benchmarks`` and ``/v1/kpis`` on the generated store: hand-computed cells and suppression."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from storage import DuckDBStore

from .conftest import Hub, make_hub

DAY_QS = "period=day&start=2026-03-03T00:00:00Z&end=2026-03-05T00:00:00Z"


def test_permitted_cell_equals_hand_computed_percentiles(hub: Hub) -> None:
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
        assert cell["contributors"] == 6
        assert cell["p10"] == pytest.approx(0.75)
        assert cell["p25"] == pytest.approx(1.0625)
        assert cell["median"] == pytest.approx(1.375)
        assert cell["p75"] == pytest.approx(1.875)
        assert cell["p90"] == pytest.approx(2.5)
        assert cell["mean"] == pytest.approx(9.25 / 6)
        assert cell["own"] == {"value": pytest.approx(0.5), "band": "below_p10"}  # m-a00001: 1 kWh / 2 parts


def test_analyst_gets_no_own_position(hub: Hub) -> None:
    r = hub.client.get(
        f"/v1/benchmarks/energy_per_good_part_kwh?asset_class=cnc_milling&{DAY_QS}", headers=hub.auth("analyst")
    )
    assert all(c["own"] is None and c["median"] == pytest.approx(1.375) for c in r.json()["cells"])
    assert r.json()["differential_privacy"] is None


@pytest.mark.parametrize(
    ("asset_class", "code"),
    [("press", "too_few_contributors"), ("grinding", "too_few_contributors"), ("welding", "too_few_contributors")],
)
def test_suppressed_cells_say_why_and_carry_no_numbers(hub: Hub, asset_class: str, code: str) -> None:
    r = hub.client.get(f"/v1/benchmarks/utilisation?asset_class={asset_class}&{DAY_QS}", headers=hub.auth("member_b"))
    for cell in r.json()["cells"]:
        assert cell["status"] == "suppressed" and cell["reason_code"] == code and cell["reason"]
        numbers = {
            k: v for k, v in cell.items() if k not in ("period_start", "period_end", "status", "reason_code", "reason")
        }
        assert all(v is None for v in numbers.values()), numbers


def test_recent_periods_are_not_released(tmp_path: Path, filled_store: DuckDBStore) -> None:
    h = make_hub(tmp_path, filled_store, now=datetime(2026, 3, 11, 12, tzinfo=UTC))
    r = h.client.get(f"/v1/benchmarks/utilisation?asset_class=cnc_milling&{DAY_QS}", headers=h.auth("analyst"))
    codes = [c["reason_code"] for c in r.json()["cells"]]
    assert codes == [None, "not_released"]  # 03-03 ended 03-04 (7.5 days ago); 03-04 ended 03-05


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
    url = f"/v1/benchmarks/utilisation?asset_class=cnc_milling&{DAY_QS}"
    r = h.client.get(url, headers=h.auth("analyst"))
    body = r.json()
    assert body["differential_privacy"] == {"epsilon_spent": 2.0, "epsilon_remaining": 1.0}
    for c in body["cells"]:
        assert 0.0 <= c["p10"] <= c["p25"] <= c["median"] <= c["p75"] <= c["p90"] <= 1.0
    refused = h.client.get(url, headers=h.auth("analyst"))
    assert refused.status_code == 403
    assert refused.json()["type"] == "urn:metalldaten:problem:privacy-budget-exhausted"
    # members are not charged and see exact, disclosure-controlled cells
    member = h.client.get(url, headers=h.auth("member_a")).json()
    assert member["differential_privacy"] is None
    assert member["cells"][0]["median"] == pytest.approx(0.75)  # 9 of 12 five-minute steps running


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


def test_catalog_counts_members_without_naming_them(hub: Hub) -> None:
    cat = hub.client.get("/v1/catalog", headers=hub.auth("member_a")).json()
    counts = {c["name"]: c["contributing_members"] for c in cat["asset_classes"]}
    assert counts["cnc_milling"] == 7 and counts["press"] == 4 and counts["grinding"] == 5 and counts["welding"] == 0
    assert {k["name"] for k in cat["kpis"]} == {
        "energy_per_good_part_kwh",
        "co2e_per_good_part_kg",
        "utilisation",
        "scrap_rate",
        "good_parts_per_hour",
    }
    assert "m-a00001" not in str(cat)
