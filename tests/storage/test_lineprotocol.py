"""The line-protocol encoder against influxdb-client's ``Point`` (the reference), by property tests and cases."""

from __future__ import annotations

import math
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from influxdb_client import Point

from storage.influx.lineprotocol import (
    SampleEncoder,
    encode_lines,
    encode_point,
    encode_rows,
    encode_samples,
    escape_key,
    escape_string,
    escape_tag_value,
)
from wire import MACHINE_STATES, SIGNALS, Sample

# Text including every character that line protocol treats specially.
_special = st.sampled_from([",", "=", " ", '"', "\\", "\n", "\t", "\r", "#", "ä", "💡"])
text = st.lists(st.one_of(_special, st.characters(codec="utf-8")), max_size=12).map("".join)
field_value = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    text,
    st.none(),
)
ts = st.integers(min_value=0, max_value=2**62)


def reference(measurement: str, tags: dict[str, str], fields: dict[str, object], t: int | None) -> str:
    p = Point(measurement)
    for k, v in tags.items():
        p.tag(k, v)
    for k, v in fields.items():
        p.field(k, v)
    if t is not None:
        p.time(t)
    return p.to_line_protocol()


@settings(max_examples=400, deadline=None)
@given(
    measurement=text.filter(lambda m: m != "" and not m.startswith("#")),
    tags=st.dictionaries(text, text, max_size=4),
    fields=st.dictionaries(text, field_value, max_size=4),
    t=st.one_of(st.none(), ts),
)
def test_encode_point_matches_point(
    measurement: str, tags: dict[str, str], fields: dict[str, object], t: int | None
) -> None:
    assert encode_point(measurement, tags, fields, t) == reference(measurement, tags, fields, t)  # type: ignore[arg-type]


pseudonym = st.from_regex(r"\A[a-z]-[0-9a-f]{8,12}\Z")
sample = st.builds(
    Sample,
    ts=ts,
    asset=pseudonym,
    asset_class=st.sampled_from(["cnc_milling", "press", "welding"]),
    signal=st.sampled_from(sorted(SIGNALS)),
    value=st.one_of(
        st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**40), 2**40), st.sampled_from(MACHINE_STATES)
    ),
    quality=st.integers(0, 2),
)


def sample_reference(member: str, s: Sample) -> str:
    fields: dict[str, object] = {"quality": s.quality}
    fields["text" if isinstance(s.value, str) else "value"] = s.value if isinstance(s.value, str) else float(s.value)
    if not isinstance(s.value, str) and not math.isfinite(float(s.value)):
        return ""  # Point skips non-finite floats, leaving no field but quality: the encoders drop such samples
    tags = {"member": member, "asset": s.asset, "asset_class": s.asset_class, "signal": s.signal}
    return reference("samples", tags, fields, s.ts)


odd_sample = st.builds(
    Sample,
    ts=ts,
    asset=st.one_of(pseudonym, text.filter(bool)),
    asset_class=st.one_of(st.sampled_from(["press", "welding"]), text.filter(bool)),
    signal=st.one_of(st.sampled_from(sorted(SIGNALS)), text.filter(bool)),
    value=st.one_of(st.floats(), st.integers(-(2**40), 2**40), st.sampled_from(MACHINE_STATES), text),
    quality=st.integers(0, 2),
)


def sample_reference_lines(member: str, samples: list[Sample]) -> bytes:
    lines = [sample_reference(member, s) for s in samples]
    return "\n".join(line for line in lines if line).encode()


@settings(max_examples=300, deadline=None)
@given(member=st.from_regex(r"\Am-[0-9a-f]{6,10}\Z"), samples=st.lists(sample, max_size=20))
def test_sample_encoder_matches_point(member: str, samples: list[Sample]) -> None:
    encoder = SampleEncoder()
    expected = sample_reference_lines(member, samples)
    assert encoder.encode(member, samples) == expected
    assert encoder.encode(member, samples) == expected  # second time from the series cache


@settings(max_examples=30, deadline=None)
@given(member=st.from_regex(r"\Am-[0-9a-f]{6,10}\Z"), samples=st.lists(odd_sample, min_size=64, max_size=120))
def test_columnar_and_python_paths_match_point_for_any_text(member: str, samples: list[Sample]) -> None:
    """Large batches take the column-wise (polars) path; any tag text, floats including NaN and inf."""
    encoder = SampleEncoder(columnar_from=64)
    expected = sample_reference_lines(member, samples)
    assert encoder.encode(member, samples) == expected
    assert encoder.encode_python(member, samples) == expected


@pytest.mark.parametrize(
    ("tags", "fields", "line"),
    [
        ({"a b": "c,d"}, {"f=1": 1.0}, r"m,a\ b=c\,d f\=1=1 5"),
        ({"k": "x\\"}, {"s": 'say "hi" \\ bye'}, r'm,k=x\  s="say \"hi\" \\ bye" 5'),
        ({"empty": ""}, {"i": 3, "b": True, "f": 0.1}, "m b=true,f=0.1,i=3i 5"),
        ({}, {"big": 1e300, "small": -2.5e-10}, "m big=1e+300,small=-2.5e-10 5"),
        ({}, {"nan": math.nan, "none": None}, ""),
    ],
)
def test_escaping_cases(tags: dict[str, str], fields: dict[str, object], line: str) -> None:
    assert encode_point("m", tags, fields, 5) == line  # type: ignore[arg-type]


