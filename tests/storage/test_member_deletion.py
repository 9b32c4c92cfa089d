"""``metalldaten members delete-data`` and ``export`` as real processes on both stores (DuckDB file, real InfluxDB
1.x): a deleted member has zero rows in every table and measurement, the others keep theirs, and the receipt's
counts and digest hold."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from core.register import Member, Register, save_register
from metalldaten.deletion import receipt_digest
from metalldaten.members_cli import app as members_app
from storage import SeriesQuery, Store, StoreSettings, open_store
from storage.deadletter import DeadLetter, DeadLetterFile, read_dead_letters
from tests.storage.conftest import influx_settings
from tests.storage.test_contract import (
    M1,
    M2,
    _ledger_entry,
    expected_series,
    fixture_data,
    member_rows_everywhere,
    write_fixture,
)


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """``metalldaten members ARGS`` as its own process (as the trustee runs it, beside a stopped hub)."""
    return subprocess.run(
        [sys.executable, "-m", "metalldaten.cli", "members", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def invoke(*args: str | Path) -> tuple[int, str]:
    """``metalldaten members ARGS`` in this process (faster; for the cases one real process already covers)."""
    result = CliRunner().invoke(members_app, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture(params=["duckdb", pytest.param("influxdb1", marks=pytest.mark.integration)])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSettings:
    if request.param == "duckdb":
        return StoreSettings(kind="duckdb", path=tmp_path / "hub.duckdb")
    return influx_settings(request.getfixturevalue("influx_server"))


def hub_config(tmp_path: Path, store: StoreSettings) -> Path:
    lines = [f'register_file = "{tmp_path / "members.toml"}"', "", "[store]", f'kind = "{store.kind}"']
    if store.kind == "duckdb":
        lines.append(f'path = "{store.path}"')
    else:
        assert store.password is not None
        lines += [
            f'url = "{store.url}"',
            f'database = "{store.database}"',
            f'username = "{store.username}"',
            f'password = "{store.password.get_secret_value()}"',
        ]
    lines += [
        "",
        "[ingest]",
        f'dead_letter_path = "{tmp_path / "dead.jsonl"}"',
        "",
        "[api]",
        f'audit_log = "{tmp_path / "audit.log"}"',
        "",
    ]
    path = tmp_path / "hub.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def filled_hub(tmp_path: Path, settings: StoreSettings, *, suspended: bool) -> Path:
    """A store with the contract's data, a dead letter file and a register; the hub's settings file for them."""
    config = hub_config(tmp_path, settings)
    store = open_store(settings)
    try:
        fill(store, tmp_path, suspended=suspended)
    finally:
        store.close()  # the embedded store's file has one writer: the command's
    return config


def fill(store: Store, tmp_path: Path, *, suspended: bool) -> None:
    write_fixture(store)
    store.refresh_rollups()
    store.release([_ledger_entry(0, kpi="energy_per_good_part_kwh")])  # groups grp-a, grp-b, ...
    now = datetime(2026, 1, 6, tzinfo=UTC)
    DeadLetterFile(tmp_path / "dead.jsonl").append(
        [DeadLetter(f"mdh/v1/{m}/g-0000000a/samples", "decode", "bad", b"\x00", now) for m in (M1, M2, M1)]
    )
    save_register(
        tmp_path / "members.toml",
        Register(
            member=[Member(pseudonym=M1, group="grp-a", suspended=suspended), Member(pseudonym=M2, group="grp-z")]
        ),
    )


def test_delete_data_leaves_no_row_of_the_member_and_writes_a_receipt(settings: StoreSettings, tmp_path: Path) -> None:
    config = filled_hub(tmp_path, settings, suspended=True)
    receipt_path = tmp_path / "receipt.json"
    done = run_cli("delete-data", M1, "--config", config, "--out", receipt_path, "--by", "trustee-desk")
    assert done.returncode == 0, done.stderr
    receipt = json.loads(receipt_path.read_text())
    assert receipt["member"] == M1 and receipt["deleted_by"] == "trustee-desk" and receipt["store"] == settings.kind
    assert receipt["rows_deleted"]["samples"] == len(fixture_data()[M1])
    assert receipt["rows_deleted"]["rollups"] > 0
    assert receipt["dead_letters_deleted"] == 2 and receipt["release_ledger_cells_values_erased"] == 1
    assert receipt["digest"] == receipt_digest(receipt)
    assert any("five" in line for line in receipt["kept"])
    store = open_store(settings)
    try:
        assert {k: v for k, v in member_rows_everywhere(store, M1).items() if v} == {}
        assert_frame_equal(store.query_series(SeriesQuery()), expected_series().filter(pl.col("member") == M2))
        (cell,) = store.released_cells("energy_per_good_part_kwh", "press", 0, 2**62)
        assert cell.values == () and cell.figures == _ledger_entry(0).figures
    finally:
        store.close()
    assert [str(d["topic"]).split("/")[2] for d in read_dead_letters(tmp_path / "dead.jsonl")] == [M2]
    audit = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    assert audit[-1]["action"] == "member.delete-data" and audit[-1]["digest"] == receipt["digest"]


def test_delete_data_refuses_a_member_that_may_still_send(tmp_path: Path) -> None:
    settings = StoreSettings(kind="duckdb", path=tmp_path / "hub.duckdb")
    config = filled_hub(tmp_path, settings, suspended=False)
    code, output = invoke("delete-data", M1, "--config", config, "--out", tmp_path / "receipt.json")
    assert code == 2 and "suspend or remove it first" in output
    assert not (tmp_path / "receipt.json").exists()


def test_export_command_writes_the_members_rows(settings: StoreSettings, tmp_path: Path) -> None:
    config = filled_hub(tmp_path, settings, suspended=False)
    code, output = invoke("export", M2, "--config", config, "--out", tmp_path / "m2.zip")
    assert code == 0, output
    archive = zipfile.ZipFile(tmp_path / "m2.zip")
    series = pl.read_parquet(io.BytesIO(archive.read("series.parquet")))
    assert_frame_equal(series, expected_series().filter(pl.col("member") == M2))
    manifest = json.loads(archive.read("manifest.json"))
    assert {f["name"]: f["rows"] for f in manifest["files"]}["series.parquet"] == len(fixture_data()[M2])
