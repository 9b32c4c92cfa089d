"""The whole chain against real servers: asyncua factory → gateway → Mosquitto → ingestor → store → API.

Runs once on the embedded DuckDB store and once on a real InfluxDB 1.x. A raw
subscriber on ``#`` records every byte that reaches the broker; the test proves
that none of it carries a clear identifier of the factory, its machines, its
OPC UA nodes or its workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import paho.mqtt.client as mqtt
import polars as pl
import pytest
import zstandard

from api.tokens import TokenStore
from core.configfile import settings_from_dict
from core.register import Member, Register, dump_register
from gateway.pseudonymise import generate_key
from gateway.runner import Gateway
from metalldaten.demo.machines import factory_machines
from metalldaten.demo.opcua_factory import OpcUaFactory
from metalldaten.demo.replay import FactoryMachines
from metalldaten.demo.scenario import FACTORIES, MODEL_CLASSES, PRIVATE_SIGNALS, SHARED_SIGNALS, gateway_settings
from metalldaten.hub import HubSettings, running_hub
from storage import SeriesQuery
from testkit.mqtt import wait_until
from testkit.servers import InfluxServer, MosquittoServer, free_port
from wire import ASSET_CLASSES, MACHINE_STATES, SIGNALS
from wire.codec import MAGIC
from wire.model import KEY_ID_RE, MEMBER_RE, PSEUDONYM_RE

pytestmark = [pytest.mark.integration]


class Tap:
    """A raw MQTT subscriber on ``#`` keeping every (topic, payload) it receives."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="tap-" + secrets.token_hex(3))
        self._client.on_connect = lambda c, u, f, rc, p: c.subscribe("#", qos=1)
        self._client.on_subscribe = lambda *a: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()
        assert self._subscribed.wait(10), "tap could not subscribe"

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def tap(mosquitto: MosquittoServer) -> Iterator[Tap]:
    t = Tap(mosquitto.port)
    yield t
    t.close()


