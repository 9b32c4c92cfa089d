"""The wire contract: round trips, and rejection with a reason for everything that breaks it."""

from __future__ import annotations

import contextlib
import time

import msgspec
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from wire import (
    ASSET_CLASSES,
    DOWNTIME_REASONS,
    MACHINE_STATES,
    SIGNALS,
    Batch,
    Codec,
    InvalidBatch,
    PayloadTooLarge,
    Sample,
    Status,
    UnsupportedSchema,
    WireError,
    decode_batch,
    decode_status,
    encode_batch,
    encode_status,
    parse_topic,
    samples_topic,
)
from wire.codec import MAGIC, MAX_TS_NS, MIN_TS_NS, _all_samples_valid, sample_problem, validate_batch

NOW = time.time_ns()
ASSET = "a-0123456789abcdef"


def batch(samples: list[Sample] | None = None, **kw: object) -> Batch:
    fields: dict[str, object] = {
        "schema": 1,
        "batch_id": "0123456789abcdef",
        "member": "m-7f3a9c",
        "gateway": "g-00112233aabbccdd",
        "key_id": "k2026",
        "sent_ns": NOW,
        "samples": samples,
    }
    fields.update(kw)
    return Batch(**fields)  # type: ignore[arg-type]


def good_samples() -> list[Sample]:
    return [
        Sample(NOW, ASSET, "cnc_milling", "power_kw", 12.5),
        Sample(NOW, ASSET, "cnc_milling", "parts_total", 1200),
        Sample(NOW, ASSET, "cnc_milling", "state", "running", 1),
        Sample(NOW, ASSET, "cnc_milling", "downtime_reason", "tooling"),
    ]


def test_round_trip_keeps_every_field_and_type() -> None:
    b = batch(good_samples())
    out = decode_batch(encode_batch(b))
    assert out == b
    assert isinstance(out.samples[1].value, int)
    assert isinstance(out.samples[0].value, float)


def test_payload_is_compressed_and_marked() -> None:
    b = batch([Sample(NOW + i, ASSET, "cnc_milling", "power_kw", 1.0) for i in range(1000)])
    payload = Codec().encode(b)
    assert payload.startswith(MAGIC)
    assert len(payload) < len(msgspec.msgpack.encode(b)) / 3


@pytest.mark.parametrize(
    ("sample", "reason"),
    [
        (Sample(NOW, ASSET, "cnc_milling", "power_kw", "high"), "needs a number"),
        (Sample(NOW, ASSET, "cnc_milling", "power_kw", True), "needs a number"),
        (Sample(NOW, ASSET, "cnc_milling", "power_kw", float("nan")), "not finite"),
        (Sample(NOW, ASSET, "cnc_milling", "energy_kwh", -1.0), "negative"),
        (Sample(NOW, ASSET, "cnc_milling", "state", "sleeping"), "needs one of"),
        (Sample(NOW, ASSET, "cnc_milling", "state", 3), "needs one of"),
        (Sample(NOW, ASSET, "cnc_milling", "state", "tooling"), "needs one of running"),  # a reason is no state
        (Sample(NOW, ASSET, "cnc_milling", "downtime_reason", "running"), "needs one of none, breakdown"),
        (Sample(NOW, ASSET, "cnc_milling", "downtime_reason", "Werkzeugbruch bei Hr. Maier"), "needs one of"),
        (Sample(NOW, ASSET, "cnc_milling", "operator_badge", 7), "unknown signal"),
        (Sample(NOW, ASSET, "spaceship", "power_kw", 1.0), "unknown asset class"),
        (Sample(NOW, "DMG-MORI-4711", "cnc_milling", "power_kw", 1.0), "asset is not a pseudonym"),
        (Sample(NOW, ASSET + "\n", "cnc_milling", "power_kw", 1.0), "asset is not a pseudonym"),
        (Sample(5, ASSET, "cnc_milling", "power_kw", 1.0), "outside 2000..2100"),
        (Sample(NOW, ASSET, "cnc_milling", "power_kw", 1.0, 7), "quality 7"),
    ],
)
def test_bad_sample_is_rejected_with_reason(sample: Sample, reason: str) -> None:
    with pytest.raises(InvalidBatch, match=reason):
        decode_batch(encode_batch(batch([*good_samples(), sample])))


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, 10**30])
def test_an_integer_messagepack_cannot_carry_is_rejected_with_reason(value: int) -> None:
    """Such a sample cannot even be encoded: the check names it before an encoder fails on it."""
    sample = Sample(NOW, ASSET, "cnc_milling", "parts_total" if value > 0 else "power_kw", value)
    with pytest.raises(InvalidBatch, match="64-bit integers"):
        validate_batch(batch([*good_samples(), sample]))
    for edge in (2**64 - 1, -(2**63)):
        validate_batch(batch([Sample(NOW, ASSET, "cnc_milling", "power_kw", edge)]))  # the edges are carried


