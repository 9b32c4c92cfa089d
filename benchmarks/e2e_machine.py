"""End-to-end benchmark, the machine side: an asyncua server process that changes its nodes at a
target rate on command, a handle on that process, and the bare-client baseline."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import percentile

#: The script the server process runs (it dispatches ``--serve``).
ENTRY = Path(__file__).with_name("end_to_end.py")
URI = "urn:metalldaten:bench-e2e"
#: Local signal name on the server -> canonical signal; node i is signal i % 5 of asset i // 5.
SIGNAL_MAP = (
    ("Power", "power_kw"),
    ("Temp", "temperature_c"),
    ("Speed", "spindle_speed_rpm"),
    ("Energy", "energy_kwh"),
    ("Parts", "parts_total"),
)
PUBLISHING_MS = 100
QUEUE_SIZE = 10


def node_name(i: int) -> str:
    return f"M{i // len(SIGNAL_MAP):04d}.{SIGNAL_MAP[i % len(SIGNAL_MAP)][0]}"


# -- the machine side (subprocess) ------------------------------------------------------------------


async def produce(server: Any, ids: list[Any], counter: int, rate: float, seconds: float) -> tuple[int, dict]:
    """Write changes round robin at ``rate`` per second (0: as fast as possible) for ``seconds``."""
    from asyncua import ua

    n = len(ids)
    written = 0
    first_ns = last_ns = time.time_ns()
    t0 = time.monotonic()
    end = t0 + seconds
    while True:
        now = time.monotonic()
        if now >= end:
            break
        todo = min(int((now - t0) * rate) - written, 200) if rate > 0 else 200
        if todo <= 0:
            await asyncio.sleep(0.002)
            continue
        for _ in range(todo):
            j = counter % n
            ts = datetime.now(UTC)
            dv = ua.DataValue(
                ua.Variant(float(counter // n + 1), ua.VariantType.Double), SourceTimestamp=ts, ServerTimestamp=ts
            )
            await server.write_attribute_value(ids[j], dv)
            counter += 1
            written += 1
        last_ns = time.time_ns()
        await asyncio.sleep(0)
    elapsed = time.monotonic() - t0
    return counter, {"written": written, "seconds": elapsed, "first_ns": first_ns, "last_ns": last_ns}


async def serve(port: int, nodes: int) -> None:
    """The server process: build the address space, then obey ``run RATE SECONDS`` lines on stdin."""
    from asyncua import Server, ua
    from asyncua.server.monitored_item_service import MonitoredItemValues

    def keep_value(self: MonitoredItemValues, cur_val: ua.DataValue) -> None:
        self.old_dvalue, self.current_dvalue = self.current_dvalue, cur_val

    # A load generator, not a server under test: asyncua deep-copies every written value for every monitored
    # item (two thirds of this process's CPU at 5,000 items); the values written here are fresh objects that
    # nothing changes afterwards, so they are kept as they are and one core produces 10k changes/s.
    MonitoredItemValues.set_current_datavalue = keep_value  # type: ignore[method-assign]

    logging.getLogger("asyncua").setLevel(logging.ERROR)
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/")
    idx = await server.register_namespace(URI)
    folder = await server.nodes.objects.add_folder(idx, "Machines")
    ids = []
    for i in range(nodes):
        v = await folder.add_variable(ua.NodeId(node_name(i), idx), node_name(i), 0.0)
        ids.append(v.nodeid)
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[str] = asyncio.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(commands.put_nowait, line)
        loop.call_soon_threadsafe(commands.put_nowait, "quit")

    threading.Thread(target=read_stdin, daemon=True).start()

    def reply(obj: dict) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    async with server:
        reply({"ready": nodes})
        counter = 0
        while True:
            cmd = (await commands.get()).split()
            if not cmd or cmd[0] != "run":
                break
            counter, result = await produce(server, ids, counter, float(cmd[1]), float(cmd[2]))
            reply(result)


class MachineServer:
    """Handle on the server subprocess."""

    def __init__(self, port: int, nodes: int) -> None:
        self.port = port
        self.proc = subprocess.Popen(
            [sys.executable, str(ENTRY), "--serve", str(port), str(nodes)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def _line(self) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the OPC UA server process ended")
        return json.loads(line)

    def ready(self) -> None:
        self._line()

    async def run(self, rate: float, seconds: float) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"run {rate} {seconds}\n")
        self.proc.stdin.flush()
        return await asyncio.to_thread(self._line)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


# -- baseline: a bare subscription client ---------------------------------------------------------


async def subscribe_bare(client: Any, nodes: int) -> Any:
    """Subscribe ``client`` to the first ``nodes`` nodes with the gateway's subscription parameters."""
    from asyncua import ua
    from asyncua.common.subscription import OverflowPolicy

    idx = (await client.get_namespace_array()).index(URI)
    sub = await client.create_subscription(
        PUBLISHING_MS, handler=None, queue_maxsize=max(100_000, 4 * nodes), overflow=OverflowPolicy.WARN
    )
    for start in range(0, nodes, 1000):
        part = [client.get_node(ua.NodeId(node_name(i), idx)) for i in range(start, min(nodes, start + 1000))]
        await sub.subscribe_data_change(part, queuesize=QUEUE_SIZE, sampling_interval=0)
    return sub


async def baseline(server: MachineServer, nodes: int, seconds: float) -> dict[str, float]:
    from asyncua import Client
    from asyncua.common.subscription import DataChangeEvent

    client = Client(f"opc.tcp://127.0.0.1:{server.port}/", timeout=30)
    await client.connect()
    try:
        sub = await subscribe_bare(client, nodes)
        received = 0
        latencies: list[int] = []
        window = [0, 0]

        async def consume() -> None:
            nonlocal received
            async for ev in sub:
                if not isinstance(ev, DataChangeEvent):
                    continue
                dv = ev.data.monitored_item.Value
                ts = dv.SourceTimestamp
                ns = int(ts.timestamp() * 1e9) if ts is not None else 0
                if window[0] <= ns <= window[1]:
                    received += 1
                    if received % 10 == 0:
                        latencies.append(time.time_ns() - ns)

        window[:] = [time.time_ns(), 2**62]
        task = asyncio.create_task(consume())
        result = await server.run(0, seconds)
        window[1] = result["last_ns"]
        await asyncio.sleep(1.0)  # the last publishing intervals
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), 5)
    produced = result["written"]
    lat = sorted(latencies)
    return {
        "server_changes_per_s": produced / result["seconds"],
        "changes_per_s": received / result["seconds"],
        "produced": produced,
        "received": received,
        "p50_ms": percentile(lat, 0.50) / 1e6,
        "p99_ms": percentile(lat, 0.99) / 1e6,
    }
