"""Backfill across a SIGKILL, with real processes end to end: an asyncua server with historised nodes in its own
thread, the gateway as a subprocess, Mosquitto, the ingestor and a DuckDB store. The gateway is SIGKILLed, the
machine changes for 30 s, the gateway is started again: the store then holds every change of those 30 s (and of
the whole run) exactly once, and no change reached the hub in two batches."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from gateway.pseudonymise import generate_key
from storage import DuckDBStore, Ingestor, SeriesQuery
from testkit.historian import HistorisedMachineServer
from testkit.mqtt import ingest_settings, register
from testkit.servers import free_port, start_mosquitto
from testkit.threaded import ServerThread
from testkit.waiting import wait_until

from .conftest import MEMBER
from .hub import RawSubscriber
from .process import kill_if_running, opcua_toml, scrape, spawn_gateway, write_gateway_toml

pytestmark = pytest.mark.integration

KILLED_S = 30.0
STEP_S = 0.2
FILLED = 'mdh_gateway_backfill_samples_total{source="m"}'


def _config(tmp: Path, url: str, node: str, broker_port: int, health_port: int) -> Path:
    generate_key(tmp / "member.key", key_id="k-test")
    backfill = "[opcua.backfill]\nenabled = true\nvalues_per_request = 40\nmax_requests_per_s = 50\n"
    source = opcua_toml("m", url, "Schleifmaschine-SN-889", node, extra=backfill)
    return write_gateway_toml(
        tmp / "gateway.toml",
        member=MEMBER,
        name="backfill-kill-gw",
        broker_port=broker_port,
        health_port=health_port,
        sources=source,
        batch_size=50,
    )


async def test_sigkilled_gateway_backfills_30_s_exactly_once(tmp_path: Path) -> None:
    broker = start_mosquitto(tmp_path / "mosquitto")
    store = DuckDBStore(tmp_path / "hub.duckdb")
    ingestor = Ingestor(ingest_settings(broker.port, tmp_path), store, lambda: register(MEMBER))
    tap = RawSubscriber("127.0.0.1", broker.port, topic="mdh/#").start()
    health = free_port()
    log = tmp_path / "gateway.log"
    with ServerThread() as thread:
        server = HistorisedMachineServer(free_port(), {"M": ["Power"]}, response_size=25)
        thread.run(server.start())
        config = _config(tmp_path, server.url, server.node_id("M", "Power"), broker.port, health)
        written: list[int] = []
        values_written: dict[int, float] = {}
        value = 0.0

        async def write_for(seconds: float) -> None:
            nonlocal value
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                value += 1.0
                ts = await thread.call(server.write("M", "Power", value))
                written.append(int(ts.timestamp() * 1e6) * 1000)
                values_written[written[-1]] = value
                await asyncio.sleep(STEP_S)

        def stored() -> dict[int, float]:
            frame = store.query_series(SeriesQuery(signals=("power_kw",)))
            return {int(t.timestamp() * 1e6) * 1000: v for t, v in zip(frame["ts"], frame["value"], strict=True)}

        async with ingestor:
            ing_task = asyncio.create_task(ingestor.run())
            gw = spawn_gateway(config, log)
            try:
                await asyncio.wait_for(ingestor.connected.wait(), 10)
                await wait_until(lambda: len(tap.samples()) >= 1, 60, "the gateway's first sample")
                await write_for(2.0)
                await wait_until(lambda: written[-1] in stored(), 20, "the changes before the kill in the store")
                gw.send_signal(signal.SIGKILL)
                gw.wait(10)
                killed_from = len(written)
                await write_for(KILLED_S)  # the machine keeps changing while no gateway runs
                during_kill = written[killed_from:]
                gw = spawn_gateway(config, log)
                await wait_until(lambda: scrape(health).get(FILLED, 0) > 0, 60, "backfill")
                await write_for(1.0)
                expected = set(written)
                await wait_until(lambda: expected <= set(stored()), 60, "every change in the store")
                got = stored()
                missing = set(during_kill) - set(got)
                assert not missing, f"{len(missing)} changes of the 30 s missing\n" + log.read_text()[-3000:]
                # every change once, with its value at its own time (values are unique per change)
                assert {ts: got[ts] for ts in expected} == values_written
                assert set(got) - expected <= {min(got)}  # besides the server's initial value, nothing invented
                # exactly once on the wire too: no change in two batches (the store would hide a duplicate)
                keys = [(a, s, ts) for a, s, ts, _ in tap.samples()]
                assert len(keys) == len(set(keys)), "a change reached the hub twice"
                backfilled = scrape(health).get(FILLED, 0)
                assert len(during_kill) <= backfilled <= len(during_kill) + 10 / STEP_S
                assert len(during_kill) >= 0.8 * KILLED_S / STEP_S
                gw.send_signal(signal.SIGTERM)
                assert gw.wait(20) == 0
            finally:
                kill_if_running(gw)
                ingestor.stop()
                await asyncio.wait_for(ing_task, 10)
                tap.stop()
                thread.run(server.stop())
                store.close()
                broker.stop()
