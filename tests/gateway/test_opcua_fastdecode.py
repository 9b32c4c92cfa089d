"""The fast PublishResponse decoder against asyncua's own decoder, over responses encoded by asyncua.

Every generated response is encoded with asyncua's ``struct_to_binary`` and decoded both ways. Where
the fast path takes it, every field the gateway reads must equal asyncua's (values bit for bit, status
codes, both timestamps as the gateway converts them, handles, sequence numbers, acknowledgement
results). Whether it takes it is predicted from the generated response, so a fast path that declined
too much (or took an array or an event) fails as surely as one that decoded a value wrongly.
"""

from __future__ import annotations

import itertools
import math
import struct
from datetime import UTC, datetime
from typing import Any

import pytest
from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import struct_from_binary, struct_to_binary
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.sources.opcua import fastdecode
from gateway.sources.opcua.fastdecode import decode_publish
from gateway.sources.opcua.fastpath import change_of
from gateway.sources.opcua.resolve import to_ns

VT = ua.VariantType
_INT_RANGES = {
    VT.SByte: (-(2**7), 2**7 - 1),
    VT.Byte: (0, 2**8 - 1),
    VT.Int16: (-(2**15), 2**15 - 1),
    VT.UInt16: (0, 2**16 - 1),
    VT.Int32: (-(2**31), 2**31 - 1),
    VT.UInt32: (0, 2**32 - 1),
    VT.Int64: (-(2**63), 2**63 - 1),
    VT.UInt64: (0, 2**64 - 1),
}
_text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=40)
_timestamps = st.one_of(
    st.none(),
    st.datetimes(min_value=datetime(1601, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)),
    st.datetimes(min_value=datetime(1969, 12, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
)


def _scalar(vtype: VT) -> st.SearchStrategy[Any]:
    if vtype in _INT_RANGES:
        lo, hi = _INT_RANGES[vtype]
        return st.integers(lo, hi)
    if vtype is VT.Boolean:
        return st.booleans()
    if vtype is VT.Float:
        return st.floats(width=32)
    if vtype is VT.Double:
        return st.floats()
    if vtype is VT.String:
        return st.one_of(st.none(), _text)
    if vtype is VT.DateTime:
        return st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
    raise AssertionError(vtype)


_FAST_TYPES = [VT.Boolean, VT.Double, VT.Float, VT.String, *_INT_RANGES]


@st.composite
def variants(draw: st.DrawFn, hot: bool) -> tuple[ua.Variant, bool]:
    """A Variant (only hot-path kinds if ``hot``) and whether the fast path is meant to decode it."""
    kinds = ["scalar", "scalar", "scalar", "null"] + ([] if hot else ["array", "datetime", "extension"])
    kind = draw(st.sampled_from(kinds))
    if kind == "null":
        return ua.Variant(None), True
    if kind == "scalar":
        vtype = draw(st.sampled_from(_FAST_TYPES))
        return ua.Variant(draw(_scalar(vtype)), vtype), True
    if kind == "array":
        vtype = draw(st.sampled_from(_FAST_TYPES))
        return ua.Variant(draw(st.lists(_scalar(vtype), max_size=4)), vtype, is_array=True), False
    if kind == "datetime":
        return ua.Variant(draw(_scalar(VT.DateTime)), VT.DateTime), False
    rng = ua.Range(Low=draw(st.floats(allow_nan=False)), High=draw(st.floats(allow_nan=False)))
    return ua.Variant(rng, VT.ExtensionObject), False


@st.composite
def data_values(draw: st.DrawFn, hot: bool) -> tuple[ua.DataValue, bool]:
    variant, fast = draw(variants(hot))
    dv = ua.DataValue(variant)
    if draw(st.booleans()):
        dv.StatusCode = ua.StatusCode(draw(st.sampled_from([0, 0x40000000, 0x80000000, 0x808A0000, 0x00A00000])))
    dv.SourceTimestamp = draw(_timestamps)
    dv.ServerTimestamp = draw(_timestamps)
    if not hot and draw(st.integers(0, 3)) == 0:
        dv.SourcePicoseconds = draw(st.integers(1, 9999))
        fast = False
    if not hot and draw(st.integers(0, 3)) == 0:
        dv.ServerPicoseconds = draw(st.integers(1, 9999))
        fast = False
    return dv, fast


@st.composite
def notifications(draw: st.DrawFn, hot: bool) -> tuple[Any, bool]:
    kind = draw(st.sampled_from(["data"] if hot else ["data", "data", "status", "event"]))
    if kind == "status":
        return ua.StatusChangeNotification(Status=ua.StatusCode(0x80AB0000)), False
    if kind == "event":
        field = ua.EventFieldList(ClientHandle=7, EventFields=[ua.Variant(draw(_text), VT.String)])
        return ua.EventNotificationList(Events=[field]), False
    items = []
    fast = True
    for dv, item_fast in draw(st.lists(data_values(hot), max_size=8)):
        items.append(ua.MonitoredItemNotification(ClientHandle=draw(st.integers(0, 2**32 - 1)), Value=dv))
        fast = fast and item_fast
    return ua.DataChangeNotification(MonitoredItems=items), fast


@st.composite
def responses(draw: st.DrawFn) -> tuple[bytes, ua.PublishResponse, bool]:
    # Half the responses hold only what the fast path takes, so that every field is compared often;
    # the other half mix in what it must decline (each of which alone sends the response to asyncua).
    hot = draw(st.booleans())
    pairs = draw(st.lists(notifications(hot), max_size=3))
    msg = ua.NotificationMessage(
        SequenceNumber=draw(st.integers(0, 2**32 - 1)),
        PublishTime=datetime(2026, 12, 1, 12, 0, tzinfo=UTC),
        NotificationData=[n for n, _ in pairs],
    )
    result = ua.PublishResult(
        SubscriptionId=draw(st.integers(0, 2**32 - 1)),
        AvailableSequenceNumbers=draw(st.lists(st.integers(0, 2**32 - 1), max_size=4)),
        MoreNotifications=draw(st.booleans()),
        NotificationMessage=msg,
        Results=[ua.StatusCode(c) for c in draw(st.lists(st.sampled_from([0, 0x80780000]), max_size=3))],
    )
    response = ua.PublishResponse(Parameters=result)
    fast = all(f for _, f in pairs)
    if not hot and draw(st.integers(0, 5)) == 0:
        response.ResponseHeader.StringTable = ["a diagnostic string"]
        fast = False
    return struct_to_binary(response), response, fast


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack("<d", a) == struct.pack("<d", b) or (math.isnan(a) and math.isnan(b))
    return type(a) is type(b) and a == b


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(responses())
def test_fast_path_agrees_with_asyncua(case: tuple[bytes, ua.PublishResponse, bool]) -> None:
    data, _sent, fast_expected = case
    reference: ua.PublishResponse = struct_from_binary(ua.PublishResponse, Buffer(data))
    fast = decode_publish(data)
    assert (fast is not None) == fast_expected
    if fast is None:
        return
    p = reference.Parameters
    assert fast.subscription_id == p.SubscriptionId
    assert fast.sequence_number == p.NotificationMessage.SequenceNumber
    assert fast.more_notifications is p.MoreNotifications
    assert list(fast.available_sequence_numbers) == list(p.AvailableSequenceNumbers)
    assert list(fast.results) == [r.value for r in p.Results]
    assert fast.notifications == len(p.NotificationMessage.NotificationData)
    expected = [
        (
            item.ClientHandle,
            item.Value.Value.Value if item.Value.Value is not None else None,
            item.Value.StatusCode.value if item.Value.StatusCode is not None else 0,
            to_ns(item.Value.SourceTimestamp),
            to_ns(item.Value.ServerTimestamp),
        )
        for n in p.NotificationMessage.NotificationData
        for item in n.MonitoredItems
    ]
    assert len(fast.changes) == len(expected)
    for got, want in zip(fast.changes, expected, strict=True):
        assert got[0] == want[0] and got[2:] == want[2:]
        assert _same(got[1], want[1]), (got, want)


@given(responses(), st.data())
@settings(max_examples=150, deadline=None)
def test_truncated_or_extended_bytes_are_declined(
    case: tuple[bytes, ua.PublishResponse, bool], data: st.DataObject
) -> None:
    raw = case[0]
    cut = data.draw(st.integers(0, len(raw) - 1))
    assert decode_publish(raw[:cut]) is None
    assert decode_publish(raw + b"\x00") is None


def test_a_typical_response_takes_the_fast_path() -> None:
    """A concrete case a reader can follow: 3 doubles with status and timestamps, one ack result."""
    ts = datetime(2026, 12, 1, 8, 30, 0, 123456, tzinfo=UTC)
    items = [
        ua.MonitoredItemNotification(
            ClientHandle=h, Value=ua.DataValue(ua.Variant(h * 1.5, VT.Double), SourceTimestamp=ts, ServerTimestamp=ts)
        )
        for h in (1, 2, 3)
    ]
    msg = ua.NotificationMessage(SequenceNumber=42, NotificationData=[ua.DataChangeNotification(MonitoredItems=items)])
    response = ua.PublishResponse(
        Parameters=ua.PublishResult(SubscriptionId=9, NotificationMessage=msg, Results=[ua.StatusCode(0)])
    )
    fast = decode_publish(struct_to_binary(response))
    assert fast is not None
    ns = to_ns(ts)
    assert fast.changes == [(1, 1.5, 0, ns, ns), (2, 3.0, 0, ns, ns), (3, 4.5, 0, ns, ns)]
    assert (fast.subscription_id, fast.sequence_number, fast.results) == (9, 42, (0,))


def test_a_typical_response_is_read_as_one_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Items of one layout with present timestamps take the one-unpack run, not the item-by-item reading (which
    would give the same changes, only slower: the agreement tests alone cannot tell)."""
    ts = datetime(2026, 12, 1, 8, 30, 0, 123456, tzinfo=UTC)
    items = [
        ua.MonitoredItemNotification(
            ClientHandle=h, Value=ua.DataValue(ua.Variant(h * 1.5, VT.Double), SourceTimestamp=ts, ServerTimestamp=ts)
        )
        for h in range(1, 101)
    ]
    msg = ua.NotificationMessage(SequenceNumber=1, NotificationData=[ua.DataChangeNotification(MonitoredItems=items)])
    response = ua.PublishResponse(Parameters=ua.PublishResult(SubscriptionId=9, NotificationMessage=msg))
    runs: list[int] = []
    real = fastdecode._run

    def counting(*args: Any) -> Any:
        out = real(*args)
        runs.append(0 if out is None else len(out[0]))
        return out

    monkeypatch.setattr(fastdecode, "_run", counting)
    fast = decode_publish(struct_to_binary(response))
    assert fast is not None and len(fast.changes) == 100
    assert runs == [100], "the run declined a typical response"


_HOT_VALUES = [
    (VT.Boolean, True),
    (VT.SByte, -(2**7)),
    (VT.Byte, 2**8 - 1),
    (VT.Int16, -(2**15)),
    (VT.UInt16, 2**16 - 1),
    (VT.Int32, -(2**31)),
    (VT.UInt32, 2**32 - 1),
    (VT.Int64, -(2**63)),
    (VT.UInt64, 2**64 - 1),
    (VT.Float, -1.5),
    (VT.Double, 1e300),
    (VT.Double, -0.0),
]
_HOT_TIMES = [
    datetime(1970, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),  # before 1971: absent
    datetime(1971, 1, 1, tzinfo=UTC),
    datetime(2026, 12, 2, 5, 0, 0, 123457, tzinfo=UTC),
    datetime(9999, 12, 30, 23, 59, 59, tzinfo=UTC),
]


def test_the_one_unpack_layout_of_a_live_change_agrees_with_asyncua() -> None:
    """A scalar with both timestamps, with and without a status code (the DataValue of nearly every live change,
    read in one unpack): every scalar type, timestamps at the edges, against asyncua's decoder."""
    items = [
        ua.MonitoredItemNotification(
            ClientHandle=i,
            Value=ua.DataValue(
                ua.Variant(value, vtype),
                StatusCode=ua.StatusCode(status) if status is not None else None,
                SourceTimestamp=src,
                ServerTimestamp=srv,
            ),
        )
        for i, ((vtype, value), status, src, srv) in enumerate(
            itertools.product(_HOT_VALUES, (None, 0, 0x40000000), _HOT_TIMES, _HOT_TIMES[1:3])
        )
    ]
    msg = ua.NotificationMessage(SequenceNumber=1, NotificationData=[ua.DataChangeNotification(MonitoredItems=items)])
    data = struct_to_binary(ua.PublishResponse(Parameters=ua.PublishResult(SubscriptionId=1, NotificationMessage=msg)))
    fast = decode_publish(data)
    assert fast is not None
    reference = struct_from_binary(ua.PublishResponse, Buffer(data)).Parameters.NotificationMessage
    want = [change_of(item) for item in reference.NotificationData[0].MonitoredItems]
    assert len(fast.changes) == len(want) == len(_HOT_VALUES) * 3 * len(_HOT_TIMES) * 2
    for got, expected in zip(fast.changes, want, strict=True):
        assert got[0] == expected[0] and got[2:] == expected[2:]
        assert _same(got[1], expected[1]), (got, expected)
    assert {c[3] for c in fast.changes} == {None, *(to_ns(t) for t in _HOT_TIMES[1:])}


_RUN_TIMES = st.datetimes(min_value=datetime(1601, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC))


@st.composite
def uniform_notifications(draw: st.DrawFn) -> ua.DataChangeNotification:
    """Many items of one variant type, all with or all without a status code and with both timestamps (as a server
    sends a group of like variables), now and then one item of another kind among them."""
    vtype = draw(st.sampled_from(_FAST_TYPES))
    status = draw(st.sampled_from([None, 0, 0x40000000, 0x80000000]))
    items = [
        ua.MonitoredItemNotification(
            ClientHandle=draw(st.integers(0, 2**32 - 1)),
            Value=ua.DataValue(
                ua.Variant(draw(_scalar(vtype)), vtype),
                StatusCode=ua.StatusCode(status) if status is not None else None,
                SourceTimestamp=draw(st.one_of(_RUN_TIMES, st.sampled_from(_HOT_TIMES))),
                ServerTimestamp=draw(st.one_of(_RUN_TIMES, st.sampled_from(_HOT_TIMES))),
            ),
        )
        for _ in range(draw(st.integers(1, 40)))
    ]
    if draw(st.booleans()):
        dv, _fast = draw(data_values(hot=True))
        items.insert(draw(st.integers(0, len(items))), ua.MonitoredItemNotification(ClientHandle=7, Value=dv))
    return ua.DataChangeNotification(MonitoredItems=items)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(uniform_notifications(), min_size=1, max_size=3))
def test_runs_of_like_items_agree_with_asyncua(notes: list[ua.DataChangeNotification]) -> None:
    """Items of one layout are read as one run (the usual response under load): the same changes as asyncua's."""
    msg = ua.NotificationMessage(SequenceNumber=3, NotificationData=notes)
    data = struct_to_binary(ua.PublishResponse(Parameters=ua.PublishResult(SubscriptionId=2, NotificationMessage=msg)))
    fast = decode_publish(data)
    assert fast is not None
    reference = struct_from_binary(ua.PublishResponse, Buffer(data)).Parameters.NotificationMessage
    want = [change_of(item) for n in reference.NotificationData for item in n.MonitoredItems]
    assert len(fast.changes) == len(want)
    for got, expected in zip(fast.changes, want, strict=True):
        assert got[0] == expected[0] and got[2:] == expected[2:]
        assert _same(got[1], expected[1]), (got, expected)


def test_a_run_with_a_timestamp_past_asyncuas_clamp_is_declined_and_one_before_1601_is_absent() -> None:
    """asyncua clamps a FILETIME after 9999-12-31 to that date (so such a response is declined) and reads a negative
    one as absent, also in the middle of a run of like items; a run cut short anywhere is declined."""
    ts = datetime(2026, 12, 2, 5, 0, 0, 123457, tzinfo=UTC)
    odd = datetime(2026, 12, 2, 5, 0, 1, tzinfo=UTC)
    items = [
        ua.MonitoredItemNotification(
            ClientHandle=h,
            Value=ua.DataValue(
                ua.Variant(h * 0.5, VT.Double), SourceTimestamp=odd if h == 2 else ts, ServerTimestamp=ts
            ),
        )
        for h in (1, 2, 3)
    ]
    msg = ua.NotificationMessage(SequenceNumber=1, NotificationData=[ua.DataChangeNotification(MonitoredItems=items)])
    data = struct_to_binary(ua.PublishResponse(Parameters=ua.PublishResult(SubscriptionId=1, NotificationMessage=msg)))
    tick = struct.pack("<q", (to_ns(odd) or 0) // 100 + 116_444_736_000_000_000)
    assert data.count(tick) == 1
    for late in (2**63 - 1, 0x7F << 56, 2_650_467_743_990_000_000):
        assert decode_publish(data.replace(tick, struct.pack("<q", late))) is None
    for run in (items, items[:1]):
        note = ua.DataChangeNotification(MonitoredItems=run)
        whole = struct_to_binary(
            ua.PublishResponse(
                Parameters=ua.PublishResult(
                    SubscriptionId=1, NotificationMessage=ua.NotificationMessage(NotificationData=[note])
                )
            )
        )
        assert decode_publish(whole) is not None
        assert all(decode_publish(whole[:cut]) is None for cut in range(len(whole)))
    negative = data.replace(tick, struct.pack("<q", -5))
    fast = decode_publish(negative)
    assert fast is not None
    reference = struct_from_binary(ua.PublishResponse, Buffer(negative)).Parameters.NotificationMessage
    assert fast.changes == [change_of(item) for item in reference.NotificationData[0].MonitoredItems]
    assert fast.changes[1][3] is None