def test_a_sample_stamped_after_the_receivers_newest_time_is_refused_as_future() -> None:
    """A receiver passes its clock plus its allowance: a sample later than that is refused with its own code, and
    one at that time is accepted (without a limit, only 2000..2100 counts)."""
    latest = NOW + 600 * 10**9
    at, after = Sample(latest, ASSET, "press", "power_kw", 1.0), Sample(latest + 10**9, ASSET, "press", "power_kw", 1.0)
    assert decode_batch(encode_batch(batch([*good_samples(), at])), latest_ns=latest).samples[-1] == at
    with pytest.raises(InvalidBatch, match=r"sample 5: timestamp \d+ ns is 1 s later than the newest") as refused:
        decode_batch(encode_batch(batch([*good_samples(), at, after, at])), latest_ns=latest)
    assert refused.value.code == "future" and "clock" in refused.value.reason
    assert decode_batch(encode_batch(batch([after])), latest_ns=None).samples == [after]
    # a sample that breaks the contract itself is named for that, also when it is late too
    with pytest.raises(InvalidBatch, match="needs a number") as broken:
        decode_batch(encode_batch(batch([Sample(latest + 1, ASSET, "press", "power_kw", "x")])), latest_ns=latest)
    assert broken.value.code == "invalid"


def test_a_sample_older_than_the_receiver_keeps_is_refused_as_expired() -> None:
    earliest = NOW - 86_400 * 10**9
    at, before = (
        Sample(earliest, ASSET, "press", "power_kw", 1.0),
        Sample(earliest - 10**9, ASSET, "press", "power_kw", 1.0),
    )
    assert decode_batch(encode_batch(batch([at])), earliest_ns=earliest).samples == [at]
    with pytest.raises(InvalidBatch, match=r"sample 1: timestamp \d+ ns is 1 s earlier than the oldest") as refused:
        decode_batch(encode_batch(batch([at, before])), earliest_ns=earliest, latest_ns=NOW)
    assert refused.value.code == "expired" and "retention" in refused.value.reason


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"member": "ACME GmbH"}, "member"),
        ({"member": "m-7f3a9c\n"}, "member"),
        ({"gateway": "g-00112233aabbccdd\n"}, "gateway"),
        ({"batch_id": "0123456789abcdef\n"}, "batch_id"),
        ({"key_id": "k2026\n"}, "key_id"),
        ({"gateway": "hall-3-box"}, "gateway"),
        ({"batch_id": "x"}, "batch_id"),
        ({"key_id": ""}, "key_id"),
        ({"samples": []}, "no samples"),
    ],
)
def test_bad_header_is_rejected(fields: dict[str, object], reason: str) -> None:
    with pytest.raises(InvalidBatch, match=reason):
        decode_batch(encode_batch(batch(**{"samples": good_samples(), **fields})))


def test_unknown_schema_version() -> None:
    with pytest.raises(UnsupportedSchema):
        decode_batch(encode_batch(batch(good_samples(), schema=99)))


