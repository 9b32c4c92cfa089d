"""The rollup keeper's batch log (pure): markers and samples of this process's batches, bounded both ways."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from influxdb_client import Point

from storage.influx.batchlog import BatchLog, Bounds, marker_bounds, new_writer_id
from storage.influx.rollup_points import dirty_markers
from wire import Sample

from .test_lineprotocol import text

M = "m-0a0b0c"
T0 = 1_767_225_600 * 10**9


def _sample(ts: int, asset: str = "a-00000001", cls: str = "press") -> Sample:
    return Sample(ts=ts, asset=asset, asset_class=cls, signal="power_kw", value=1.0)


@given(
    st.lists(
        st.tuples(st.integers(0, 10**12), st.sampled_from(["a-00000001", "a-00000002", "a-00000003"])),
        min_size=1,
        max_size=50,
    )
)
def test_marker_bounds_are_each_assets_first_and_last_time(rows: list[tuple[int, str]]) -> None:
    samples = [_sample(T0 + t, a) for t, a in rows]
    expected = {
        a: ("press", min(T0 + t for t, b in rows if b == a), max(T0 + t for t, b in rows if b == a)) for _, a in rows
    }
    assert marker_bounds(samples) == expected


def bounds_reference(samples: list[Sample]) -> Bounds:
    """Per asset, in the order of first appearance: the class of its first sample, its least and greatest time."""
    assets = list(dict.fromkeys(s.asset for s in samples))
    return {
        a: (
            next(s.asset_class for s in samples if s.asset == a),
            min(s.ts for s in samples if s.asset == a),
            max(s.ts for s in samples if s.asset == a),
        )
        for a in assets
    }


@given(
    st.lists(
        st.builds(
            Sample,
            ts=st.integers(0, 2**62),
            asset=st.sampled_from(["a-00000001", "a-00000002", "a-00000003", "a-00000004"]),
            asset_class=st.sampled_from(["press", "welding"]),
            signal=st.just("power_kw"),
            value=st.just(1.0),
        ),
        max_size=40,
    )
)
def test_marker_bounds_equal_the_obvious_computation(samples: list[Sample]) -> None:
    """Any order of times, an asset's class changing within the batch (its first sample's counts), and the assets
    in the order they first appear (the order of the marker lines)."""
    got = marker_bounds(samples)
    expected = bounds_reference(samples)
    assert got == expected and list(got) == list(expected)
    assert all(type(b) is tuple for b in got.values())


def markers_reference(member: str, bounds: Bounds, written_ns: int, writer: str) -> bytes:
    """The marker lines as influxdb-client's ``Point`` writes them."""
    lines = [
        Point("rollup_dirty")
        .tag("asset", asset)
        .tag("asset_class", cls)
        .tag("member", member)
        .tag("writer", writer)
        .field("hi_ns", hi)
        .field("lo_ns", lo)
        .field("written_ns", written_ns)
        .time(written_ns)
        .to_line_protocol()
        for asset, (cls, lo, hi) in bounds.items()
    ]
    return "\n".join(lines).encode()


_tag = st.one_of(st.sampled_from(["a-00000001", "press", "a b", "x\\", "k=v,w"]), text.filter(bool))
_bounds = st.dictionaries(
    st.one_of(st.sampled_from(["a-00000001", "a-00000002"]), _tag),
    st.tuples(st.one_of(st.sampled_from(["press", "welding"]), _tag), st.integers(0, 2**62), st.integers(0, 2**62)),
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(
    batches=st.lists(st.tuples(_tag, _bounds, st.integers(0, 2**62), _tag), min_size=1, max_size=4),
)
def test_dirty_markers_equal_point(batches: list[tuple[str, Bounds, int, str]]) -> None:
    """Several batches in a row (the same assets again, under other classes, members and writers): the escaped
    tags cached from one batch must never leak into another's lines."""
    for member, bounds, written_ns, writer in batches:
        got = dirty_markers(member, bounds, written_ns=written_ns, writer=writer)
        assert got == markers_reference(member, bounds, written_ns, writer)


def test_markers_carry_bounds_and_writer_in_key_order() -> None:
    bounds = marker_bounds([_sample(T0 + 5), _sample(T0 + 1), _sample(T0 + 9)])
    line = dirty_markers(M, bounds, written_ns=T0 + 100, writer="w-0123456789ab").decode()
    assert line == (
        f"rollup_dirty,asset=a-00000001,asset_class=press,member={M},writer=w-0123456789ab "
        f"hi_ns={T0 + 9}i,lo_ns={T0 + 1}i,written_ns={T0 + 100}i {T0 + 100}"
    )


def test_writer_ids_differ_per_log() -> None:
    assert new_writer_id() != new_writer_id()
    assert BatchLog().writer.startswith("w-")


def test_a_batch_is_forgotten_when_all_its_markers_are_done() -> None:
    log = BatchLog()
    batch = [_sample(T0, "a-00000001"), _sample(T0 + 1, "a-00000002")]
    log.record(M, batch, T0 + 10, marker_bounds(batch))
    first, second = sorted(log.pending(), key=lambda m: m.asset)
    assert (first.asset, first.lo, first.hi, first.written_ns) == ("a-00000001", T0, T0, T0 + 10)
    log.done([first])
    assert log.pending() == [second]
    assert log.samples(M, T0 + 10) == batch, "samples stay while a marker of the batch is pending"
    log.done([second, second])
    assert log.pending() == [] and log.batches == 0 and log.samples(M, T0 + 10) is None


def test_pending_markers_are_filtered_by_member_asset_and_class() -> None:
    log = BatchLog()
    batch = [_sample(T0, "a-00000001", "press"), _sample(T0, "a-00000002", "cnc")]
    log.record(M, batch, T0 + 10, marker_bounds(batch))
    log.record("m-ffffff", batch, T0 + 11, marker_bounds(batch))
    assert {m.member for m in log.pending(members={M})} == {M}
    assert {m.asset for m in log.pending(assets={"a-00000002"})} == {"a-00000002"}
    assert {(m.member, m.asset) for m in log.pending(members={M}, asset_classes={"press"})} == {(M, "a-00000001")}
    log.forget(M)
    assert {m.member for m in log.pending()} == {"m-ffffff"}


def test_samples_beyond_the_bound_are_dropped_oldest_first_and_their_markers_kept() -> None:
    log = BatchLog(max_samples=3)
    for i in range(3):
        batch = [_sample(T0 + 2 * i), _sample(T0 + 2 * i + 1)]
        log.record(M, batch, T0 + 100 + i, marker_bounds(batch))
    assert log.samples(M, T0 + 100) is None and log.samples(M, T0 + 101) is None
    assert log.samples(M, T0 + 102) is not None
    assert len(log.pending()) == 3, "markers outlive their samples"
    assert not log.must_read_back(log.drops)


def test_markers_beyond_the_bound_are_dropped_and_read_back_once() -> None:
    log = BatchLog(max_markers=2)
    batch = [_sample(T0, f"a-0000000{i}") for i in range(1, 4)]
    log.record(M, batch, T0 + 100, marker_bounds(batch))
    assert log.pending() == [] and log.drops == 1
    drops = log.drops
    assert log.must_read_back(drops)
    log.read_back(drops)
    assert not log.must_read_back(log.drops)
    log.record(M, batch, T0 + 101, marker_bounds(batch))
    assert log.must_read_back(log.drops), "a drop during or after a read-back needs another one"
    log.read_back(drops)
    assert log.must_read_back(log.drops)