def _store_config(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    if kind == "duckdb":
        return {"kind": "duckdb", "path": str(tmp_path / "hub.duckdb")}
    influx: InfluxServer = request.getfixturevalue("influxdb")
    return {
        "kind": "influxdb1",
        "url": influx.url,
        "database": "mdh_pipeline",
        "username": influx.username,
        "password": influx.password,
    }


@contextlib.asynccontextmanager
async def _factory_and_gateway(
    tmp_path: Path, member: str, broker_port: int
) -> AsyncIterator[tuple[OpcUaFactory, Gateway]]:
    f = FACTORIES[0]
    machines = factory_machines(1, list(f.classes), seed=3)
    port = free_port()
    namespace = "urn:test:factory1:line-controller"
    gw_settings = gateway_settings(
        workdir=tmp_path,
        index=1,
        factory=f,
        member=member,
        machines=machines,
        port=port,
        namespace=namespace,
        broker_port=broker_port,
    )
    gw_settings.identity.key_file.parent.mkdir(parents=True, exist_ok=True)
    generate_key(gw_settings.identity.key_file)
    live = FactoryMachines(machines, seed=11, pattern=f.work, history=None)  # live values only
    factory = OpcUaFactory(name=f.name, port=port, namespace=namespace, machines=live, tick_s=0.5)
    async with factory.running(), Gateway(gw_settings) as gw:
        task = asyncio.create_task(gw.run())
        feed = asyncio.create_task(factory.run(lambda: True, lambda: 0))
        try:
            yield factory, gw
        finally:
            feed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feed
            gw.stop()
            await asyncio.wait_for(task, 30)


def _strings(obj: Any) -> Iterator[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _strings(v)


_ALLOWED_WORDS = set(SIGNALS) | set(ASSET_CLASSES) | set(MACHINE_STATES) | {"online", "offline"}


def _check_no_clear_identifier(messages: list[tuple[str, bytes]], clear: list[str]) -> int:
    """Fail if any clear identifier is in any topic or payload; return how many sample batches were seen."""
    batches = 0
    needles = [c.encode() for c in clear]
    for topic, payload in messages:
        raw = payload
        if payload.startswith(MAGIC):
            raw = zstandard.ZstdDecompressor().decompress(payload[len(MAGIC) :])
            batches += 1
        for blob in (topic.encode(), payload, raw):
            for needle in needles:
                assert needle not in blob, f"clear identifier {needle!r} left the factory on {topic}"
        decoded = msgspec.msgpack.decode(raw) if payload.startswith(MAGIC) else msgspec.json.decode(raw)
        for s in _strings(decoded):
            # Every string on the wire is a pseudonym, a catalogue word, an id or a key id: nothing else.
            assert (
                s in _ALLOWED_WORDS
                or PSEUDONYM_RE.match(s)
                or MEMBER_RE.match(s)
                or re.fullmatch(r"[0-9a-zA-Z_-]{8,64}", s)
                or KEY_ID_RE.match(s)
            ), f"unexpected string {s!r} on {topic}"
            for needle in clear:
                assert needle not in s
    return batches


@pytest.mark.parametrize("store_kind", ["duckdb", "influxdb1"])
async def test_factory_to_api_through_real_servers(
    store_kind: str, tmp_path: Path, mosquitto: MosquittoServer, tap: Tap, request: pytest.FixtureRequest
) -> None:
    member, other = "m-" + secrets.token_hex(3), "m-" + secrets.token_hex(3)
    hub_dir = tmp_path / "hub"
    hub_dir.mkdir()
    register = Register(member=[Member(pseudonym=member, group="grp-a"), Member(pseudonym=other, group="grp-b")])
    (hub_dir / "members.toml").write_text(dump_register(register), encoding="utf-8")
    api_port = free_port()
    hub = settings_from_dict(
        HubSettings,
        {
            "register_file": str(hub_dir / "members.toml"),
            "store": _store_config(store_kind, tmp_path, request),
            "metrics_listen": "127.0.0.1:0",
            "ingest": {
                "host": "127.0.0.1",
                "port": mosquitto.port,
                "tls": False,
                "username": None,
                "protocol": "5",
                "shared_group": "ingest",
                "client_id": "ingestor-test",
                "dead_letter_path": str(hub_dir / "dead.jsonl"),
            },
            "api": {
                "host": "127.0.0.1",
                "port": api_port,
                "tokens_file": str(hub_dir / "tokens.json"),
                "audit_log": str(hub_dir / "audit.log"),
                "dp": {"budget_file": str(hub_dir / "dp.json")},
                "switch_interval_ms": 1.5,
            },
        },
    )
    tokens = TokenStore(hub.api.tokens_file)
    analyst, _ = tokens.create("analyst")
    own, _ = tokens.create("member", member=member)
    foreign, _ = tokens.create("member", member=other)

    interpreter_default = sys.getswitchinterval()
    request.addfinalizer(lambda: sys.setswitchinterval(interpreter_default))
    async with running_hub(hub) as running:
        await running.wait_started()
        # the API role sets the process's thread switch interval from [api] switch_interval_ms
        assert sys.getswitchinterval() == pytest.approx(0.0015)
        ingestor = running.ingestor
        assert ingestor is not None
        async with _factory_and_gateway(tmp_path, member, mosquitto.port) as (factory, gw):

            def every_machine_stored() -> bool:
                got = running.store.query_series(SeriesQuery(members=(member,)))
                signals = set(got["signal"].unique())
                return (
                    got["asset"].n_unique() == len(factory.machines.live)
                    and {"power_kw", "energy_kwh", "state"} <= signals
                )

            await wait_until(every_machine_stored, within=60, what="samples of every machine and signal stored")
        # The gateway has stopped; whatever the broker acknowledged to it is stored once the ingestor took it.
        acked = gw.uplink.samples_acked
        await wait_until(lambda: ingestor.stored_samples >= acked, within=30, what="every acknowledged sample stored")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}", timeout=30) as client:
            as_analyst = await client.get(
                "/v1/series", params={"format": "csv", "member": member}, headers={"Authorization": f"Bearer {analyst}"}
            )
            as_owner = await client.get(
                "/v1/series", params={"format": "csv"}, headers={"Authorization": f"Bearer {own}"}
            )
            as_other = await client.get(
                "/v1/series", params={"format": "csv", "member": member}, headers={"Authorization": f"Bearer {foreign}"}
            )
            anonymous = await client.get("/v1/series")

    assert as_analyst.status_code == 200, as_analyst.text
    rows = pl.read_csv(as_analyst.content)
    assert rows.height > 0
    assert set(rows["member"].unique()) == {member}
    # Six allow-listed signals of four machines; nothing else is shared.
    assert set(rows["signal"].unique()) <= {p["canonical"] for p in SHARED_SIGNALS.values()}
    assert {"power_kw", "energy_kwh", "state"} <= set(rows["signal"].unique())
    assert rows["asset"].n_unique() == len(factory.machines.live)
    assert set(rows["asset_class"].unique()) == {MODEL_CLASSES[m.spec.model] for m in factory.machines.live}
    assert as_owner.status_code == 200 and pl.read_csv(as_owner.content).height == rows.height
    assert as_other.status_code == 403
    assert anonymous.status_code == 401

    # Privacy: every byte that reached the broker.
    clear = [FACTORIES[0].name, f"{FACTORIES[0].name} / gateway 1", "urn:test:factory1", *PRIVATE_SIGNALS]
    for m in factory.machines.live:
        clear += [m.spec.serial, m.spec.model, m.operator_badge]
        clear += [f"{m.spec.serial}.{var}" for var in SHARED_SIGNALS]
    clear += list(SHARED_SIGNALS)  # local signal names stay local too
    batches = _check_no_clear_identifier(tap.messages, clear)
    assert batches > 0
