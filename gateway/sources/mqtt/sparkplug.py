"""Sparkplug B payload decoding (protobuf, read by hand) and per-edge-node alias tables.

Only what a data source needs: payload timestamp and the metrics' name, alias, timestamp, datatype,
null flag and scalar value. Datasets, templates and properties are skipped. A malformed payload
raises :class:`SparkplugError`; it never crashes the source.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from ...errors import SourceError

#: Sparkplug B topic namespace.
NAMESPACE = "spBv1.0"
#: Signed integer datatypes (stored as two's complement in the unsigned fields).
_SIGNED = {1: 8, 2: 16, 3: 32, 4: 64}
DATATYPES = {
    1: "Int8",
    2: "Int16",
    3: "Int32",
    4: "Int64",
    5: "UInt8",
    6: "UInt16",
    7: "UInt32",
    8: "UInt64",
    9: "Float",
    10: "Double",
    11: "Boolean",
    12: "String",
    13: "DateTime",
    14: "Text",
}


class SparkplugError(SourceError):
    """A Sparkplug payload or topic that cannot be read."""

    retryable = False


@dataclass(slots=True)
class Metric:
    name: str | None = None
    alias: int | None = None
    timestamp: int | None = None  # ms
    datatype: int | None = None
    is_null: bool = False
    value: Any = None


@dataclass(slots=True)
class Payload:
    timestamp: int | None = None  # ms
    seq: int | None = None
    metrics: list[Metric] = field(default_factory=list)


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise SparkplugError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise SparkplugError("varint too long")


def _fields(buf: bytes) -> list[tuple[int, int, Any]]:
    """Split a protobuf message into (field number, wire type, raw value)."""
    out: list[tuple[int, int, Any]] = []
    pos = 0
    n = len(buf)
    while pos < n:
        key, pos = _varint(buf, pos)
        num, wt = key >> 3, key & 7
        if num == 0:
            raise SparkplugError("field number 0")
        val: Any
        if wt == 0:
            val, pos = _varint(buf, pos)
        elif wt == 1:
            if pos + 8 > n:
                raise SparkplugError("truncated 64-bit field")
            val, pos = buf[pos : pos + 8], pos + 8
        elif wt == 2:
            length, pos = _varint(buf, pos)
            if pos + length > n:
                raise SparkplugError("truncated length-delimited field")
            val, pos = buf[pos : pos + length], pos + length
        elif wt == 5:
            if pos + 4 > n:
                raise SparkplugError("truncated 32-bit field")
            val, pos = buf[pos : pos + 4], pos + 4
        else:
            raise SparkplugError(f"unsupported wire type {wt}")
        out.append((num, wt, val))
    return out


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def decode_metric(buf: bytes) -> Metric:
    m = Metric()
    for num, wt, val in _fields(buf):
        if num == 1 and wt == 2:
            m.name = bytes(val).decode("utf-8", errors="replace")
        elif num == 2 and wt == 0:
            m.alias = val
        elif num == 3 and wt == 0:
            m.timestamp = val
        elif num == 4 and wt == 0:
            m.datatype = val
        elif num == 7 and wt == 0:
            m.is_null = bool(val)
        elif num in (10, 11) and wt == 0:
            m.value = val
        elif num == 12 and wt == 5:
            m.value = struct.unpack("<f", val)[0]
        elif num == 13 and wt == 1:
            m.value = struct.unpack("<d", val)[0]
        elif num == 14 and wt == 0:
            m.value = bool(val)
        elif num == 15 and wt == 2:
            m.value = bytes(val).decode("utf-8", errors="replace")
    if isinstance(m.value, int) and not isinstance(m.value, bool) and m.datatype in _SIGNED:
        m.value = _signed(m.value, _SIGNED[m.datatype])
    if m.is_null:
        m.value = None
    return m


def decode_payload(buf: bytes) -> Payload:
    p = Payload()
    for num, wt, val in _fields(buf):
        if num == 1 and wt == 0:
            p.timestamp = val
        elif num == 2 and wt == 2:
            p.metrics.append(decode_metric(bytes(val)))
        elif num == 3 and wt == 0:
            p.seq = val
    return p


def parse_topic(topic: str) -> tuple[str, str, str, str | None]:
    """``spBv1.0/{group}/{type}/{edge node}[/{device}]`` -> (group, type, edge node, device)."""
    parts = topic.split("/")
    if len(parts) not in (4, 5) or parts[0] != NAMESPACE:
        raise SparkplugError("not a Sparkplug B topic")
    return parts[1], parts[2], parts[3], parts[4] if len(parts) == 5 else None


class AliasTable:
    """Alias -> metric name per (group, edge node), learnt from NBIRTH and DBIRTH."""

    def __init__(self) -> None:
        self._names: dict[tuple[str, str], dict[int, str]] = {}

    def learn(self, group: str, node: str, metrics: list[Metric], *, reset: bool) -> None:
        table = self._names.setdefault((group, node), {})
        if reset:
            table.clear()
        for m in metrics:
            if m.alias is not None and m.name is not None:
                table[m.alias] = m.name

    def name(self, group: str, node: str, m: Metric) -> str | None:
        if m.name is not None:
            return m.name
        if m.alias is None:
            return None
        return self._names.get((group, node), {}).get(m.alias)