def test_states_are_strings_numbers_are_floats() -> None:
    samples = [
        Sample(ts=1, asset="a-00000001", asset_class="press", signal="parts_total", value=7),
        Sample(ts=2, asset="a-00000001", asset_class="press", signal="state", value="running", quality=1),
    ]
    assert encode_samples("m-abcdef", samples).decode().splitlines() == [
        "samples,asset=a-00000001,asset_class=press,member=m-abcdef,signal=parts_total quality=0i,value=7 1",
        'samples,asset=a-00000001,asset_class=press,member=m-abcdef,signal=state quality=1i,text="running" 2',
    ]
    assert encode_lines(["a", "", "b"]) == b"a\nb"


_key = text.filter(lambda k: k != "")


@settings(max_examples=300, deadline=None)
@given(
    measurement=text.filter(lambda m: m != "" and not m.startswith("#")),
    tag_keys=st.lists(_key, max_size=3, unique=True),
    field_keys=st.lists(_key, min_size=1, max_size=4, unique=True),
    data=st.data(),
)
def test_encode_rows_matches_encode_point_per_row(
    measurement: str, tag_keys: list[str], field_keys: list[str], data: st.DataObject
) -> None:
    rows = data.draw(
        st.lists(
            st.tuples(
                st.lists(text, min_size=len(tag_keys), max_size=len(tag_keys)),
                st.lists(field_value, min_size=len(field_keys), max_size=len(field_keys)),
                st.one_of(st.none(), ts),
            ),
            max_size=6,
        )
    )
    expected = encode_lines(
        encode_point(measurement, dict(zip(tag_keys, tags, strict=True)), dict(zip(field_keys, fields, strict=True)), t)
        for tags, fields, t in rows
    )
    assert encode_rows(measurement, tag_keys, field_keys, rows) == expected


# The escaping as it was first written (one ``str.translate`` each), which the fast paths must equal.
_KEY_TABLE = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_STRING_TABLE = str.maketrans({'"': r"\"", "\\": r"\\"})


@settings(max_examples=500, deadline=None)
@given(value=st.one_of(text, st.lists(_special, max_size=4).map("".join)))
def test_escaping_equals_plain_translation(value: str) -> None:
    key = value.translate(_KEY_TABLE)
    assert escape_key(value) == key
    assert escape_tag_value(value) == (key + " " if key.endswith("\\") else key)
    assert escape_string(value) == value.translate(_STRING_TABLE)


members = st.lists(st.from_regex(r"\Am-[0-9a-f]{6}\Z"), min_size=1, max_size=3, unique=True)


@settings(max_examples=150, deadline=None)
@given(
    members=members,
    data=st.data(),
    max_cached=st.integers(1, 8),
    forget=st.booleans(),
)
def test_one_encoder_shared_by_threads_matches_point(
    members: list[str], data: st.DataObject, max_cached: int, forget: bool
) -> None:
    """Several threads encode batches of several members (the same assets under each) with one encoder whose
    cache is smaller than the series: every body is the reference's, and the cache stays within its bound."""
    assets = st.sampled_from(["a-00000001", "a-00000002", "a,odd=1 "])
    small = st.builds(
        Sample,
        ts=ts,
        asset=assets,
        asset_class=st.sampled_from(["press", "welding"]),
        signal=st.sampled_from(["power_kw", "state"]),
        value=st.one_of(st.floats(), st.sampled_from(MACHINE_STATES), text),
        quality=st.integers(0, 2),
    )
    jobs = data.draw(st.lists(st.tuples(st.sampled_from(members), st.lists(small, max_size=12)), max_size=12))
    encoder = SampleEncoder(max_cached_series=max_cached)
    start = threading.Barrier(4, timeout=30)

    def encode(job: tuple[str, list[Sample]]) -> bytes:
        member, samples = job
        if forget:
            encoder.forget(member)
        return encoder.encode_python(member, samples)

    def work(part: list[tuple[str, list[Sample]]]) -> list[bytes]:
        start.wait()
        return [encode(job) for job in part]

    parts = [jobs[i::4] for i in range(4)]
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # (Python's is 5 ms): the threads interleave inside the encoder
    try:
        with ThreadPoolExecutor(4) as pool:
            bodies = list(pool.map(work, parts))
    finally:
        sys.setswitchinterval(switch)
    for part, got in zip(parts, bodies, strict=True):
        assert got == [sample_reference_lines(member, samples) for member, samples in part]
    assert encoder._size <= max_cached
    assert encoder._size == sum(len(c) for c in encoder._members.values())


@pytest.mark.parametrize("max_cached", [100_000, 700])
def test_threads_missing_the_same_series_at_once_count_each_once(max_cached: int) -> None:
    """Eight threads meet the same 2,000 new series at once, switching every microsecond: every body is right,
    and the cache counts what it holds (at a bound below the series, clearing meanwhile)."""
    signals = sorted(SIGNALS)
    samples = [
        Sample(ts=i, asset=f"a-{i % 500:08x}", asset_class="press", signal=signals[i % 4], value=i / 7)
        for i in range(2000)
    ]
    expected = sample_reference_lines("m-000001", samples)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(5):
            encoder = SampleEncoder(max_cached_series=max_cached)
            start = threading.Barrier(8, timeout=30)

            def encode(_: int, encoder: SampleEncoder = encoder, start: threading.Barrier = start) -> bytes:
                start.wait()
                return encoder.encode_python("m-000001", samples)

            with ThreadPoolExecutor(8) as pool:
                assert set(pool.map(encode, range(8))) == {expected}
            assert encoder._size == sum(len(c) for c in encoder._members.values()) <= max_cached
    finally:
        sys.setswitchinterval(switch)
