"""The uplink against the hub broker as the trustee configures it (``metalldaten broker``): TLS with the
hub CA, MQTT 5, login = member pseudonym with the password from the member kit, the broker's ACL."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from core.register import load_register
from gateway import Gateway
from testkit.machines import MachineServer
from testkit.servers import MosquittoServer, free_port, require_binary
from wire import decode_batch, decode_status

from .conftest import gateway_settings
from .hub import wait_until

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "metalldaten")


def _broker(*args: str | Path) -> str:
    out = subprocess.run([CLI, "broker", *map(str, args)], check=True, capture_output=True, text=True, timeout=60)
    return out.stdout


def _env_password(text: str) -> str:
    return next(line.split("=", 1)[1].strip() for line in text.splitlines() if line.startswith("MDH_"))


async def test_uplink_over_tls_with_the_member_kit(tmp_path: Path) -> None:
    require_binary("mosquitto_passwd")
    conf, data, kits = tmp_path / "conf", tmp_path / "data", tmp_path / "kits"
    port = free_port()
    _broker("init-ca", "--out", conf / "certs", "--hostname", "localhost", "--hostname", "127.0.0.1")
    _broker(
        "write-config",
        "--config-dir",
        conf,
        "--data-dir",
        data,
        "--port",
        port,
        "--mtls-port",
        free_port(),
        "--bind",
        "127.0.0.1",
    )
    register, passwd = conf / "members.toml", conf / "passwd"
    for group in ("grp-a", "grp-b"):
        _broker(
            "add-member",
            "--register",
            register,
            "--passwd",
            passwd,
            "--group",
            group,
            "--ca-dir",
            conf / "certs",
            "--out",
            kits,
            "--hub-host",
            "127.0.0.1",
        )
    members = [m.pseudonym for m in load_register(register).member]
    ingest_password = _env_password(_broker("add-ingestor", "--passwd", passwd))
    text = (conf / "mosquitto.conf").read_text()
    broker = MosquittoServer(
        workdir=conf,
        port=port,
        conf=("user root\n" if os.geteuid() == 0 else "") + text,
        binary=require_binary("mosquitto"),
    )
    broker.start()

    received: list[tuple[str, bytes]] = []
    ready = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="ingest-check", protocol=mqtt.MQTTv5)
    sub.tls_set(ca_certs=str(conf / "certs" / "ca.pem"), cert_reqs=ssl.CERT_REQUIRED)
    sub.username_pw_set("ingestor", ingest_password)
    # The ingestor's own filters: its login may subscribe to nothing wider.
    sub.on_connect = lambda c, *_: c.subscribe([("mdh/v1/+/+/samples", 1), ("mdh/v1/+/+/status", 1)])
    sub.on_subscribe = lambda *_: ready.set()
    sub.on_message = lambda _c, _u, m: received.append((m.topic, bytes(m.payload)))
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    server = MachineServer(free_port(), {"Laser": ["Power"]})
    await server.start()
    try:
        assert ready.wait(10), "the ingestor login could not subscribe"
        member = members[0]
        kit = kits / member
        uplink = tomllib.loads((kit / "gateway-uplink.toml").read_text())["uplink"]
        uplink["ca_file"] = (
            str(kit / uplink["ca_file"]) if not Path(uplink["ca_file"]).is_absolute() else uplink["ca_file"]
        )
        uplink["password"] = _env_password((kit / "gateway.env").read_text())
        assert uplink["protocol"] == "5" and uplink["tls"] is True
        nodes = [{"asset": "Laser-1", "signal": "Power", "node": server.node_id("Laser", "Power")}]
        settings = gateway_settings(
            tmp_path / "gw",
            uplink_port=port,
            opcua=[{"name": "h", "url": server.url, "nodes": nodes}],
            extra={"identity": {"member": member}, "uplink": {**uplink, "port": port}},
        )
        async with Gateway(settings) as gw:
            task = asyncio.create_task(gw.run())
            await wait_until(lambda: gw.uplink.samples_acked >= 1, 20, "a batch acknowledged over TLS")
            gw.stop()
            await asyncio.wait_for(task, 15)
        batches = [decode_batch(p) for t, p in received if t.endswith("/samples")]
        assert batches and all(b.member == member for b in batches)
        statuses = [decode_status(p) for t, p in received if t.endswith("/status")]
        assert [s.state for s in statuses][:1] == ["online"] and statuses[-1].state == "offline"
        assert gw.uplink.batches_refused == 0

        # the same kit with another member's pseudonym as login: the broker refuses the connection
        wrong = gateway_settings(
            tmp_path / "gw2",
            uplink_port=port,
            opcua=[{"name": "h", "url": server.url, "nodes": nodes}],
            extra={"identity": {"member": members[1]}, "uplink": {**uplink, "port": port, "drain_timeout_s": 0.5}},
        )
        async with Gateway(wrong) as gw2:
            task = asyncio.create_task(gw2.run())
            await wait_until(
                lambda: gw2.uplink.session is not None and gw2.uplink.session.last_error is not None,
                10,
                "the refused login",
            )
            assert not gw2.uplink.connected
            gw2.stop()
            await asyncio.wait_for(task, 15)
    finally:
        sub.disconnect()
        sub.loop_stop()
        await server.stop()
        broker.stop()
