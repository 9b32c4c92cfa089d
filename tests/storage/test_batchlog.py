"""The rollup keeper's batch log (pure): markers and samples of this process's batches, bounded both ways."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from influxdb_client import Point

from storage.influx.batchlog import AssetPart, BatchLog, Parts, new_writer_id, split_by_asset
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
    assert {a: (p.asset_class, p.lo, p.hi) for a, p in split_by_asset(samples).items()} == expected


def parts_reference(samples: list[Sample]) -> Parts:
    """Per asset, in the order of first appearance: the class of its first sample, its least and greatest time,
    its samples in the batch's order."""
    assets = list(dict.fromkeys(s.asset for s in samples))
    return {
        a: AssetPart(
            next(s.asset_class for s in samples if s.asset == a),
            min(s.ts for s in samples if s.asset == a),
            max(s.ts for s in samples if s.asset == a),
            [s for s in samples if s.asset == a],
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
def test_split_by_asset_equals_the_obvious_computation(samples: list[Sample]) -> None:
    """Any order of times, an asset's class changing within the batch (its first sample's counts), and the assets
    in the order they first appear (the order of the marker lines)."""
    got = split_by_asset(samples)
    expected = parts_reference(samples)
    assert got == expected and list(got) == list(expected)


def markers_reference(member: str, bounds: dict[str, tuple[str, int, int]], written_ns: int, writer: str) -> bytes:
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
def test_dirty_markers_equal_point(batches: list[tuple[str, dict[str, tuple[str, int, int]], int, str]]) -> None:
    """Several batches in a row (the same assets again, under other classes, members and writers): the escaped
    tags cached from one batch must never leak into another's lines."""
    for member, bounds, written_ns, writer in batches:
        parts = {a: AssetPart(cls, lo, hi, []) for a, (cls, lo, hi) in bounds.items()}
        got = dirty_markers(member, parts, written_ns=written_ns, writer=writer)
        assert got == markers_reference(member, bounds, written_ns, writer)


def test_markers_carry_bounds_and_writer_in_key_order() -> None:
    parts = split_by_asset([_sample(T0 + 5), _sample(T0 + 1), _sample(T0 + 9)])
    line = dirty_markers(M, parts, written_ns=T0 + 100, writer="w-0123456789ab").decode()
    assert line == (
        f"rollup_dirty,asset=a-00000001,asset_class=press,member={M},writer=w-0123456789ab "
        f"hi_ns={T0 + 9}i,lo_ns={T0 + 1}i,written_ns={T0 + 100}i {T0 + 100}"
    )


def test_writer_ids_differ_per_log() -> None:
    assert new_writer_id() != new_writer_id()
    assert BatchLog().writer.startswith("w-")


def _record(log: BatchLog, member: str, batch: list[Sample], written_ns: int) -> None:
    log.record(member, written_ns, split_by_asset(batch))


def _view(log: BatchLog, **filters: Any) -> dict[tuple[str, str], tuple[int, int, list[int], list[Sample] | None]]:
    return {(p.member, p.asset): (p.lo, p.hi, p.written, p.samples()) for p in log.pending(**filters)}


def test_a_batch_is_forgotten_when_all_its_markers_are_done() -> None:
    log = BatchLog()
    batch = [_sample(T0, "a-00000001"), _sample(T0 + 1, "a-00000002")]
    _record(log, M, batch, T0 + 10)
    first, second = sorted(log.pending(), key=lambda p: p.asset)
    assert (first.asset, first.lo, first.hi, first.written) == ("a-00000001", T0, T0, [T0 + 10])
    log.done([first])
    assert log.pending() == [second]
    assert second.samples() == batch[1:], "samples stay while a marker of the batch is pending"
    assert log.batches == 1 and not log.was_done(M, T0 + 10)
    log.done([second, second])
    assert log.pending() == [] and log.batches == 0 and log.markers == 0 and log.was_done(M, T0 + 10)


def test_an_assets_markers_are_taken_as_one_in_the_order_written() -> None:
    log = BatchLog()
    _record(log, M, [_sample(T0 + 5), _sample(T0 + 2)], T0 + 20)
    _record(log, M, [_sample(T0 + 1)], T0 + 10)  # a write stamped earlier that finished later
    (p,) = log.pending()
    assert (p.lo, p.hi, p.written) == (T0 + 1, T0 + 5, [T0 + 10, T0 + 20])
    assert [s.ts for s in p.samples() or []] == [T0 + 1, T0 + 5, T0 + 2]
    _record(log, M, [_sample(T0 + 9)], T0 + 30)  # recorded while the refresh works: stays pending
    log.done([p])
    (q,) = log.pending()
    assert (q.lo, q.hi, q.written) == (T0 + 9, T0 + 9, [T0 + 30])


def test_pending_markers_are_filtered_by_member_asset_and_class() -> None:
    log = BatchLog()
    batch = [_sample(T0, "a-00000001", "press"), _sample(T0, "a-00000002", "cnc")]
    _record(log, M, batch, T0 + 10)
    _record(log, "m-ffffff", batch, T0 + 11)
    assert {p.member for p in log.pending(members={M})} == {M}
    assert {p.asset for p in log.pending(assets={"a-00000002"})} == {"a-00000002"}
    assert {(p.member, p.asset) for p in log.pending(members={M}, asset_classes={"press"})} == {(M, "a-00000001")}
    log.forget(M)
    assert {p.member for p in log.pending()} == {"m-ffffff"}


def test_samples_beyond_the_bound_are_dropped_oldest_first_and_their_markers_kept() -> None:
    log = BatchLog(max_samples=3)
    for i in range(3):
        _record(log, M, [_sample(T0 + 2 * i), _sample(T0 + 2 * i + 1)], T0 + 100 + i)
    (p,) = log.pending()
    assert p.written == [T0 + 100, T0 + 101, T0 + 102], "markers outlive their samples"
    assert p.samples() is None, "an asset with a dropped batch must be read back"
    assert log.batches == 1
    assert not log.must_read_back(log.drops)


def test_markers_beyond_the_bound_are_dropped_and_read_back_once() -> None:
    log = BatchLog(max_markers=2)
    batch = [_sample(T0, f"a-0000000{i}") for i in range(1, 4)]
    _record(log, M, batch, T0 + 100)
    assert log.pending() == [] and log.drops == 1 and log.batches == 0
    drops = log.drops
    assert log.must_read_back(drops)
    log.read_back(drops)
    assert not log.must_read_back(log.drops)
    _record(log, M, batch, T0 + 101)
    assert log.must_read_back(log.drops), "a drop during or after a read-back needs another one"
    log.read_back(drops)
    assert log.must_read_back(log.drops)


def test_a_marker_read_back_is_done_too() -> None:
    log = BatchLog()
    _record(log, M, [_sample(T0, "a-00000001"), _sample(T0, "a-00000002")], T0 + 10)
    _record(log, M, [_sample(T0 + 1, "a-00000001")], T0 + 20)
    log.done([], [(M, "a-00000001", T0 + 10)])
    assert _view(log) == {
        (M, "a-00000001"): (T0 + 1, T0 + 1, [T0 + 20], [_sample(T0 + 1, "a-00000001")]),
        (M, "a-00000002"): (T0, T0, [T0 + 10], [_sample(T0, "a-00000002")]),
    }


class ReferenceLog:
    """The log's rules marker by marker, as the obvious computation (the log before it kept markers per asset)."""

    def __init__(self, max_samples: int, max_markers: int) -> None:
        self.max_samples, self.max_markers = max_samples, max_markers
        self.markers: dict[tuple[str, str, int], tuple[str, int, int]] = {}
        self.samples: dict[tuple[str, int], list[Sample]] = {}
        self.batches: set[tuple[str, int]] = set()
        self.done: set[tuple[str, int]] = set()

    def record(self, member: str, batch: list[Sample], t: int) -> None:
        for a, p in parts_reference(batch).items():
            self.markers[(member, a, t)] = (p.asset_class, p.lo, p.hi)
        self.samples[(member, t)] = list(batch)
        self.batches.add((member, t))
        while sum(map(len, self.samples.values())) > self.max_samples:
            del self.samples[next(iter(self.samples))]
        if len(self.markers) > self.max_markers:
            self.markers.clear()
            self.samples.clear()
            self.batches.clear()

    def view(self, members: Any = None, assets: Any = None, asset_classes: Any = None) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for (m, a, t), (cls, lo, hi) in sorted(self.markers.items(), key=lambda kv: kv[0][2]):
            if (members is not None and m not in members) or (assets is not None and a not in assets):
                continue
            if asset_classes is not None and cls not in asset_classes:
                continue
            old = out.get((m, a))
            batch = self.samples.get((m, t))
            mine = None if batch is None else [s for s in batch if s.asset == a]
            if old is None:
                out[(m, a)] = (lo, hi, [t], mine)
            else:
                both = None if old[3] is None or mine is None else old[3] + mine
                out[(m, a)] = (min(old[0], lo), max(old[1], hi), [*old[2], t], both)
        return out

    def handle(self, taken: list[tuple[str, str, int]]) -> None:
        for key in taken:
            self.markers.pop(key, None)
        for m, t in {(m, t) for m, _, t in taken}:
            if not any(k[0] == m and k[2] == t for k in self.markers) and (m, t) in self.batches:
                self.samples.pop((m, t), None)
                self.batches.discard((m, t))
                self.done.add((m, t))


_ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("record"),
            st.sampled_from([M, "m-ffffff"]),
            st.lists(
                st.tuples(
                    st.integers(0, 50),
                    st.sampled_from(["a-00000001", "a-00000002", "a-00000003"]),
                    st.sampled_from(["press", "welding"]),
                ),
                min_size=1,
                max_size=6,
            ),
        ),
        st.tuples(
            st.just("refresh"),
            st.sampled_from([None, {M}]),
            st.sampled_from([None, {"a-00000001"}]),
            st.sampled_from([None, {"press"}]),
            st.booleans(),  # a batch recorded between taking the pending assets and handling them
        ),
        st.tuples(st.just("read_back"), st.integers(0, 20)),
        st.tuples(st.just("forget"), st.sampled_from([M, "m-ffffff"])),
    ),
    max_size=25,
)


