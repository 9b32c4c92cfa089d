"""`metalldaten hub run` as a real process: starts both roles, answers health, serves every role's metrics on the
operators' listener only, stops cleanly on SIGTERM; a wrong configuration stops it at start with the file, the key
and what was expected."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.register import Member, Register, dump_register
from testkit.mqtt import Publisher, make_batch
from testkit.servers import MosquittoServer, free_port
from wire import Status, encode_status, status_topic

pytestmark = [pytest.mark.integration]


def hub_toml(
    tmp_path: Path, broker_port: int, api_port: int, store_kind: str = "duckdb", metrics_port: int | None = None
) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(
        f"""
register_file = "members.toml"
metrics_listen = "127.0.0.1:{metrics_port if metrics_port is not None else free_port()}"

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


def wait_ready(proc: subprocess.Popen[str], url: str, *, within_s: float = 30) -> httpx.Response:
    """Poll ``url`` until it answers 200 (or the process exits, or the deadline passes)."""
    deadline = time.monotonic() + within_s
    ready = None
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            ready = httpx.get(url, timeout=2)
            if ready.status_code == 200:
                return ready
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    if proc.poll() is None:
        proc.kill()
    out = proc.stdout.read() if proc.stdout else ""
    raise AssertionError(f"{url} not ready within {within_s} s (last answer {ready}): {out}")


def test_hub_runs_both_roles_and_stops_on_sigterm(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    api_port = free_port()
    proc = run_cli("hub", "run", "--config", str(hub_toml(tmp_path, mosquitto.port, api_port)))
    try:
        wait_ready(proc, f"http://127.0.0.1:{api_port}/readyz")
        assert httpx.get(f"http://127.0.0.1:{api_port}/healthz", timeout=2).status_code == 200
        # The relative paths of the file are taken relative to the file's folder.
        assert (tmp_path / "var" / "hub.duckdb").exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text, matching ``labels`` (a subset of its labels)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def test_metrics_of_both_roles_are_served_to_operators_only(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    """`/metrics` is not on the API port; the operators' listener serves the API's and the ingestor's metrics."""
    api_port, metrics_port = free_port(), free_port()
    member, gateway = "m-00c0ffee", "g-0000c0de"
    (tmp_path / "members.toml").write_text(
        dump_register(Register(member=[Member(pseudonym=member, group="grp-c")])), encoding="utf-8"
    )
    proc = run_cli(
        "hub", "run", "--config", str(hub_toml(tmp_path, mosquitto.port, api_port, metrics_port=metrics_port))
    )
    ops = f"http://127.0.0.1:{metrics_port}"
    pub = None
    try:
        wait_ready(proc, f"{ops}/healthz")  # 200 once the API listens and the ingestor is subscribed
        health = httpx.get(f"{ops}/healthz", timeout=5).json()
        assert health["status"] == "ok" and health["roles"]["ingest"]["broker_connected"] is True
        refused = httpx.get(f"http://127.0.0.1:{api_port}/metrics", timeout=5)
        assert refused.status_code == 404 and "mdh_" not in refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert httpx.get(f"http://127.0.0.1:{api_port}/healthz", timeout=5).status_code == 200

        pub = Publisher(mosquitto.port)
        pub.batch(make_batch(member, gateway, 4))
        bad = Status(schema=99, member=member, gateway=gateway, state="online", ts_ns=-5)
        pub.publish(status_topic(member, gateway), encode_status(bad))
        text = ""

        def counted() -> bool:
            nonlocal text
            text = httpx.get(f"{ops}/metrics", timeout=5).text
            return (
                _metric(text, "mdh_ingest_samples_total") == 4
                and _metric(text, "mdh_ingest_refused_total", reason="schema") == 1
            )

        deadline = time.monotonic() + 20
        while not counted():
            assert time.monotonic() < deadline, f"ingest metrics not counted on the operators' listener:\n{text}"
            time.sleep(0.1)
        assert _metric(text, "mdh_ingest_broker_connected") == 1
        assert _metric(text, "mdh_ingest_dead_letters_total", code="schema") == 1
        # a member's refused message degrades the hub, with the reason, without failing the probe (a member must not
        # be able to take the hub out of service by sending garbage)
        r = httpx.get(f"{ops}/healthz", timeout=5)
        doc = r.json()
        assert r.status_code == 200 and doc["status"] == "degraded" and doc["roles"]["ingest"]["status"] == "degraded"
        [reason] = doc["reasons"]
        assert reason.startswith("ingest: 1 message(s) refused as schema since start, the last ")
        assert "schema version 99 is not supported" in reason
        assert doc["roles"]["ingest"]["reasons"] == [reason.removeprefix("ingest: ")]
        # The API's own metrics are in the same registry (the refused /metrics request counted as unmatched).
        assert _metric(text, "mdh_api_requests_total", route="unmatched", status="404") == 1
        assert httpx.get(f"{ops}/v1/series", timeout=5).status_code == 404  # the listener serves nothing else
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if pub is not None:
            pub.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_metrics_listener_refuses_a_malformed_address(tmp_path: Path) -> None:
    path = hub_toml(tmp_path, free_port(), free_port())
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace(text.split("\n")[2], 'metrics_listen = "0.0.0.0"'), encoding="utf-8")
    proc = run_cli("hub", "run", "--config", str(path))
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "'metrics_listen'" in out and "HOST:PORT" in out, out


@pytest.mark.parametrize(
    ("edit", "key", "expected"),
    [
        (("duckdb", "postgres"), "store.kind", "'duckdb', 'influxdb1' or 'influxdb2'"),
        (("tls = false", "tls = maybe"), "(file)", "valid TOML"),
        (("client_id", "clientid"), "ingest.clientid", "not a known setting"),
        (("client_id", "workers = 2\nclient_id"), "ingest.workers", "1 with the embedded store (got 2)"),
    ],
)
def test_wrong_configuration_fails_at_start(tmp_path: Path, edit: tuple[str, str], key: str, expected: str) -> None:
    path = hub_toml(tmp_path, free_port(), free_port())
    path.write_text(path.read_text(encoding="utf-8").replace(*edit, 1), encoding="utf-8")
    proc = run_cli("hub", "run", "--config", str(path))
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert str(path) in out and f"'{key}'" in out and expected in out, out
