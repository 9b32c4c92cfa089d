"""The generated broker configuration on a real Mosquitto: TLS, passwords, the ACL and the ingestor behind it."""

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
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from core.register import load_register
from storage import DuckDBStore, Ingestor, IngestSettings, SeriesQuery
from testkit.mqtt import make_batch, wait_until
from testkit.servers import MosquittoServer, free_port, require_binary
from tests.broker.clikit import env_password, invoke
from tests.storage.test_ingestor import running
from wire import encode_batch, samples_topic

pytestmark = pytest.mark.integration
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

    def reload(self, done: Callable[[], bool]) -> None:
        """SIGHUP, then wait (10 s at most) until ``done()``: the broker reloads in its own event loop."""
        assert self.server.proc is not None
        os.kill(self.server.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while not done():
            assert time.monotonic() < deadline, "the reload did not take effect within 10 s"
            time.sleep(0.05)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
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
    conf = (conf_dir / "mosquitto.conf").read_text()
    if os.geteuid() == 0:
        conf = "user root\n" + conf
    server = MosquittoServer(workdir=conf_dir, port=port, conf=conf, binary=require_binary("mosquitto"))
    server.start()
    try:
        yield Hub(server, conf_dir, conf_dir / "certs/ca.pem", mtls, register, passwd, members, ingestor_password, kits)
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
        self.c.on_disconnect = lambda *_a: self._connected.set()  # refused during the handshake
        self.c.on_message = lambda _c, _u, m: self.received.append((m.topic, bytes(m.payload)))
        self.c.on_publish = lambda _c, _u, mid, rc, _p: self.acks.__setitem__(mid, rc.value)
        try:
            self.c.connect("127.0.0.1", port or hub.server.port)
        except (OSError, ssl.SSLError):
            self._connected.set()
        self.c.loop_start()
        self._connected.wait(10)

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


def test_a_member_cannot_publish_under_another_members_topic(hub: Hub) -> None:
    (a, pa), (b, pb) = sorted(hub.members.items())
    watcher = Client(hub, "ingestor", hub.ingestor_password)
    member_a = Client(hub, a, pa)
    member_b = Client(hub, b, pb)
    try:
        assert watcher.ok and member_a.ok and member_b.ok
        watcher.subscribe("mdh/v1/+/+/samples")
        watcher.subscribe("mdh/v1/+/+/status")
        assert member_a.publish(f"mdh/v1/{b}/{GW}/samples", b"forged by A") == 0x87  # not authorised
        assert member_a.publish(f"mdh/v1/{b}/{GW}/status", b"forged by A") == 0x87
        assert member_a.publish(f"mdh/v1/{a}/{GW}/samples", b"A's own") == 0
        assert member_b.publish(f"mdh/v1/{b}/{GW}/samples", b"B's own") == 0
        assert watcher.publish(f"mdh/v1/{a}/{GW}/samples", b"ingestor writes") == 0x87  # read-only
        # The broker routes each client's packets in order: once the own messages, sent after the forged ones,
        # have arrived, a forged message that got through would have arrived before them.
        deadline = time.monotonic() + 3
        while len(watcher.received) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sorted(watcher.received) == sorted(
            [(f"mdh/v1/{a}/{GW}/samples", b"A's own"), (f"mdh/v1/{b}/{GW}/samples", b"B's own")]
        )
        member_a.subscribe(f"mdh/v1/{b}/#")
        assert member_b.publish(f"mdh/v1/{b}/{GW}/samples", b"B again") == 0
        deadline = time.monotonic() + 3
        while len(watcher.received) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert watcher.received[-1] == (f"mdh/v1/{b}/{GW}/samples", b"B again")
        # B's message was routed before A's next packet is read: A's acknowledged publish comes back after any
        # copy of "B again" the broker had queued for A.
        assert member_a.publish(f"mdh/v1/{a}/{GW}/samples", b"A's sentinel") == 0
        assert member_a.received == [], "a member must not read another member's data"
    finally:
        for c in (watcher, member_a, member_b):
            c.close()


def test_logins_are_checked_and_removal_and_rotation_take_effect_on_reload(hub: Hub) -> None:
    (a, pa), (b, pb) = sorted(hub.members.items())
    assert not Client(hub, a, "wrong-password").ok
    assert not Client(hub, None, None).ok, "anonymous clients must be refused"
    invoke("remove-member", "--register", hub.register, "--passwd", hub.passwd, a)
    new_b = env_password(invoke("rotate-password", "--passwd", hub.passwd, b))

    def refused(user: str, password: str) -> bool:
        client = Client(hub, user, password)
        client.close()
        return not client.ok

    hub.reload(lambda: refused(a, pa))
    removed, old_b, rotated = Client(hub, a, pa), Client(hub, b, pb), Client(hub, b, new_b)
    try:
        assert not removed.ok and not old_b.ok and rotated.ok
    finally:
        for c in (removed, old_b, rotated):
            c.close()


def test_client_certificate_login_is_bound_to_the_pseudonym(hub: Hub) -> None:
    (a, _), (b, _) = sorted(hub.members.items())
    kit = hub.kits / a
    member_a = Client(hub, None, None, port=hub.mtls_port, cert=(kit / f"{a}.pem", kit / f"{a}.key"))
    try:
        assert member_a.ok
        assert member_a.publish(f"mdh/v1/{a}/{GW}/samples", b"own") == 0x10  # accepted; no subscriber
        assert member_a.publish(f"mdh/v1/{b}/{GW}/samples", b"forged") == 0x87
    finally:
        member_a.close()
    assert not Client(hub, None, None, port=hub.mtls_port).ok, "no certificate, no login on the mutual-TLS listener"


async def test_ingestor_over_tls_stores_own_data_and_never_sees_forged_data(hub: Hub, tmp_path: Path) -> None:
    (a, pa), (b, _) = sorted(hub.members.items())
    store = DuckDBStore(tmp_path / "hub.duckdb")
    settings = IngestSettings(
        host="localhost",
        port=hub.server.port,
        tls=True,
        ca_file=hub.ca,
        username="ingestor",
        password=hub.ingestor_password,
        client_id="ing-tls",  # type: ignore[arg-type]
        dead_letter_path=tmp_path / "dead.jsonl",
        batch_max_delay_s=0.05,
        rollup_refresh_s=None,
    )
    ingestor = Ingestor(settings, store, lambda: load_register(hub.register))
    member_a = Client(hub, a, pa)
    try:
        async with running(ingestor):
            own, forged = make_batch(a, GW, 30), make_batch(b, GW, 7)
            assert member_a.publish(samples_topic(b, GW), encode_batch(forged)) == 0x87
            assert member_a.publish(samples_topic(a, GW), encode_batch(own)) == 0
            await wait_until(lambda: ingestor.stored_samples >= 30, what="A's batch stored")
            # a second own batch, published after the forged one, stored: the forged one would have been first
            assert member_a.publish(samples_topic(a, GW), encode_batch(make_batch(a, GW, 5))) == 0
            await wait_until(lambda: ingestor.stored_samples >= 35, what="A's sentinel batch stored")
        assert store.query_series(SeriesQuery())["member"].unique().to_list() == [a]
        assert store.count() == 35 and ingestor.dead_lettered == 0
    finally:
        member_a.close()
        store.close()
