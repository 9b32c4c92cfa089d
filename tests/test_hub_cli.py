"""`metalldaten hub run` as a real process: starts both roles, answers health, stops cleanly on SIGTERM;
a wrong configuration stops it at start with the file, the key and what was expected."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.servers import MosquittoServer, free_port

pytestmark = [pytest.mark.integration]


def hub_toml(tmp_path: Path, broker_port: int, api_port: int, store_kind: str = "duckdb") -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(
        f"""
register_file = "members.toml"

[store]
kind = "{store_kind}"
path = "var/hub.duckdb"

[ingest]
host = "127.0.0.1"
port = {broker_port}
tls = false
client_id = "hub-cli-test"
dead_letter_path = "var/dead.jsonl"

[api]
port = {api_port}
tokens_file = "var/tokens.json"
audit_log = "var/audit.log"
""",
        encoding="utf-8",
    )
    return path


def run_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "metalldaten.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_hub_runs_both_roles_and_stops_on_sigterm(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    api_port = free_port()
    proc = run_cli("hub", "run", "--config", str(hub_toml(tmp_path, mosquitto.port, api_port)))
    try:
        deadline = time.monotonic() + 30
        ready = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{api_port}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        assert ready is not None and ready.status_code == 200, proc.stdout.read() if proc.stdout else ""
        assert httpx.get(f"http://127.0.0.1:{api_port}/healthz", timeout=2).status_code == 200
        # The relative paths of the file are taken relative to the file's folder.
        assert (tmp_path / "var" / "hub.duckdb").exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.mark.parametrize(
    ("edit", "key", "expected"),
    [
        (("duckdb", "postgres"), "store.kind", "'duckdb', 'influxdb1' or 'influxdb2'"),
        (("tls = false", "tls = maybe"), "(file)", "valid TOML"),
        (("client_id", "clientid"), "ingest.clientid", "not a known setting"),
    ],
)
def test_wrong_configuration_fails_at_start(tmp_path: Path, edit: tuple[str, str], key: str, expected: str) -> None:
    path = hub_toml(tmp_path, free_port(), free_port())
    path.write_text(path.read_text(encoding="utf-8").replace(*edit, 1), encoding="utf-8")
    proc = run_cli("hub", "run", "--config", str(path))
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert str(path) in out and f"'{key}'" in out and expected in out, out
