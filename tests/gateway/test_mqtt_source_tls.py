"""MQTT source over TLS (``ca_file``) against a real Mosquitto with a TLS-only listener and a CA
made by ``metalldaten broker init-ca``: a value published with ``mosquitto_pub --cafile`` is received,
buffered and forwarded; with another CA the source does not trust the broker and stays disconnected."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway import Gateway
from gateway.pseudonymise import load_key, pseudonym
from testkit.servers import MosquittoServer, require_binary, start_mosquitto

from .conftest import gateway_settings
from .hub import RawSubscriber, wait_until

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "metalldaten")


def _init_ca(out: Path) -> Path:
    subprocess.run(
        [CLI, "broker", "init-ca", "--out", str(out), "--hostname", "127.0.0.1", "--hostname", "localhost"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return out


def _pub(port: int, ca: Path, topic: str, message: str) -> None:
    cmd = [require_binary("mosquitto_pub"), "-h", "127.0.0.1", "-p", str(port), "--cafile", str(ca)]
    subprocess.run([*cmd, "-q", "1", "-t", topic, "-m", message], check=True, timeout=10)


async def test_mqtt_source_over_tls(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    require_binary("mosquitto_pub")
    certs = _init_ca(tmp_path / "certs")
    other = _init_ca(tmp_path / "other-certs")
    listener = (
        "listener {port} 127.0.0.1\n"
        f"cafile {certs / 'ca.pem'}\ncertfile {certs / 'server.pem'}\nkeyfile {certs / 'server.key'}\n"
        "allow_anonymous true\n"
    )
    local = start_mosquitto(tmp_path / "local-broker", listener=listener)
    source: dict[str, Any] = {
        "name": "leitstand",
        "port": local.port,
        "client_id": "gw-tls-source",
        "ca_file": str(certs / "ca.pem"),
        "backoff_min_s": 0.1,
        "backoff_max_s": 0.5,
        "topics": [{"filter": "werk/+/+/wert", "format": "number", "asset_level": 1, "signal_level": 2}],
    }
    # the uplink goes to the plain test broker, where the subscriber sees what the gateway forwards
    settings = gateway_settings(tmp_path / "gw", uplink_port=mosquitto.port, mqtt=[source])
    sub = RawSubscriber("127.0.0.1", mosquitto.port, topic="mdh/#").start()
    try:
        async with Gateway(settings) as gw:
            task = asyncio.create_task(gw.run())
            src = gw.sources[0]
            await sub.wait_for(lambda: src.subscribed, 10, "the MQTT source to subscribe over TLS")
            await asyncio.to_thread(_pub, local.port, certs / "ca.pem", "werk/Presse-07/Power/wert", "12500")
            await sub.wait_for(lambda: gw.buffer.written >= 1, 10, "the value in the disk buffer")
            await sub.wait_for(lambda: len(sub.samples()) >= 1, 10, "the forwarded value")
            gw.stop()
            await asyncio.wait_for(task, 15)
        key = load_key(tmp_path / "gw" / "member.key")
        assert [(a, s, v) for a, s, _, v in sub.samples()] == [(pseudonym(key, "a", "Presse-07"), "power_kw", 12.5)]
        assert gw.buffer.sent >= 1

        # a CA that did not sign the broker's certificate: the TLS handshake fails, nothing is received
        untrusting = gateway_settings(
            tmp_path / "gw-other",
            uplink_port=mosquitto.port,
            mqtt=[{**source, "client_id": "gw-tls-other", "ca_file": str(other / "ca.pem")}],
        )
        async with Gateway(untrusting) as gw2:
            task = asyncio.create_task(gw2.run())
            src2 = gw2.sources[0]
            await wait_until(lambda: src2.last_error is not None, 10, "the refused TLS handshake")
            assert "CERTIFICATE_VERIFY_FAILED" in (src2.last_error or "")
            assert not src2.connected
            await asyncio.to_thread(_pub, local.port, certs / "ca.pem", "werk/Presse-07/Power/wert", "13000")
            await asyncio.sleep(0.5)
            assert src2.readings_in == 0
            gw2.stop()
            await asyncio.wait_for(task, 15)
    finally:
        sub.stop()
        local.stop()