@settings(max_examples=300, deadline=None)
@given(ops=_ops, max_samples=st.integers(1, 40), max_markers=st.integers(1, 40))
def test_the_log_equals_the_marker_by_marker_rules(ops: list[Any], max_samples: int, max_markers: int) -> None:
    """Random records (an asset's classes changing, writes finishing out of order), refreshes limited by member,
    asset and class with a record in between, markers read back and members forgotten: the pending assets, their
    bounds, batches and samples are those of the marker-by-marker rules, and so are the batches done."""
    log, ref = BatchLog(max_samples=max_samples, max_markers=max_markers), ReferenceLog(max_samples, max_markers)
    written: list[int] = []
    for op in ops:
        if op[0] == "record":
            t = T0 + 1000 + (len(written) * 7919) % 97  # not in the order recorded, and never twice
            while t in written:
                t += 97
            written.append(t)
            batch = [_sample(T0 + dt, a, cls) for dt, a, cls in op[2]]
            _record(log, op[1], batch, t)
            ref.record(op[1], batch, t)
        elif op[0] == "refresh":
            filters = {"members": op[1], "assets": op[2], "asset_classes": op[3]}
            taken = log.pending(**filters)
            expected = ref.view(**filters)
            assert {(p.member, p.asset): (p.lo, p.hi, p.written, p.samples()) for p in taken} == expected
            if op[4]:
                t = max(written, default=T0) + 1
                written.append(t)
                batch = [_sample(T0 + 60, "a-00000001", "press")]
                _record(log, M, batch, t)
                ref.record(M, batch, t)
            log.done(taken)
            ref.handle([(p.member, p.asset, t) for p in taken for t in p.written])
        elif op[0] == "read_back":
            if ref.markers:
                key = sorted(ref.markers)[op[1] % len(ref.markers)]
                log.done([], [key])
                ref.handle([key])
        else:
            log.forget(op[1])
            ref.markers = {k: v for k, v in ref.markers.items() if k[0] != op[1]}
            ref.samples = {k: v for k, v in ref.samples.items() if k[0] != op[1]}
            ref.batches = {k for k in ref.batches if k[0] != op[1]}
        assert _view(log) == ref.view()
        assert log.markers == len(ref.markers) and log.batches == len(ref.samples)
        assert all(log.was_done(m, t) == ((m, t) in ref.done) for m, t in itertools.product((M, "m-ffffff"), written))