def status(**kw: object) -> bytes:
    fields: dict[str, object] = {
        "schema": 1,
        "member": "m-7f3a9c",
        "gateway": "g-00112233aabbccdd",
        "state": "online",
        "ts_ns": NOW,
    }
    fields.update(kw)
    return encode_status(Status(**fields))  # type: ignore[arg-type]


def test_status_round_trips() -> None:
    assert decode_status(status()) == Status(1, "m-7f3a9c", "g-00112233aabbccdd", "online", NOW)


@pytest.mark.parametrize(
    ("fields", "code", "reason"),
    [
        ({"schema": 99, "ts_ns": -5}, "schema", "schema version 99"),
        ({"ts_ns": -5}, "invalid", "timestamp -5 ns"),
        ({"ts_ns": 0}, "invalid", "outside 2000..2100"),
        ({"ts_ns": 2**62}, "invalid", "outside 2000..2100"),
        ({"member": "ACME GmbH"}, "invalid", "member"),
        ({"member": "m-7f3a9c\n"}, "invalid", "member"),
        ({"gateway": "hall-3"}, "invalid", "gateway"),
        ({"state": "sleeping"}, "invalid", "neither online nor offline"),
        ({"ts_ns": 1.5}, "decode", "Expected `int`"),
    ],
)
def test_bad_status_is_rejected_with_reason(fields: dict[str, object], code: str, reason: str) -> None:
    with pytest.raises(WireError, match=reason) as e:
        decode_status(status(**fields))
    assert e.value.code == code


def test_garbage_magic_and_frames() -> None:
    with pytest.raises(WireError) as e1:
        decode_batch(b"hello world")
    assert e1.value.code == "magic"
    with pytest.raises(WireError) as e2:
        decode_batch(MAGIC + b"not zstd at all")
    assert e2.value.code == "decompress"
    with pytest.raises(WireError) as e3:
        decode_batch(MAGIC + zstandard.ZstdCompressor().compress(b"\xc1\xc1\xc1"))
    assert e3.value.code == "decode"


def test_decompression_bomb_is_refused_before_it_inflates() -> None:
    bomb = MAGIC + zstandard.ZstdCompressor(level=19).compress(b"\0" * (80 * 1024 * 1024))
    assert len(bomb) < 100_000
    with pytest.raises(PayloadTooLarge):
        decode_batch(bomb)
    # The same bomb without a declared size is caught while streaming.
    cobj = zstandard.ZstdCompressor(level=19, write_content_size=False).compressobj()
    streamed = MAGIC + cobj.compress(b"\0" * (80 * 1024 * 1024)) + cobj.flush()
    with pytest.raises(PayloadTooLarge):
        decode_batch(streamed)


def test_oversized_payload_refused_without_decoding() -> None:
    with pytest.raises(PayloadTooLarge):
        decode_batch(MAGIC + b"\0" * 2000, max_payload_bytes=1000)


def test_topic_layout() -> None:
    topic = samples_topic("m-7f3a9c", "g-00112233aabbccdd")
    assert topic == "mdh/v1/m-7f3a9c/g-00112233aabbccdd/samples"
    assert parse_topic(topic) == ("m-7f3a9c", "g-00112233aabbccdd", "samples")
    for bad in (
        "mdh/v1/m-7f3a9c/samples",
        "mdh/v2/m-7f3a9c/g-00112233aabbccdd/samples",
        "mdh/v1/ACME/g-00112233aabbccdd/samples",
        "mdh/v1/m-7f3a9c/g-00112233aabbccdd/other",
        "mdh/v1/m-7f3a9c\n/g-00112233aabbccdd/samples",
        "mdh/v1/m-7f3a9c/g-00112233aabbccdd\n/samples",
    ):
        with pytest.raises(WireError):
            parse_topic(bad)


