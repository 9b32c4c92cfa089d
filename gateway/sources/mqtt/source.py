"""MQTT source: a factory's local broker (plain numbers, JSON, Sparkplug B).

Topic filters map topic levels to asset and local signal. The session is persistent (fixed client
id, clean session off), filters are subscribed again on every connect, and a message is
acknowledged (paho manual ack) only after its samples are in the disk buffer: a crash before that
makes the broker deliver it again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import datetime
from typing import Any

from core.mqtt import Message, MqttClient, topic_matches

from ...normalise import Normaliser, Reading
from ..base import Sink
from ..problems import SourceProblems
from .config import MqttSource, MqttTopic
from .sparkplug import AliasTable, SparkplugError, decode_payload, parse_topic

log = logging.getLogger(__name__)

_TS_FACTOR = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}


def lookup(doc: Any, path: str) -> Any:
    """Value at a dotted path (``data.values.0.v``) in decoded JSON, or ``None``."""
    cur = doc
    for part in path.split("."):
        if isinstance(cur, dict):
            cur = cur.get(part)
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return None
    return cur


def parse_ts(raw: Any, unit: str) -> int | None:
    if raw is None or isinstance(raw, bool):
        return None
    try:
        if unit == "iso":
            return int(datetime.fromisoformat(str(raw)).timestamp() * 1e6) * 1000
        return int(float(raw) * _TS_FACTOR[unit]) if isinstance(raw, float) else int(raw) * _TS_FACTOR[unit]
    except (ValueError, TypeError, OverflowError):
        return None


def parse_number(payload: bytes) -> Any:
    text = payload.decode("utf-8", errors="replace").strip()
    if text in ("true", "false"):
        return text == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text  # the normaliser maps state codes or drops it as a wrong type


class MqttSourceRunner:
    kind = "mqtt"

    def __init__(self, cfg: MqttSource, normaliser: Normaliser, sink: Sink, *, client_id: str) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.normaliser = normaliser
        self._sink = sink
        self.client_id = cfg.client_id or client_id
        self.readings_in = 0
        self.messages_in = 0
        self.malformed = 0
        self.problems = SourceProblems(f"mqtt {cfg.name}", log)
        normaliser.on_future = self.problems.future
        self.aliases = AliasTable()
        self.session: MqttClient | None = None
        self._classified: set[str] = set()
        for t in cfg.topics:
            if t.asset is not None and t.asset_class is not None:
                normaliser.classify(t.asset, t.asset_class)

    @property
    def connected(self) -> bool:
        return self.session is not None and self.session.connected.is_set()

    @property
    def subscribed(self) -> bool:
        """The broker granted the source's filters on the current connection."""
        return self.session is not None and self.session.subscribed.is_set()

    @property
    def reconnects(self) -> int:
        return self.session.reconnects if self.session is not None else 0

    @property
    def last_error(self) -> str | None:
        return self.session.last_error if self.session is not None else None

    def readings(self, topic: str, payload: bytes, retained: bool, recv_ns: int) -> list[Reading]:
        """Turn one message into readings (clear identifiers); empty if no filter matches."""
        for t in self.cfg.topics:
            if topic_matches(t.filter, topic):
                return self._readings(t, topic, payload, retained, recv_ns)
        return []

    def _asset_signal(self, t: MqttTopic, levels: list[str]) -> tuple[str, str] | None:
        try:
            asset = t.asset if t.asset is not None else levels[t.asset_level or 0]
            signal = t.signal if t.signal is not None else levels[t.signal_level or 0]
        except IndexError:
            return None
        if t.asset_class is not None and asset not in self._classified:
            self.normaliser.classify(asset, t.asset_class)
            self._classified.add(asset)
        return asset, signal

    def _readings(self, t: MqttTopic, topic: str, payload: bytes, retained: bool, recv_ns: int) -> list[Reading]:
        if t.format == "sparkplug":
            return self._sparkplug(t, topic, payload, recv_ns)
        mapped = self._asset_signal(t, topic.split("/"))
        if mapped is None:
            return []
        asset, signal = mapped
        if t.format == "number":
            if retained:
                return []  # a retained plain number has no timestamp: its age is unknown
            return [Reading(asset, signal, parse_number(payload), recv_ns)]
        try:
            doc = json.loads(payload)
        except ValueError as exc:
            self._malformed(t, f"not JSON ({type(exc).__name__} at byte {getattr(exc, 'pos', '?')})")
            return []
        except RecursionError:
            self._malformed(t, "JSON nested too deeply to read")
            return []
        ts = parse_ts(lookup(doc, t.ts_path), t.ts_unit) if t.ts_path else None
        if ts is None and retained:
            return []
        value = lookup(doc, t.value_path)
        if isinstance(value, (dict, list)):
            value = None
        return [Reading(asset, signal, value, recv_ns, ts)]

    def _malformed(self, t: MqttTopic, why: str) -> None:
        """Counted, acknowledged (a message that cannot be read will not become readable when delivered again)."""
        self.malformed += 1
        self.problems.event("malformed", detail=f"filter {t.filter!r}: {why}")

    def _sparkplug(self, t: MqttTopic, topic: str, payload: bytes, recv_ns: int) -> list[Reading]:
        try:
            group, mtype, node, device = parse_topic(topic)
            if mtype not in ("NBIRTH", "DBIRTH", "NDATA", "DDATA"):
                return []
            p = decode_payload(payload)
        except SparkplugError as exc:
            self._malformed(t, f"not a Sparkplug B payload ({exc})")
            return []
        if mtype.endswith("BIRTH"):
            self.aliases.learn(group, node, p.metrics, reset=mtype == "NBIRTH")
        asset = f"{node}/{device}" if device else node
        if t.asset_class is not None and asset not in self._classified:
            self.normaliser.classify(asset, t.asset_class)
            self._classified.add(asset)
        out: list[Reading] = []
        for m in p.metrics:
            name = self.aliases.name(group, node, m)
            if name is None or name.startswith("bdSeq") or name.startswith("Node Control/"):
                continue
            ms = m.timestamp if m.timestamp is not None else p.timestamp
            out.append(Reading(asset, name, m.value, recv_ns, ms * 10**6 if ms is not None else None))
        return out

    # -- I/O -----------------------------------------------------------------------------------------

    def _on_message(self, msg: Message) -> None:
        self.messages_in += 1
        try:
            readings = self.readings(msg.topic, msg.payload, msg.retain, time.time_ns())
        except Exception as exc:  # a payload nobody foresaw: counted and acknowledged below, never a stuck message
            self.malformed += 1
            self.problems.event("malformed", detail=f"topic {msg.topic[:80]!r}: unreadable ({type(exc).__name__})")
            readings = []
        self.readings_in += len(readings)
        samples = [s for s in map(self.normaliser.normalise, readings) if not isinstance(s, str)]
        session = self.session

        def ack() -> None:
            if session is not None:
                session.ack(msg)  # ignored if the connection it came on is gone: the broker delivers it again

        self._sink(samples, ack)

    async def run(self) -> None:
        self.session = MqttClient(
            self.cfg.endpoint(self.client_id),
            subscriptions=[(t.filter, 1) for t in self.cfg.topics],
            on_message=self._on_message,
        )
        async with self.session:
            await asyncio.Event().wait()
