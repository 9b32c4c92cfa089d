"""Reload with a real gateway process: SIGHUP and ``metalldaten gateway reload`` re-read the configuration.
An added source starts and a removed one stops while the unchanged source keeps its session; what the
gateway buffered while the hub was down is all delivered after the reloads; an invalid file is refused
with the error and the running configuration continues."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from gateway.pseudonymise import generate_key
from testkit.machines import MachineServer
from testkit.servers import free_port, start_mosquitto
from testkit.threaded import ServerThread
from testkit.waiting import wait_until

from .conftest import MEMBER
from .hub import RawSubscriber
from .process import CLI, kill_if_running, opcua_toml, scrape, spawn_gateway, write_gateway_toml
from .process import health as health_of

pytestmark = pytest.mark.integration


def _source(name: str, server: MachineServer, machine: str) -> str:
    return opcua_toml(name, server.url, f"{machine}-SN-1", server.node_id(machine, "Power"))


def _write(path: Path, broker_port: int, health: int, sources: str, *, extra: str = "") -> None:
    policy = '[policy.signals.Power]\ncanonical = "power_kw"\n' + extra
    write_gateway_toml(
        path,
        member=MEMBER,
        name="reload-gw",
        broker_port=broker_port,
        health_port=health,
        sources=sources,
        policy=policy,
        flush_interval_s=0.1,
        batch_size=20,
        batch_time_s=0.2,
    )


def _reload_cli(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "gateway", "reload", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=config.parent,
    )


async def test_reload_adds_and_removes_sources_keeps_the_rest_and_the_buffer(tmp_path: Path) -> None:
    broker = start_mosquitto(tmp_path / "mosquitto")
    sub = RawSubscriber("127.0.0.1", broker.port, topic="mdh/#", persistent=True).start()
    health = free_port()
    generate_key(tmp_path / "member.key", key_id="k-test")
    config = tmp_path / "gateway.toml"
    log = tmp_path / "gateway.log"
    with ServerThread() as thread:
        a = MachineServer(free_port(), {"Presse": ["Power"]})
        b = MachineServer(free_port(), {"Laser": ["Power"]})
        thread.run(a.start())
        thread.run(b.start())
        _write(config, broker.port, health, _source("a", a, "Presse"))
        gw = spawn_gateway(config, log)
        m: dict[str, float] = {}
        try:
            await wait_until(
                lambda: scrape(health).get('mdh_gateway_source_connected{kind="opcua",source="a"}') == 1,
                60,
                "source a",
            )
            await wait_until(lambda: len(sub.samples()) >= 1, 20, "a's first sample")
            # the hub goes away: from now on everything stays in the gateway's disk buffer
            broker.stop()
            buffered = [float(v) for v in range(1, 11)]
            for v in buffered:
                await thread.call(a.write("Presse", "Power", v))
            await wait_until(
                lambda: scrape(health).get("mdh_gateway_buffer_samples", 0) >= 10, 20, "a's changes buffered"
            )
            readings_a = scrape(health)['mdh_gateway_readings_total{source="a"}']

            # 1. add source b (SIGHUP); a keeps running
            _write(config, broker.port, health, _source("a", a, "Presse") + _source("b", b, "Laser"))
            gw.send_signal(signal.SIGHUP)
            await wait_until(
                lambda: scrape(health).get('mdh_gateway_source_connected{kind="opcua",source="b"}') == 1,
                30,
                "source b",
            )
            for v in (100.0, 200.0):
                await thread.call(b.write("Laser", "Power", v))
                await thread.call(a.write("Presse", "Power", v + 1))
            await wait_until(
                lambda: scrape(health)['mdh_gateway_readings_total{source="a"}'] >= readings_a + 2,
                20,
                "a still reads",
            )
            m = scrape(health)
            assert m['mdh_gateway_reloads_total{result="ok"}'] == 1
            assert m['mdh_gateway_source_reconnects_total{source="a"}'] == 0, "the unchanged source was restarted"

            # 2. an invalid file: refused by the CLI, and by the gateway on SIGHUP; the running one continues
            _write(
                config,
                broker.port,
                health,
                _source("a", a, "Presse") + _source("b", b, "Laser"),
                extra='[policy.signals.Temp]\ncanonical = "temperature_kelvin"\n',
            )
            cli = _reload_cli(config)
            assert cli.returncode != 0 and "temperature_kelvin" not in cli.stdout
            assert "gateway.toml" in cli.stderr and "policy.signals.Temp.canonical" in cli.stderr, cli.stderr
            gw.send_signal(signal.SIGHUP)
            await wait_until(
                lambda: scrape(health).get('mdh_gateway_reloads_total{result="refused"}') == 1, 30, "the refusal"
            )
            doc = health_of(health)
            assert doc["status"] == "degraded" and any(
                "reload refused" in r and "canonical" in r for r in doc["reasons"]
            )
            await thread.call(b.write("Laser", "Power", 300.0))
            await wait_until(lambda: scrape(health)['mdh_gateway_readings_total{source="b"}'] >= 3, 20, "b still reads")

            # 3. a change of a fixed section is refused too
            _write(config, broker.port + 1, health, _source("a", a, "Presse") + _source("b", b, "Laser"))
            assert _reload_cli(config).returncode == 0  # the file loads; the gateway refuses it
            await wait_until(
                lambda: scrape(health).get('mdh_gateway_reloads_total{result="refused"}') == 2, 30, "the refusal"
            )
            assert "[uplink] cannot change" in json.dumps(health_of(health)["reasons"])

            # 4. remove source b through the CLI; a still untouched
            _write(config, broker.port, health, _source("a", a, "Presse"))
            assert _reload_cli(config).returncode == 0
            await wait_until(
                lambda: scrape(health).get('mdh_gateway_reloads_total{result="ok"}') == 2, 30, "the second reload"
            )
            m = scrape(health)
            assert not any('source="b"' in k for k in m), "the removed source still runs"
            assert m['mdh_gateway_source_reconnects_total{source="a"}'] == 0
            assert health_of(health)["status"] == "degraded"  # only the uplink is missing now
            assert health_of(health)["reasons"] == ["uplink: not connected"]

            # the hub comes back: everything buffered across the reloads arrives
            broker.start()
            want = {*buffered, 101.0, 201.0, 100.0, 200.0, 300.0}
            await wait_until(lambda: want <= {float(v) for *_, v in sub.samples()}, 30, "everything buffered")
            gw.send_signal(signal.SIGTERM)
            assert gw.wait(20) == 0
        finally:
            kill_if_running(gw)
            sub.stop()
            thread.run(a.stop())
            thread.run(b.stop())
            broker.stop()
    assert not (tmp_path / "buffer.sqlite.pid").exists(), "the pid file outlived the gateway"
