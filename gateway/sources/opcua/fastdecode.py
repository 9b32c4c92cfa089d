"""A fast decoder for the common OPC UA PublishResponse: data changes of scalar values, nothing else.

asyncua decodes every PublishResponse into a graph of dataclasses (response header, notification
message, one ``MonitoredItemNotification``, ``DataValue``, ``Variant`` and ``StatusCode`` per value,
``datetime`` objects for each timestamp) through its generic, reflection-driven deserialisers. At
10,000 changes per second that decoding is most of the gateway's CPU time (``docs/performance.md``).
The gateway needs five numbers per change, so this module reads them straight from the bytes with
precompiled ``struct`` layouts.

It decodes a response only when everything in it is on the hot path:

* the response header has no diagnostics, no string table and no additional header;
* every notification is a ``DataChangeNotification`` (binary encoding ``i=811``) without diagnostics;
* every value is a scalar of Null, Boolean, the integer types, Float, Double or String (UTF-8), with
  status code and source/server timestamps but no picoseconds (asyncua writes picoseconds in a
  different order from the specification's, so they go to asyncua to keep both paths identical);
* the publish results (acknowledgement status codes) carry no diagnostics.

For anything else (events, status changes, arrays, extension objects, DateTime or other value types,
malformed or truncated bytes) :func:`decode_publish` returns ``None`` and the caller decodes the
response with asyncua as before. ``tests/gateway/test_opcua_fastdecode.py`` checks, over generated
responses encoded by asyncua, that the fast path agrees with asyncua's decoder on every field the
gateway uses, and that it declines exactly what it does not handle.

Timestamps are returned the way the gateway turns asyncua's ``datetime`` into nanoseconds
(:func:`gateway.sources.opcua.resolve.to_ns`): truncated to whole microseconds, ``None`` when absent or before 1971.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from ...normalise_batch import Change

__all__ = ["Change", "FastPublish", "decode_publish"]

_PUBLISH_RESPONSE = 829  # PublishResponse_Encoding_DefaultBinary
_DATA_CHANGE = 811  # DataChangeNotification_Encoding_DefaultBinary

_U8 = struct.Struct("<B")
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")
_HEADER = struct.Struct("<qIIB")  # Timestamp, RequestHandle, ServiceResult, ServiceDiagnostics mask
_RESULT_HEAD = struct.Struct("<Ii")  # SubscriptionId, len(AvailableSequenceNumbers)
_MESSAGE_HEAD = struct.Struct("<?Iqi")  # MoreNotifications, SequenceNumber, PublishTime, len(NotificationData)
_ITEM_HEAD = struct.Struct("<IB")  # ClientHandle, DataValue encoding mask

#: Variant type id -> the layout of its scalar value (String is read separately).
_SCALARS: dict[int, struct.Struct] = {
    1: struct.Struct("<?"),
    2: struct.Struct("<b"),
    3: struct.Struct("<B"),
    4: struct.Struct("<h"),
    5: struct.Struct("<H"),
    6: struct.Struct("<i"),
    7: struct.Struct("<I"),
    8: struct.Struct("<q"),
    9: struct.Struct("<Q"),
    10: struct.Struct("<f"),
    11: struct.Struct("<d"),
}
_STRING = 12

_VALUE, _STATUS, _SOURCE_TS, _SERVER_TS, _SOURCE_PICO, _SERVER_PICO = 1, 2, 4, 8, 16, 32
#: The DataValue of nearly every live change: a scalar value and both timestamps, with or without a status code.
#: For these two encoding masks one precompiled layout per scalar type reads the whole DataValue at once.
_HOT = _VALUE | _SOURCE_TS | _SERVER_TS
_HOT_STATUS = _HOT | _STATUS
#: encoding mask -> variant type -> the layout of value, [status code,] source and server timestamp
_HOT_LAYOUTS: dict[int, dict[int, struct.Struct]] = {
    _HOT: {t: struct.Struct(f"<{s.format[-1]}qq") for t, s in _SCALARS.items()},
    _HOT_STATUS: {t: struct.Struct(f"<{s.format[-1]}Iqq") for t, s in _SCALARS.items()},
}

#: (encoding mask << 8 | variant type) -> the layout of a whole hot item: client handle, encoding mask, variant
#: type, then the DataValue as in :data:`_HOT_LAYOUTS`; for a run of such items read in one go (:func:`_run`).
_RUN_LAYOUTS: dict[int, struct.Struct] = {
    (mask << 8) | t: struct.Struct("<IBB" + layout.format[1:])
    for mask, layouts in _HOT_LAYOUTS.items()
    for t, layout in layouts.items()
}
#: A tick whose top byte is below this is at least 0 and before :data:`_MAX_TICK` (0x24 << 56 is in the year 9821).
_RUN_TOP_BYTE = 0x24

#: 100-ns ticks from 1601-01-01 to 1970-01-01, and the first tick of 1971 (earlier counts as missing).
_TICKS_TO_EPOCH = 116_444_736_000_000_000
_EPOCH_US = _TICKS_TO_EPOCH // 10
_FIRST_1971_TICK = _TICKS_TO_EPOCH + 365 * 86_400 * 10_000_000
#: asyncua clamps FILETIMEs after 9999-12-31 to that date; such values leave the fast path.
_MAX_TICK = 2_650_467_743_990_000_000


class _Decline(Exception):
    """The response is not on the fast path; decode it with asyncua."""


@dataclass(frozen=True, slots=True)
class FastPublish:
    """What the gateway needs of a PublishResponse that carries only scalar data changes."""

    subscription_id: int
    sequence_number: int
    more_notifications: bool
    available_sequence_numbers: tuple[int, ...]
    changes: list[Change]
    #: the status of each acknowledgement sent with the request
    results: tuple[int, ...]
    #: how many notifications the message carried (asyncua acknowledges a message only if it carried any)
    notifications: int


def _numeric_nodeid(buf: bytes, pos: int) -> tuple[int, int]:
    """``(identifier, next position)`` of a namespace-0 numeric NodeId; declines anything else."""
    kind = buf[pos]
    if kind == 0:  # TwoByte
        return buf[pos + 1], pos + 2
    if kind == 1:  # FourByte: namespace byte, uint16 identifier
        if buf[pos + 1] != 0:
            raise _Decline
        return buf[pos + 2] | (buf[pos + 3] << 8), pos + 4
    if kind == 2:  # Numeric: uint16 namespace, uint32 identifier
        if buf[pos + 1] or buf[pos + 2]:
            raise _Decline
        return _U32.unpack_from(buf, pos + 3)[0], pos + 7
    raise _Decline


def _ticks_to_ns(ticks: int) -> int | None:
    if ticks < _FIRST_1971_TICK:
        return None
    if ticks >= _MAX_TICK:
        raise _Decline
    return (ticks // 10 - _EPOCH_US) * 1000


def _array_len(buf: bytes, pos: int) -> int:
    n: int = _I32.unpack_from(buf, pos)[0]
    return max(n, 0)


def _run(buf: bytes, pos: int, n_items: int, body_end: int) -> tuple[list[Change], int] | None:
    """The changes of ``n_items`` items at ``pos`` and the position after them, when they are all hot items of
    one layout (one encoding mask, one variant type: a server's usual notification of one kind of variable) with
    timestamps a hot item may have; else ``None`` (the items are read one by one). The whole run is checked
    first (the mask and type bytes of every item, the top bytes of the timestamps), then unpacked at once."""
    if n_items <= 0 or pos + 6 > body_end:
        return None
    mask, vtype = buf[pos + 4], buf[pos + 5]
    layout = _RUN_LAYOUTS.get((mask << 8) | vtype)
    if layout is None:
        return None
    size = layout.size
    end = pos + size * n_items
    if end > body_end or end > len(buf):  # (a truncated response: declined by the item-by-item reading)
        return None
    if buf[pos + 4 : end : size] != bytes((mask,)) * n_items or buf[pos + 5 : end : size] != bytes((vtype,)) * n_items:
        return None
    # the most significant bytes of the source and the server timestamp of every item (the last 16 bytes)
    if max(buf[pos + size - 9 : end : size]) >= _RUN_TOP_BYTE or max(buf[pos + size - 1 : end : size]) >= _RUN_TOP_BYTE:
        return None
    first, epoch = _FIRST_1971_TICK, _EPOCH_US
    rows = layout.iter_unpack(memoryview(buf)[pos:end])
    changes: list[Change]
    if mask == _HOT:
        changes = [
            (
                handle,
                value,
                0,
                None if src < first else (src // 10 - epoch) * 1000,
                None if srv < first else (srv // 10 - epoch) * 1000,
            )
            for handle, _mask, _vtype, value, src, srv in rows
        ]
    else:
        changes = [
            (
                handle,
                value,
                status,
                None if src < first else (src // 10 - epoch) * 1000,
                None if srv < first else (srv // 10 - epoch) * 1000,
            )
            for handle, _mask, _vtype, value, status, src, srv in rows
        ]
    return changes, end


def _decode(buf: bytes) -> FastPublish:
    type_id, pos = _numeric_nodeid(buf, 0)
    if type_id != _PUBLISH_RESPONSE:
        raise _Decline
    # ResponseHeader
    _ts, _handle, _service_result, diag = _HEADER.unpack_from(buf, pos)
    pos += _HEADER.size
    if diag != 0:
        raise _Decline
    strings: int = _I32.unpack_from(buf, pos)[0]
    pos += 4
    if strings > 0:
        raise _Decline
    additional, pos = _numeric_nodeid(buf, pos)
    if additional != 0 or buf[pos] != 0:
        raise _Decline
    pos += 1
    # PublishResult
    subscription_id, n_available = _RESULT_HEAD.unpack_from(buf, pos)
    pos += _RESULT_HEAD.size
    n_available = max(n_available, 0)
    available = struct.unpack_from(f"<{n_available}I", buf, pos)
    pos += 4 * n_available
    more, sequence_number, _publish_time, n_data = _MESSAGE_HEAD.unpack_from(buf, pos)
    pos += _MESSAGE_HEAD.size
    n_data = max(n_data, 0)
    changes: list[Change] = []
    append = changes.append
    scalars = _SCALARS
    hot_layouts = _HOT_LAYOUTS
    value: Any
    for _ in range(n_data):
        ext_type, pos = _numeric_nodeid(buf, pos)
        if ext_type != _DATA_CHANGE or buf[pos] != 1:
            raise _Decline
        body_len: int = _I32.unpack_from(buf, pos + 1)[0]
        pos += 5
        body_end = pos + body_len
        n_items = _array_len(buf, pos)
        pos += 4
        run = _run(buf, pos, n_items, body_end)
        if run is not None:
            changes += run[0]
            pos = run[1]
            n_items = 0
        for _ in range(n_items):
            handle, mask = _ITEM_HEAD.unpack_from(buf, pos)
            pos += 5
            layouts = hot_layouts.get(mask)
            if layouts is not None:  # the hot layout: the same fields as below, in one unpack
                hot = layouts.get(buf[pos])
                if hot is not None:
                    if mask == _HOT:
                        value, src, srv = hot.unpack_from(buf, pos + 1)
                        status = 0
                    else:
                        value, status, src, srv = hot.unpack_from(buf, pos + 1)
                    pos += 1 + hot.size
                    if src >= _MAX_TICK or srv >= _MAX_TICK:
                        raise _Decline
                    append(
                        (
                            handle,
                            value,
                            status,
                            None if src < _FIRST_1971_TICK else (src // 10 - _EPOCH_US) * 1000,
                            None if srv < _FIRST_1971_TICK else (srv // 10 - _EPOCH_US) * 1000,
                        )
                    )
                    continue
            if mask & (_SOURCE_PICO | _SERVER_PICO) or mask > 63:
                raise _Decline
            value = None
            if mask & _VALUE:
                vtype = buf[pos]
                pos += 1
                layout = scalars.get(vtype)
                if layout is not None:
                    value = layout.unpack_from(buf, pos)[0]
                    pos += layout.size
                elif vtype == _STRING:
                    length: int = _I32.unpack_from(buf, pos)[0]
                    pos += 4
                    if length >= 0:
                        if pos + length > body_end:
                            raise _Decline
                        value = buf[pos : pos + length].decode("utf-8", errors="surrogateescape")
                        pos += length
                elif vtype != 0:  # arrays, dimensions, DateTime, ExtensionObject, ...: asyncua's
                    raise _Decline
            status = 0
            if mask & _STATUS:
                status = _U32.unpack_from(buf, pos)[0]
                pos += 4
            source_ns = server_ns = None
            if mask & _SOURCE_TS:
                source_ns = _ticks_to_ns(_I64.unpack_from(buf, pos)[0])
                pos += 8
            if mask & _SERVER_TS:
                server_ns = _ticks_to_ns(_I64.unpack_from(buf, pos)[0])
                pos += 8
            append((handle, value, status, source_ns, server_ns))
        if _I32.unpack_from(buf, pos)[0] > 0:  # DiagnosticInfos
            raise _Decline
        pos += 4
        if pos != body_end:
            raise _Decline
    n_results = _array_len(buf, pos)
    results = struct.unpack_from(f"<{n_results}I", buf, pos + 4)
    pos += 4 + 4 * n_results
    if _I32.unpack_from(buf, pos)[0] > 0:  # DiagnosticInfos of the results
        raise _Decline
    pos += 4
    if pos != len(buf):
        raise _Decline
    return FastPublish(subscription_id, sequence_number, more, available, changes, results, n_data)


def decode_publish(data: bytes | memoryview) -> FastPublish | None:
    """The data changes of a binary PublishResponse (TypeId first), or ``None`` to decode it with asyncua."""
    buf = bytes(data)
    try:
        return _decode(buf)
    except (_Decline, struct.error, IndexError):
        return None
