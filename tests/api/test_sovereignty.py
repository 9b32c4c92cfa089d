"""Members' control of their data in the API: consent per purpose in every path that reads their rows,
suspension, "who read my data" and the export (real DuckDB store; the register changes between requests)."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from api.tokens import TokenStore
from core.consent import withdrawn
from core.register import Register, with_member_changed
from storage import DuckDBStore
from tests.api.conftest import NOW, REGISTER, Hub, make_hub
from tests.api.test_benchmarks_api import near

SERIES = "/v1/series?format=parquet&signal=power_kw"
KPIS = "/v1/kpis?period=day&start=2026-03-02&end=2026-03-06"


class Live:
    """The register as the running API sees it: replaced between requests, as an edited register file is."""

    def __init__(self, register: Register) -> None:
        self.register = register

    def __call__(self) -> Register:
        return self.register

    def withdraw(self, member: str, category: str, purpose: str) -> None:
        entry = self.register.get(member)
        assert entry is not None
        permissions, changed = withdrawn(list(entry.permission), category, purpose, NOW)
        assert changed == 1
        self.register = with_member_changed(self.register, member, permission=permissions)


@pytest.fixture
def live() -> Live:
    return Live(REGISTER)


@pytest.fixture
def hub(tmp_path: Path, filled_store: DuckDBStore, live: Live) -> Hub:
    return make_hub(tmp_path, filled_store, register_provider=live)


def members_in(r_content: bytes) -> set[str]:
    return set(pl.read_parquet(io.BytesIO(r_content))["member"].unique().to_list())


def test_withdrawn_research_consent_removes_the_member_from_analyst_series_on_the_next_request(
    hub: Hub, live: Live
) -> None:
    before = hub.client.get(SERIES, headers=hub.auth("analyst"))
    assert "m-c00001" in members_in(before.content)
    live.withdraw("m-c00001", "raw_series", "research")
    after = hub.client.get(SERIES, headers=hub.auth("analyst"))
    assert members_in(after.content) == members_in(before.content) - {"m-c00001"}
    # asked for by name, it is still left out (no error that would confirm the member exists)
    named = hub.client.get(SERIES + "&member=m-c00001&member=m-d00001", headers=hub.auth("analyst"))
    assert members_in(named.content) == {"m-d00001"}
    # the member's consent governs others' use, not its own: its token still reads its data... (m-c00001 has
    # no token here; m-a00001 withdraws and still sees its own rows)
    live.withdraw("m-a00001", "raw_series", "research")
    own = hub.client.get(SERIES, headers=hub.auth("member_a"))
    assert members_in(own.content) == {"m-a00001"}


def test_kpis_for_analysts_follow_the_kpi_consent_not_the_series_consent(hub: Hub, live: Live) -> None:
    live.withdraw("m-b00001", "raw_series", "research")
    members = {row["member"] for row in hub.client.get(KPIS, headers=hub.auth("analyst")).json()["data"]}
    assert "m-b00001" in members  # KPIs are a category of their own
    live.withdraw("m-b00001", "kpis", "research")
    after = {row["member"] for row in hub.client.get(KPIS, headers=hub.auth("analyst")).json()["data"]}
    assert after == members - {"m-b00001"}
    mine = {row["member"] for row in hub.client.get(KPIS, headers=hub.auth("member_b")).json()["data"]}
    assert mine == {"m-b00001"}


def test_an_analyst_token_reads_only_members_consenting_to_its_own_purpose(hub: Hub, live: Live) -> None:
    from core.consent import Permission

    live.register = Register(purposes=["process-optimisation"], member=live.register.member)
    live.register = with_member_changed(
        live.register,
        "m-e00001",
        permission=[
            *live.register.member[0].permission,
            Permission(
                target="raw_series", purpose="process-optimisation", valid_from=datetime(2026, 1, 1, tzinfo=UTC)
            ),
        ],
    )
    token, record = TokenStore(hub.settings.tokens_file).create("analyst", purpose="process-optimisation")
    r = hub.client.get(SERIES, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and members_in(r.content) == {"m-e00001"}
    audit = [json.loads(line) for line in hub.settings.audit_log.read_text().splitlines()]
    assert audit[-1]["token_id"] == record.id and audit[-1]["purpose"] == "process-optimisation"


def test_a_consent_starting_later_does_not_apply_yet(hub: Hub, live: Live) -> None:
    from core.consent import Permission

    later = Permission(target="raw_series", purpose="research", valid_from=datetime(2026, 5, 1, tzinfo=UTC))
    keep = [p for p in live.register.member[0].permission if p.target != "raw_series"]
    live.register = with_member_changed(live.register, "m-f00001", permission=[*keep, later])
    assert "m-f00001" not in members_in(hub.client.get(SERIES, headers=hub.auth("analyst")).content)


def test_a_suspended_member_disappears_from_analyst_answers(hub: Hub, live: Live) -> None:
    live.register = with_member_changed(live.register, "m-d00001", suspended=True)
    assert "m-d00001" not in members_in(hub.client.get(SERIES, headers=hub.auth("analyst")).content)
    assert "m-d00001" not in {r["member"] for r in hub.client.get(KPIS, headers=hub.auth("analyst")).json()["data"]}


def test_benchmark_cells_count_only_consenting_contributors_from_the_next_release(hub: Hub, live: Live) -> None:
    url = "/v1/benchmarks/energy_per_good_part_kwh?asset_class=cnc_milling&period=day&start=2026-03-03"
    first = hub.client.get(url + "&end=2026-03-04", headers=hub.auth("member_a")).json()["cells"]
    assert len(first) == 1 and near(first[0]["mean"], 9.25 / 6)  # six groups: D 0.5 ... C 3.0
    live.withdraw("m-c00001", "benchmark", "benchmarking")
    both = hub.client.get(url + "&end=2026-03-05", headers=hub.auth("member_a")).json()["cells"]
    assert both[0] == first[0], "a released cell stays as released"
    assert both[1]["status"] == "published", both[1]
    assert near(both[1]["mean"], (9.25 - 3.0) / 5)  # grp-c left out
    ledger = hub.app.state.ctx.store.released_cells("energy_per_good_part_kwh", "cnc_milling", 0, 2**62, "day")
    assert ["grp-c" in c.groups for c in ledger] == [True, False]


def test_access_log_lists_the_analyst_queries_that_read_the_members_rows_and_nothing_of_others(hub: Hub) -> None:
    series = hub.client.get(SERIES + "&member=m-a00001&member=m-c00001", headers=hub.auth("analyst"))
    frame = pl.read_parquet(io.BytesIO(series.content))
    kpis = hub.client.get(KPIS + "&member=m-a00001", headers=hub.auth("analyst")).json()["data"]
    analyst_id = next(r.id for r in TokenStore(hub.settings.tokens_file).records() if r.role == "analyst")

    log_a = hub.client.get("/v1/access-log", headers=hub.auth("member_a"))
    assert log_a.status_code == 200, log_a.text
    entries = log_a.json()["entries"]
    assert [(e["endpoint"], e["rows"], e["token_id"], e["purpose"]) for e in entries] == [
        ("/v1/series", frame.filter(pl.col("member") == "m-a00001").height, analyst_id, "research"),
        ("/v1/kpis", len(kpis), analyst_id, "research"),
    ]
    assert "m-c00001" not in log_a.text  # nothing of the other member in the answer
    newest = hub.client.get("/v1/access-log?limit=1", headers=hub.auth("member_a")).json()["entries"]
    assert newest == entries[-1:], "limit keeps the most recent entries"
    # member_b's rows were read by neither query
    assert hub.client.get("/v1/access-log", headers=hub.auth("member_b")).json()["entries"] == []
    # a member's own reads are not analyst queries; analysts cannot read the log
    assert hub.client.get("/v1/access-log", headers=hub.auth("analyst")).status_code == 403


def test_export_round_trips_into_polars_with_the_rows_the_api_serves(hub: Hub) -> None:
    r = hub.client.get("/v1/export", headers=hub.auth("member_a"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(r.content))
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["member"] == "m-a00001"
    series = pl.read_parquet(archive.read("series.parquet"))
    served = pl.read_parquet(
        io.BytesIO(hub.client.get("/v1/series?format=parquet", headers=hub.auth("member_a")).content)
    )
    assert_frame_equal(series, served)
    assert series.height > 0 and set(series["member"].to_list()) == {"m-a00001"}
    kpis = pl.read_parquet(archive.read("kpis.parquet"))
    all_days = "/v1/kpis?period=day&start=2026-03-01&end=2026-03-08"  # the data: 03-02 to 03-06 00:00
    served_kpis = hub.client.get(all_days, headers=hub.auth("member_a")).json()["data"]
    assert kpis.height == len(served_kpis) and set(kpis["member"].to_list()) == {"m-a00001"}
    by_key = {(row["asset"], row["period_start"][:10]): row for row in served_kpis}
    for row in kpis.iter_rows(named=True):
        api_row = by_key[(row["asset"], row["period_start"].date().isoformat())]
        assert row["energy_per_good_part_kwh"] == pytest.approx(api_row["energy_per_good_part_kwh"])
    for f in manifest["files"]:
        import hashlib

        data = archive.read(f["name"])
        assert hashlib.sha256(data).hexdigest() == f["sha256"]
        assert pl.read_parquet(data).height == f["rows"]
    # an analyst or admin has no export of its own
    assert hub.client.get("/v1/export", headers=hub.auth("analyst")).status_code == 403


def test_export_holds_the_members_own_contributions_to_released_cells(hub: Hub) -> None:
    url = "/v1/benchmarks/energy_per_good_part_kwh?asset_class=cnc_milling&period=day&start=2026-03-03&end=2026-03-05"
    cells = hub.client.get(url, headers=hub.auth("member_a")).json()["cells"]
    archive = zipfile.ZipFile(io.BytesIO(hub.client.get("/v1/export", headers=hub.auth("member_a")).content))
    contributions = pl.read_parquet(archive.read("contributions.parquet"))
    mine = contributions.filter(pl.col("kpi") == "energy_per_good_part_kwh").sort("period_start")
    assert mine["own_value"].to_list() == pytest.approx([c["own"]["value"] for c in cells])
    assert set(mine.columns) == {
        "kpi",
        "asset_class",
        "period",
        "period_start",
        "period_end",
        "status",
        "released_at",
        "own_value",
    }


def test_consent_commands_edit_the_register_file_and_the_running_api_follows_on_the_next_request(
    tmp_path: Path, filled_store: DuckDBStore
) -> None:
    from core.register import RegisterFile, save_register

    path = tmp_path / "members.toml"
    save_register(path, REGISTER)
    hub = make_hub(tmp_path, filled_store, register_provider=RegisterFile(path))
    hub.app.state.ctx.clock = lambda: datetime.now(UTC)  # the commands stamp changes with the real time
    with hub.client:
        _consent_round_trip(hub, path)


def _consent_round_trip(hub: Hub, path: Path) -> None:
    from typer.testing import CliRunner

    from metalldaten.members_cli import app as members_app

    common = ["--register", str(path), "--audit-log", str(hub.settings.audit_log), "--by", "desk-1"]

    def members_cmd(*args: str) -> str:
        result = CliRunner().invoke(members_app, [*args, *common])
        assert result.exit_code == 0, result.output
        return result.output

    assert "m-e00001" in members_in(hub.client.get(SERIES, headers=hub.auth("analyst")).content)
    members_cmd("consent", "withdraw", "m-e00001", "--target", "raw_series", "--purpose", "research")
    assert "m-e00001" not in members_in(hub.client.get(SERIES, headers=hub.auth("analyst")).content)
    members_cmd("consent", "grant", "m-e00001", "--target", "raw_series", "--purpose", "research")
    assert "m-e00001" in members_in(hub.client.get(SERIES, headers=hub.auth("analyst")).content)

    policy = json.loads(
        CliRunner().invoke(members_app, ["consent", "show", "m-e00001", "--register", str(path)]).output
    )
    assert policy["@type"] == "Set" and policy["@context"] == "http://www.w3.org/ns/odrl.jsonld"
    raw = [p for p in policy["permission"] if p["target"].endswith("/m-e00001/raw_series")]
    assert len(raw) == 2 and all(p["action"] == "use" for p in raw)
    ended = [c for p in raw for c in p["constraint"][0]["and"] if c["operator"] == "lt"]
    assert len(ended) == 1  # the withdrawn consent ends when it was withdrawn; the new one is open-ended

    bad = CliRunner().invoke(
        members_app, ["consent", "grant", "m-e00001", "--target", "kpis", "--purpose", "marketing", *common]
    )
    assert bad.exit_code == 2 and "marketing" in bad.output
    audit = [json.loads(line) for line in hub.settings.audit_log.read_text().splitlines()]
    changes = [(e["action"], e["actor"]) for e in audit if e.get("role") == "trustee"]
    assert changes == [("consent.withdraw", "desk-1"), ("consent.grant", "desk-1")]
