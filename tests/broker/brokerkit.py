"""A real Mosquitto configured by the trustee's commands (two members with certificates, an ingestor and the
trustee's admin login), and a TLS client that records what the broker answers."""

from __future__ import annotations

import os
import signal
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from core.register import load_register
from storage import IngestSettings
from testkit.servers import MosquittoServer, free_port, require_binary
from tests.broker.clikit import env_password, invoke

GW = "g-0000000a"


@dataclass
class Hub:
    server: MosquittoServer
    conf_dir: Path
    ca: Path
    mtls_port: int
    register: Path
    passwd: Path
    members: dict[str, str]  # pseudonym -> password
    ingestor_password: str
    kits: Path
    admin_password: str

    def reload(self, done: Callable[[], bool]) -> None:
        """SIGHUP, then wait (10 s at most) until ``done()``: the broker reloads in its own event loop."""
        assert self.server.proc is not None
        os.kill(self.server.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while not done():
            assert time.monotonic() < deadline, "the reload did not take effect within 10 s"
            time.sleep(0.05)


def ingestor_settings(hub: Hub, tmp_path: Path, client_id: str) -> IngestSettings:
    """An ingestor of ``hub`` over TLS with the ingestor login, dead letters in ``tmp_path``."""
    return IngestSettings(
        host="localhost",
        port=hub.server.port,
        tls=True,
        ca_file=hub.ca,
        username="ingestor",
        password=hub.ingestor_password,
        client_id=client_id,  # type: ignore[arg-type]
        dead_letter_path=tmp_path / "dead.jsonl",
        batch_max_delay_s=0.05,
        rollup_refresh_s=None,
    )


def start_hub(tmp_path: Path) -> Iterator[Hub]:
    """The broker of the ``hub`` fixture (tests/broker/conftest.py), stopped afterwards."""
    require_binary("mosquitto")
    require_binary("mosquitto_passwd")
    conf_dir, data_dir, kits = tmp_path / "conf", tmp_path / "data", tmp_path / "kits"
    port, mtls = free_port(), free_port()
    invoke("init-ca", "--out", conf_dir / "certs", "--hostname", "localhost", "--hostname", "127.0.0.1")
    invoke(
        "write-config",
        "--config-dir",
        conf_dir,
        "--data-dir",
        data_dir,
        "--port",
        port,
        "--mtls-port",
        mtls,
        "--ingest-port",
        free_port(),
        "--bind",
        "127.0.0.1",
    )
    register, passwd = conf_dir / "members.toml", conf_dir / "passwd"
    members = {}
    for group in ("grp-a", "grp-b"):
        invoke(
            "add-member",
            "--register",
            register,
            "--passwd",
            passwd,
            "--group",
            group,
            "--ca-dir",
            conf_dir / "certs",
            "--client-cert",
            "--out",
            kits,
            "--hub-host",
            "localhost",
        )
    for m in load_register(register).member:
        members[m.pseudonym] = env_password((kits / m.pseudonym / "gateway.env").read_text())
    ingestor_password = env_password(invoke("add-ingestor", "--passwd", passwd))
    admin_password = env_password(invoke("add-admin", "--passwd", passwd))
    conf = (conf_dir / "mosquitto.conf").read_text()
    if os.geteuid() == 0:
        conf = "user root\n" + conf
    server = MosquittoServer(workdir=conf_dir, port=port, conf=conf, binary=require_binary("mosquitto"))
    server.start()
    try:
        yield Hub(
            server,
            conf_dir,
            conf_dir / "certs/ca.pem",
            mtls,
            register,
            passwd,
            members,
            ingestor_password,
            kits,
            admin_password,
        )
    finally:
        server.stop()


class Client:
    """An MQTT v5 client over TLS that records what it receives and the reason codes of its PUBACKs."""

    def __init__(
        self,
        hub: Hub,
        username: str | None,
        password: str | None,
        *,
        port: int | None = None,
        cert: tuple[Path, Path] | None = None,
    ) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.connect_rc: int | None = None
        self.acks: dict[int, int] = {}
        #: Connections the broker closed (paho reconnects by itself; the count shows it was closed).
        self.disconnects = 0
        self._connected = threading.Event()
        self.c = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=uuid.uuid4().hex[:12], protocol=mqtt.MQTTv5
        )
        self.c.tls_set(
            ca_certs=str(hub.ca),
            certfile=str(cert[0]) if cert else None,
            keyfile=str(cert[1]) if cert else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
        if username:
            self.c.username_pw_set(username, password)
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_message = lambda _c, _u, m: self.received.append((m.topic, bytes(m.payload)))
        self.c.on_publish = lambda _c, _u, mid, rc, _p: self.acks.__setitem__(mid, rc.value)
        try:
            self.c.connect("127.0.0.1", port or hub.server.port)
        except (OSError, ssl.SSLError):
            self._connected.set()
        self.c.loop_start()
        self._connected.wait(10)

    def _on_disconnect(self, *_args: object) -> None:
        self.disconnects += 1
        self._connected.set()  # also when refused during the handshake

    def _on_connect(self, _c: object, _u: object, _f: object, rc: mqtt.ReasonCode, _p: object) -> None:
        self.connect_rc = rc.value
        self._connected.set()

    @property
    def ok(self) -> bool:
        return self.connect_rc == 0

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self.c.on_subscribe = lambda *_a: done.set()
        self.c.subscribe(topic, qos=1)
        assert done.wait(10)

    def publish(self, topic: str, payload: bytes) -> int:
        info = self.c.publish(topic, payload, qos=1)
        info.wait_for_publish(10)
        deadline = time.monotonic() + 5
        while info.mid not in self.acks and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.acks[info.mid]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()
