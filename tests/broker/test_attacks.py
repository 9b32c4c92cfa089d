"""A hostile member against the generated broker configuration, a real Mosquitto and a real ingestor.

Two honest members publish batches the whole time; a third member's login tries every attack a competitor
could: join the ingestors' shared group, subscribe to ``#``, ``$SYS/#`` or another member's topics, take the
ingestor's client id or resume its session, take over an honest gateway's session, publish retained (also as a
last will), publish under another member, send an oversized packet, connect without TLS or with an empty
password. Each attempt must be refused by the broker with the reason code it answers (SUBACK, CONNACK, PUBACK or
DISCONNECT) or by closing the connection, and afterwards the store holds exactly the honest members' samples:
none lost, none duplicated, none under a wrong member.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from core.register import load_register
from storage import DuckDBStore, Ingestor, IngestSettings, SeriesQuery
from testkit.mqtt import make_batch, wait_until
from testkit.servers import MosquittoServer, free_port, require_binary
from tests.broker.clikit import env_password, invoke
from tests.storage.test_ingestor import running
from wire import encode_batch, samples_topic, status_topic

pytestmark = pytest.mark.integration
GW = "g-0000000a"
SAMPLES_PER_BATCH = 25
MIN_BATCHES = 20
TIMEOUT = 10.0

# MQTT v5 reason codes the broker answers with.
GRANTED_QOS1 = 0x01
NOT_AUTHORISED = 0x87
RETAIN_NOT_SUPPORTED = 0x9A


@dataclass
class Broker:
    server: MosquittoServer
    ca: Path
    ingest_port: int
    members: dict[str, str]  # login -> password
    register: Path
    ingestor_password: str

    @property
    def port(self) -> int:
        return self.server.port


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    require_binary("mosquitto_passwd")
    conf, kits = tmp_path / "conf", tmp_path / "kits"
    port, mtls, ingest = free_port(), free_port(), free_port()
    invoke("init-ca", "--out", conf / "certs", "--hostname", "localhost", "--hostname", "127.0.0.1")
    register, passwd = conf / "members.toml", conf / "passwd"
    for group in ("grp-a", "grp-b", "grp-e"):
        invoke("add-member", "--register", register, "--passwd", passwd, "--group", group, "--out", kits)
    members = {
        m.pseudonym: env_password((kits / m.pseudonym / "gateway.env").read_text())
        for m in load_register(register).member
    }
    ingestor_password = env_password(invoke("add-ingestor", "--passwd", passwd))
    invoke(
        "write-config",
        "--config-dir",
        conf,
        "--data-dir",
        tmp_path / "data",
        "--port",
        port,
        "--mtls-port",
        mtls,
        "--ingest-port",
        ingest,
        "--bind",
        "127.0.0.1",
    )
    text = (conf / "mosquitto.conf").read_text()
    server = MosquittoServer(
        workdir=conf,
        port=port,
        conf=("user root\n" if os.geteuid() == 0 else "") + text,
        binary=require_binary("mosquitto"),
    )
    server.start()
    try:
        yield Broker(server, conf / "certs/ca.pem", ingest, members, register, ingestor_password)
    finally:
        server.stop()


@dataclass
class Outcome:
    """What the broker answered one client."""

    connack: int | None = None
    session_present: bool = False
    max_packet_size: int | None = None
    disconnect: int | None = None
    suback: list[int] = field(default_factory=list)
    puback: dict[int, int] = field(default_factory=dict)
    received: list[str] = field(default_factory=list)
    closed: threading.Event = field(default_factory=threading.Event)
    answered: threading.Event = field(default_factory=threading.Event)


class Client:
    """A paho client over TLS that records every reason code the broker sends it."""

    def __init__(
        self,
        port: int,
        ca: Path,
        username: str | None,
        password: str | None,
        *,
        client_id: str | None = None,
        protocol: int = mqtt.MQTTv5,
        clean_start: bool = True,
        will_retain: bool = False,
    ) -> None:
        self.out = Outcome()
        self.c = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id or f"t-{uuid.uuid4().hex[:10]}",
            protocol=protocol,
            **({} if protocol == mqtt.MQTTv5 else {"clean_session": clean_start}),
        )
        self.c.tls_set(ca_certs=str(ca), cert_reqs=ssl.CERT_REQUIRED)
        if username is not None:
            self.c.username_pw_set(username, password)
        if will_retain:
            self.c.will_set(status_topic(username or "m-000000", GW), b"offline", qos=1, retain=True)
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_subscribe = self._on_subscribe
        self.c.on_publish = self._on_publish
        self.c.on_message = lambda _c, _u, m: self.out.received.append(m.topic)
        kwargs: dict[str, Any] = {}
        if protocol == mqtt.MQTTv5:
            kwargs["clean_start"] = clean_start
            if not clean_start:
                props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                props.SessionExpiryInterval = 3600
                kwargs["properties"] = props
        self.c.connect("127.0.0.1", port, **kwargs)
        self.c.loop_start()
        assert self.out.answered.wait(TIMEOUT), "the broker neither accepted nor refused the connection"

    def _on_connect(self, _c: Any, _u: Any, flags: Any, rc: Any, props: Any) -> None:
        self.out.connack = rc.value
        self.out.session_present = bool(flags.session_present)
        if props is not None and hasattr(props, "MaximumPacketSize"):
            self.out.max_packet_size = props.MaximumPacketSize
        self.out.answered.set()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if self.out.connack is not None and self.out.disconnect is None:
            self.out.disconnect = rc.value
        self.out.closed.set()
        self.out.answered.set()

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, rcs: list[Any], _p: Any) -> None:
        self.out.suback = [r.value for r in rcs]

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: Any, _p: Any) -> None:
        self.out.puback[mid] = rc.value

    @property
    def ok(self) -> bool:
        return self.out.connack == 0

    def subscribe(self, topic: str) -> int:
        self.out.suback = []
        self.c.subscribe(topic, qos=1)
        deadline = time.monotonic() + TIMEOUT
        while not self.out.suback and time.monotonic() < deadline and not self.out.closed.is_set():
            self.out.closed.wait(0.01)
        assert self.out.suback, f"no SUBACK for {topic}"
        return self.out.suback[0]

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> int | None:
        """The PUBACK reason code, or ``None`` if the broker closed the connection instead."""
        info = self.c.publish(topic, payload, qos=1, retain=retain)
        deadline = time.monotonic() + TIMEOUT
        while info.mid not in self.out.puback and time.monotonic() < deadline and not self.out.closed.is_set():
            self.out.closed.wait(0.01)
        return self.out.puback.get(info.mid)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.c.disconnect()
        self.c.loop_stop()


class HonestGateway(threading.Thread):
    """Publishes batches from one member until told to stop (and at least MIN_BATCHES), counting what the broker
    acknowledged; any disconnect of this gateway is recorded (nobody may kick it)."""

    def __init__(self, broker: Broker, member: str) -> None:
        super().__init__(daemon=True)
        self.member = member
        self.client = Client(broker.port, broker.ca, member, broker.members[member])
        assert self.client.ok, f"honest member {member} could not connect: {self.client.out.connack}"
        self.stop = threading.Event()
        self.acked_samples = 0
        self.batch_ids: list[str] = []
        self.error: str | None = None

    def run(self) -> None:
        while len(self.batch_ids) < MIN_BATCHES or not self.stop.is_set():
            batch = make_batch(self.member, GW, SAMPLES_PER_BATCH, asset="a-00000" + self.member[-3:])
            rc = self.client.publish(samples_topic(self.member, GW), encode_batch(batch))
            if rc != 0:
                self.error = f"batch of {self.member} answered {rc}, disconnect {self.client.out.disconnect}"
                return
            self.acked_samples += SAMPLES_PER_BATCH
            self.batch_ids.append(batch.batch_id)
            self.stop.wait(0.01)  # load shape: about 100 batches/s, while the attacks run


def refused_without_tls(port: int) -> bool:
    """A plain-TCP MQTT CONNECT to a TLS listener: the broker must close the connection without a CONNACK."""
    body = b"\x00\x04MQTT\x04\x02\x00\x1e" + b"\x00\x05plain"  # MQTT 3.1.1 CONNECT, client id "plain"
    connect = bytes([0x10, len(body)]) + body
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
        s.sendall(connect)
        try:
            data = s.recv(1024)
        except ConnectionResetError:
            return True
        return data == b"" or data[:1] != b"\x20"  # never a CONNACK (0x20)


def attack(broker: Broker, hostile: str, victims: list[str], ingestor_client_id: str) -> dict[str, object]:
    """Every attempt of the hostile login; returns what the broker answered each (asserted by the caller)."""
    pw = broker.members[hostile]
    got: dict[str, object] = {}
    clients: list[Client] = []

    def client(**kw: Any) -> Client:
        port = kw.pop("port", broker.port)
        made = Client(port, broker.ca, kw.pop("username", hostile), kw.pop("password", pw), **kw)
        clients.append(made)
        return made

    c = client()
    try:
        got["connack"] = c.out.connack
        got["max_packet_size"] = c.out.max_packet_size
        for topic in (
            "$share/ingest/mdh/v1/+/+/samples",
            "$share/ingest/#",
            "#",
            "$SYS/#",
            "mdh/v1/+/+/samples",
            f"mdh/v1/{victims[0]}/#",
            f"mdh/v1/{victims[1]}/{GW}/samples",
            f"mdh/v1/{hostile}/#",
        ):
            got[f"subscribe {topic}"] = c.subscribe(topic)
        for victim in victims:
            forged = make_batch(victim, GW, 3)
            got[f"publish as {victim}"] = c.publish(samples_topic(victim, GW), encode_batch(forged))
            got[f"status as {victim}"] = c.publish(status_topic(victim, GW), b'{"schema":1}')
        got["publish outside mdh/v1"] = c.publish("factory/secret", b"x")
    finally:
        c.close()

    # The ingestor's client id: on the ingestors' listener the hostile login is bound to its own client id, so
    # the broker refuses the connection; on the gateways' listener the id is replaced by the login, so nothing
    # of the ingestor's session is touched (no session present).
    for clean in (True, False):
        taker = client(port=broker.ingest_port, client_id=ingestor_client_id, clean_start=clean)
        got[f"ingestor id on ingest listener clean={clean}"] = taker.out.connack
        taker.close()
        taker = client(client_id=ingestor_client_id, clean_start=clean)
        got[f"ingestor id on gateway listener clean={clean}"] = (taker.out.connack, taker.out.session_present)
        taker.close()
    for victim in victims:
        taker = client(client_id=victim)
        got[f"client id of {victim}"] = (taker.out.connack, taker.out.session_present)
        taker.close()

    r = client()
    got["publish retained"] = (r.publish(samples_topic(hostile, GW), b"retained", retain=True), r.out.disconnect)
    r.close()
    w = client(will_retain=True)
    got["retained last will"] = w.out.connack
    w.close()

    big = client()
    payload = encode_batch(make_batch(hostile, GW, 1)) + os.urandom(8_500_000)
    # Mosquitto closes the connection (paho reports it as 0x80) without a PUBACK: the packet is never read.
    got["oversized v5"] = (big.publish(samples_topic(hostile, GW), payload), big.out.closed.wait(TIMEOUT))
    big.close()
    old = client(protocol=mqtt.MQTTv311)
    got["oversized v3.1.1 closed"] = old.publish(samples_topic(hostile, GW), payload) is None and old.out.closed.wait(
        TIMEOUT
    )
    old.close()

    got["no TLS closed"] = refused_without_tls(broker.port)
    got["no TLS on ingest listener closed"] = refused_without_tls(broker.ingest_port)
    for name, (user, password) in {
        "empty password": (hostile, ""),
        "no password": (hostile, None),
        "no login": (None, None),
        "wrong password": (hostile, pw[:-1]),
    }.items():
        e = client(username=user, password=password)
        got[name] = e.out.connack
        e.close()
    got["messages received"] = [t for c in clients for t in c.out.received]
    return got


def expected(hostile: str, victims: list[str]) -> dict[str, object]:
    """What the broker must answer each attempt of :func:`attack`."""
    return {
        "connack": 0,
        "max_packet_size": 8_400_000,
        **{
            f"subscribe {t}": NOT_AUTHORISED
            for t in (
                "$share/ingest/mdh/v1/+/+/samples",
                "$share/ingest/#",
                "#",
                "$SYS/#",
                "mdh/v1/+/+/samples",
                f"mdh/v1/{victims[0]}/#",
                f"mdh/v1/{victims[1]}/{GW}/samples",
                f"mdh/v1/{hostile}/#",
            )
        },
        **{f"publish as {v}": NOT_AUTHORISED for v in victims},
        **{f"status as {v}": NOT_AUTHORISED for v in victims},
        "publish outside mdh/v1": NOT_AUTHORISED,
        "ingestor id on ingest listener clean=True": NOT_AUTHORISED,
        "ingestor id on ingest listener clean=False": NOT_AUTHORISED,
        "ingestor id on gateway listener clean=True": (0, False),
        "ingestor id on gateway listener clean=False": (0, False),
        **{f"client id of {v}": (0, False) for v in victims},
        "publish retained": (None, RETAIN_NOT_SUPPORTED),
        "retained last will": RETAIN_NOT_SUPPORTED,
        "oversized v5": (None, True),
        "oversized v3.1.1 closed": True,
        "no TLS closed": True,
        "no TLS on ingest listener closed": True,
        "empty password": NOT_AUTHORISED,
        "no password": NOT_AUTHORISED,
        "no login": NOT_AUTHORISED,
        "messages received": [],
        "wrong password": NOT_AUTHORISED,
    }


async def test_a_hostile_member_is_refused_everything_and_honest_members_lose_nothing(
    broker: Broker, tmp_path: Path
) -> None:
    a, b, hostile = sorted(broker.members)
    store = DuckDBStore(tmp_path / "hub.duckdb")
    settings = IngestSettings(
        host="localhost",
        port=broker.ingest_port,
        tls=True,
        ca_file=broker.ca,
        username="ingestor",
        password=broker.ingestor_password,  # type: ignore[arg-type]
        dead_letter_path=tmp_path / "dead.jsonl",
        batch_max_delay_s=0.05,
        rollup_refresh_s=None,
    )
    assert settings.client_id.startswith("mdh-ingestor-") and len(settings.client_id) > len("mdh-ingestor-") + 16
    ingestor = Ingestor(settings, store, lambda: load_register(broker.register))
    honest = [HonestGateway(broker, a), HonestGateway(broker, b)]
    try:
        async with running(ingestor):
            generation = ingestor._link.generation  # bumps on every (re)connect of the ingestor
            for g in honest:
                g.start()
            got = await asyncio.to_thread(attack, broker, hostile, [a, b], settings.client_id)
            for g in honest:
                g.stop.set()
            await asyncio.to_thread(lambda: [g.join(TIMEOUT) for g in honest])
            for g in honest:
                assert g.error is None, g.error
                assert g.client.out.disconnect is None and not g.client.out.closed.is_set(), (
                    f"honest gateway {g.member} was disconnected"
                )
            expected_total = sum(g.acked_samples for g in honest)
            await wait_until(
                lambda: store.count() >= expected_total, what=f"{expected_total} honest samples stored", within=20
            )
            assert ingestor._link.generation == generation, "the ingestor was disconnected during the attacks"
        assert got == expected(hostile, [a, b])

        frame = store.query_series(SeriesQuery())
        per_member = {m: n for m, n in frame.group_by("member").len().iter_rows()}
        assert per_member == {g.member: g.acked_samples for g in honest}, "lost, duplicated or misattributed samples"
        assert frame.select("ts", "member", "asset").n_unique() == frame.height, "duplicated samples"
        assets = {m: set(v) for m, v in frame.group_by("member").agg("asset").iter_rows()}
        assert assets == {g.member: {"a-00000" + g.member[-3:]} for g in honest}, "samples under a wrong member"
        assert ingestor.dead_lettered == 0
    finally:
        for g in honest:
            g.stop.set()
            g.client.close()
        store.close()
