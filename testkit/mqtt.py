"""MQTT helpers for tests and benchmarks: a gateway-like publisher, batches, an in-test register, ingest settings."""

from __future__ import annotations

import itertools
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from core.register import Member, Register
from storage import IngestSettings
from testkit.waiting import wait_until
from wire import SCHEMA_VERSION, Batch, Sample, Status, encode_batch, encode_status, samples_topic, status_topic

_ts = itertools.count(1_767_571_200 * 10**9, 10**9)


def register(*members: str, inactive: tuple[str, ...] = ()) -> Register:
    return Register(
        member=[Member(pseudonym=m, group=f"grp-{m}") for m in members]
        + [Member(pseudonym=m, group=f"grp-{m}", active=False) for m in inactive]
    )


def make_batch(member: str, gateway: str, n: int, *, asset: str = "a-0000beef") -> Batch:
    samples = [
        Sample(ts=next(_ts), asset=asset, asset_class="press", signal="power_kw", value=float(i)) for i in range(n)
    ]
    return Batch(
        schema=SCHEMA_VERSION,
        batch_id=uuid.uuid4().hex,
        member=member,
        gateway=gateway,
        key_id="k1",
        sent_ns=time.time_ns(),
        samples=samples,
    )


def ingest_settings(port: int, tmp: Path, **extra: object) -> IngestSettings:
    return IngestSettings.model_validate(
        {
            "host": "127.0.0.1",
            "port": port,
            "tls": False,
            "username": None,
            "client_id": f"ing-{uuid.uuid4().hex[:8]}",
            "dead_letter_path": tmp / "dead.jsonl",
            "batch_max_delay_s": 0.05,
            "retry_initial_s": 0.2,
            "retry_max_s": 1.0,
            "rollup_refresh_s": None,
            **extra,
        }
    )


class Publisher:
    """A QoS-1 MQTT v5 publisher, standing in for a gateway (loopback, anonymous unless credentials given)."""

    def __init__(self, port: int, *, username: str | None = None, password: str | None = None) -> None:
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"pub-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        if username:
            self.client.username_pw_set(username, password)
        self.client.max_inflight_messages_set(1000)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes, *, wait: bool = True, retain: bool = False) -> mqtt.MQTTMessageInfo:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if wait:
            info.wait_for_publish(10)
        return info

    def batch(self, batch: Batch) -> None:
        self.publish(samples_topic(batch.member, batch.gateway), encode_batch(batch))

    def status(self, member: str, gateway: str, state: str) -> None:
        payload = encode_status(Status(schema=1, member=member, gateway=gateway, state=state, ts_ns=time.time_ns()))
        self.publish(status_topic(member, gateway), payload)  # like a gateway: never retained

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


__all__ = ["Publisher", "ingest_settings", "make_batch", "register", "wait_until"]
