"""A minimal Sparkplug B protobuf *encoder*: the demo's MQTT factories speak it, the gateway tests use it.

Written independently of the gateway's decoder (:mod:`gateway.sources.mqtt.sparkplug`), so that each checks the other.
A metric is ``(name, alias, datatype, value)`` or ``(name, alias, datatype, value, timestamp_ms)``; the
demo sends names (no aliases, so no birth certificates are needed) and a timestamp per metric, which is how
a Sparkplug edge node sends buffered or historical values.
"""

from __future__ import annotations

import struct
from typing import Any


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(num: int, wt: int) -> bytes:
    return _varint(num << 3 | wt)


def _len(num: int, data: bytes) -> bytes:
    return _key(num, 2) + _varint(len(data)) + data


def encode_metric(name: str | None, alias: int | None, datatype: int, value: Any, ts_ms: int | None = None) -> bytes:
    out = b""
    if name is not None:
        out += _len(1, name.encode())
    if alias is not None:
        out += _key(2, 0) + _varint(alias)
    if ts_ms is not None:
        out += _key(3, 0) + _varint(ts_ms)
    out += _key(4, 0) + _varint(datatype)
    if datatype in (1, 2, 3, 5, 6, 7):
        out += _key(10, 0) + _varint(value & 0xFFFFFFFF)
    elif datatype in (4, 8, 13):
        out += _key(11, 0) + _varint(value)
    elif datatype == 9:
        out += _key(12, 5) + struct.pack("<f", value)
    elif datatype == 10:
        out += _key(13, 1) + struct.pack("<d", value)
    elif datatype == 11:
        out += _key(14, 0) + _varint(int(value))
    else:
        out += _len(15, str(value).encode())
    return out


Metric = tuple[str | None, int | None, int, Any] | tuple[str | None, int | None, int, Any, int | None]


def encode_payload(*, timestamp: int, metrics: list[Metric], seq: int = 0) -> bytes:
    out = _key(1, 0) + _varint(timestamp)
    for m in metrics:
        name, alias, datatype, value = m[:4]
        ts_ms = m[4] if len(m) > 4 else None
        out += _len(2, encode_metric(name, alias, datatype, value, ts_ms))
    return out + _key(3, 0) + _varint(seq)


__all__ = ["Metric", "encode_metric", "encode_payload"]