_numeric = [n for n, s in SIGNALS.items() if s.kind != "state"]
_samples = st.one_of(
    st.builds(
        Sample,
        ts=st.integers(946_684_800 * 10**9, 4_102_444_800 * 10**9),
        asset=st.from_regex(r"\Aa-[0-9a-f]{8,32}\Z"),
        asset_class=st.sampled_from(sorted(ASSET_CLASSES)),
        signal=st.sampled_from(_numeric),
        value=st.one_of(st.integers(0, 2**53), st.floats(0, 1e12, allow_nan=False)),
        quality=st.integers(0, 2),
    ),
    st.builds(
        Sample,
        ts=st.integers(946_684_800 * 10**9, 4_102_444_800 * 10**9),
        asset=st.from_regex(r"\Aa-[0-9a-f]{8,32}\Z"),
        asset_class=st.sampled_from(sorted(ASSET_CLASSES)),
        signal=st.just("state"),
        value=st.sampled_from(MACHINE_STATES),
        quality=st.integers(0, 2),
    ),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_samples, min_size=1, max_size=50))
def test_any_valid_batch_round_trips(samples: list[Sample]) -> None:
    b = batch(samples)
    assert decode_batch(encode_batch(b)) == b


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_crash_the_decoder(data: bytes) -> None:
    for payload in (data, MAGIC + data, MAGIC + zstandard.ZstdCompressor().compress(data)):
        with contextlib.suppress(WireError):
            decode_batch(payload)


_any_sample = st.builds(
    Sample,
    ts=st.one_of(st.integers(946_684_800 * 10**9 - 5, 4_102_444_800 * 10**9 + 5), st.integers(-(2**63), 2**63 - 1)),
    asset=st.one_of(st.from_regex(r"\Aa-[0-9a-f]{8,32}\Z"), st.text(max_size=40)),
    asset_class=st.one_of(st.sampled_from(sorted(ASSET_CLASSES)), st.text(max_size=20)),
    signal=st.one_of(st.sampled_from(sorted(SIGNALS)), st.text(max_size=20)),
    value=st.one_of(
        st.integers(-(2**63), 2**63 - 1),
        st.integers(-(2**70), 2**70),
        st.sampled_from([-(2**63) - 1, -(2**63), 2**64 - 1, 2**64]),
        st.floats(),
        st.booleans(),
        st.sampled_from(MACHINE_STATES + DOWNTIME_REASONS),
        st.text(),
    ),
    quality=st.integers(-3, 5),
)


@settings(max_examples=1500, deadline=None)
@given(_any_sample)
def test_fast_path_agrees_with_the_detailed_check(sample: Sample) -> None:
    assert _all_samples_valid([sample]) == (sample_problem(sample) is None)


_bound = st.one_of(st.none(), st.integers(0, 2**63), st.sampled_from([NOW - 1, NOW, NOW + 1]))


@settings(max_examples=800, deadline=None)
@given(st.one_of(_samples, _any_sample), _bound, _bound, st.sampled_from([None, (0, -1), (0, 0), (1, 0), (1, 1)]))
def test_fast_path_refuses_exactly_the_samples_outside_the_window(
    sample: Sample, earliest: int | None, latest: int | None, near: tuple[int, int] | None
) -> None:
    if near is not None and (bound := (earliest, latest)[near[0]]) is not None:
        sample = msgspec.structs.replace(sample, ts=bound + near[1])  # at a bound, or just outside it
    inside = (earliest is None or sample.ts >= earliest) and (latest is None or sample.ts <= latest)
    valid = sample_problem(sample) is None and inside
    lo, hi = max(MIN_TS_NS, earliest or 0), min(MAX_TS_NS, 2**63 if latest is None else latest)
    assert _all_samples_valid([sample], hi, lo) == valid
    try:
        validate_batch(batch([sample]), earliest_ns=earliest, latest_ns=latest)
    except InvalidBatch as exc:
        assert not valid
        expected = "invalid" if sample_problem(sample) else "expired" if earliest and sample.ts < earliest else "future"
        assert exc.code == expected
    else:
        assert valid
