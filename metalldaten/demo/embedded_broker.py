"""The demo's MQTT brokers: Mosquitto when it is installed, else an amqtt broker inside the process.

Production uses Mosquitto configured from broker_config/. The demo starts a plain, anonymous
loopback-only broker per factory and one for the hub: a ``mosquitto`` subprocess (the same
broker, tuned as in broker_config/) if the binary is on the PATH, otherwise amqtt, so that the
demo needs nothing but Python packages. amqtt speaks MQTT 3.1.1 only (no shared subscriptions:
the demo runs one ingestor) and gives up on a QoS 1 delivery that is not acknowledged within
5 s: on a busy machine it can lose messages under the history's load, which the demo's check
then reports. Mosquitto keeps them until they are acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

from amqtt.broker import Broker

log = logging.getLogger(__name__)


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None
    )


def mosquitto_conf(port: int, host: str, log_file: Path) -> str:
    # As root Mosquitto would drop to the user "mosquitto", which cannot write the demo's folder.
    user = "user root\n" if os.geteuid() == 0 else ""
    return (
        f"{user}per_listener_settings false\npersistence false\n"
        "set_tcp_nodelay true\nmax_inflight_messages 1000\nmax_queued_messages 100000\n"
        f"log_dest file {log_file}\nlog_type error\nlog_type warning\nlog_type notice\n"
        f"listener {port} {host}\nallow_anonymous true\n"
    )


def _spawn(binary: str, workdir: Path, port: int, host: str) -> subprocess.Popen[bytes]:
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / f"mosquitto-{port}.conf"
    conf.write_text(mosquitto_conf(port, host, workdir / f"mosquitto-{port}.log"), encoding="utf-8")
    return subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _wait_listening(host: str, port: int, proc: subprocess.Popen[bytes], within_s: float = 20.0) -> None:
    deadline = time.monotonic() + within_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited with {proc.returncode} before listening on {host}:{port}")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
            await writer.wait_closed()
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"mosquitto did not listen on {host}:{port} within {within_s:.0f} s")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def embedded_broker(port: int, *, host: str = "127.0.0.1", workdir: Path | None = None) -> AsyncIterator[str]:
    """Run a broker on ``host:port`` for the duration of the block; yields ``host:port``.

    With ``workdir`` and Mosquitto installed, a Mosquitto process (configuration and log in ``workdir``);
    else amqtt in this process.
    """
    binary = mosquitto_binary() if workdir is not None else None
    if binary is not None and workdir is not None:
        proc = _spawn(binary, workdir, port, host)
        try:
            await _wait_listening(host, port, proc)
            log.info("mosquitto listening on %s:%d (pid %d)", host, port, proc.pid)
            yield f"{host}:{port}"
        finally:
            proc.terminate()
            try:
                await asyncio.to_thread(proc.wait, 10)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)
        return
    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}", "max_connections": 200}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    broker = Broker(config)
    await broker.start()
    log.info("embedded MQTT broker (amqtt) listening on %s:%d", host, port)
    try:
        yield f"{host}:{port}"
    finally:
        await broker.shutdown()
