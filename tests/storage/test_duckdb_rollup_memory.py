"""The embedded keeper folds the batches its process wrote from memory, and gives the rows a read-back gives.

Two embedded stores take the same writes (member by member, or several members in one flush): one with the
memory (storage.duckdb.written), one that keeps nothing and reads every pending asset back, as before the
memory. Whatever the batches (in order, out of order, sent twice, a sample twice in one batch), and whatever
refreshes run between them (every asset, one member, one asset), the rollups of both are equal, and equal to
compute_rollups over the raw rows the file holds. The two assets belong to two members or to one (then a
refresh of one asset leaves the other's samples of the same batches).
"""

from __future__ import annotations

from collections.abc import Iterator

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import storage.duckdb.rollups as duck_rollups
from storage import DuckDBStore, RollupQuery, compute_rollups
from storage.duckdb.written import WrittenBatches
from wire import Sample

from .test_contract import _stored_raw
from .test_incremental import streams

M1, M2 = "m-aaaaaa", "m-bbbbbb"


def _samples(raw: pl.DataFrame, *, one_member: bool) -> list[tuple[str, Sample]]:
    """The stream's rows as (member, sample): the second asset belongs to another member, or to the same."""
    out = []
    for a, cls, sig, ts, v, text, q in raw.select(
        "asset", "asset_class", "signal", "ts", "value", "text", "quality"
    ).iter_rows():
        member = M1 if a.endswith("1") or one_member else M2
        out.append((member, Sample(int(ts), a, cls, sig, text if text is not None else v, int(q))))
    return out


def _write(store: DuckDBStore, batch: list[tuple[str, Sample]], *, flush: bool) -> None:
    """Member by member, or as one flush of both (one transaction)."""
    parts = {member: [s for m, s in batch if m == member] for member in (M1, M2)}
    if flush:
        store.write_many(parts)
        return
    for member, part in parts.items():
        if part:
            store.write(member, part)


def _rollups(store: DuckDBStore, query: RollupQuery | None = None) -> pl.DataFrame:
    return store.query_rollups(query or RollupQuery())


def _from_raw(store: DuckDBStore) -> pl.DataFrame:
    return compute_rollups(_stored_raw(store))


def _equal(a: pl.DataFrame, b: pl.DataFrame) -> None:
    assert_frame_equal(a, b, check_exact=False, rel_tol=1e-9, abs_tol=1e-6)


@pytest.fixture
def stores() -> Iterator[tuple[DuckDBStore, DuckDBStore]]:
    remembering = DuckDBStore(":memory:")
    reading = DuckDBStore(":memory:")
    reading.rollups.written = WrittenBatches(max_samples=0)  # keeps nothing: every asset is read back
    yield remembering, reading
    remembering.close()
    reading.close()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=streams(), data=st.data())
def test_folding_from_memory_gives_the_rows_of_reading_back(raw: pl.DataFrame, data: st.DataObject) -> None:
    remembering = DuckDBStore(":memory:")
    reading = DuckDBStore(":memory:")
    reading.rollups.written = WrittenBatches(max_samples=0)
    try:
        samples = _samples(raw, one_member=data.draw(st.booleans(), label="one member"))
        cuts = sorted(data.draw(st.sets(st.integers(1, max(len(samples) - 1, 1)), max_size=8), label="cuts"))
        batches = [samples[i:j] for i, j in zip([0, *cuts], [*cuts, len(samples)], strict=True) if samples[i:j]]
        if len(batches) > 2 and data.draw(st.booleans(), label="swap"):  # a batch that arrives late
            k = data.draw(st.integers(0, len(batches) - 2), label="swapped")
            batches[k], batches[k + 1] = batches[k + 1], batches[k]
        written: list[list[tuple[str, Sample]]] = []
        for batch in batches:
            if written and data.draw(st.integers(0, 5), label="again") == 0:  # a batch sent again
                batch = data.draw(st.sampled_from(written), label="sent again") + batch
            if data.draw(st.integers(0, 7), label="twice") == 0:  # a sample twice in one batch
                batch = [*batch, batch[0]]
            flush = data.draw(st.booleans(), label="flush")
            for store in (remembering, reading):
                _write(store, batch, flush=flush)
            written.append(batch)
            step = data.draw(st.sampled_from(["none", "none", "all", "member", "asset"]), label="refresh")
            if step == "all":
                _equal(_rollups(remembering), _rollups(reading))
            elif step != "none":
                query = RollupQuery(members=(M2,)) if step == "member" else RollupQuery(assets=("a-00000001",))
                _equal(_rollups(remembering, query), _rollups(reading, query))
        got = _rollups(remembering)
        _equal(got, _rollups(reading))
        _equal(got, _from_raw(remembering))
        assert remembering.rollups.written.samples_kept == 0  # a full refresh folded everything kept
    finally:
        remembering.close()
        reading.close()


def _stream(n: int, start_s: int = 0) -> list[Sample]:
    t0 = 1_767_571_200 * 10**9 + start_s * 10**9
    out = []
    for i in range(n):
        out.append(Sample(t0 + i * 10**9, "a-00000001", "press", "energy_kwh", float(i)))
        out.append(Sample(t0 + i * 10**9, "a-00000001", "press", "state", "running" if i % 3 else "idle"))
        out.append(Sample(t0 + i * 10**9, "a-00000001", "press", "power_kw", float(i % 7)))
    return out


def _count_read_backs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    read_back = duck_rollups.fold

    def counted(carries, new):  # type: ignore[no-untyped-def]
        calls.append(new.height)
        return read_back(carries, new)

    monkeypatch.setattr(duck_rollups, "fold", counted)
    return calls


def test_a_refresh_after_the_first_reads_nothing_back(
    stores: tuple[DuckDBStore, DuckDBStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    remembering, _ = stores
    calls = _count_read_backs(monkeypatch)
    samples = _stream(60)
    remembering.write(M1, samples[:60])
    remembering.refresh_rollups()  # no carry yet: recomputed from raw
    for i in range(60, len(samples), 30):
        remembering.write(M1, samples[i : i + 30])
    assert remembering.rollups.written.samples_kept == len(samples) - 60
    remembering.refresh_rollups()
    assert calls == []
    assert remembering.rollups.written.samples_kept == 0
    _equal(_rollups(remembering), _from_raw(remembering))


def test_a_batch_sent_again_is_read_back_once_and_counts_once(
    stores: tuple[DuckDBStore, DuckDBStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    remembering, _ = stores
    samples = _stream(40)
    remembering.write(M1, samples[:30])
    remembering.refresh_rollups()
    calls = _count_read_backs(monkeypatch)
    remembering.write(M1, samples[30:60])
    remembering.write(M1, samples[30:90])  # the first half is in the file already
    remembering.refresh_rollups()
    # read back (the 60 new samples and the 3 at the folded time): the memory does not hold what the file holds
    assert calls == [63]
    _equal(_rollups(remembering), _from_raw(remembering))
    remembering.write(M1, samples[90:])
    remembering.refresh_rollups()
    assert calls == [63]  # refreshed since: from memory again
    _equal(_rollups(remembering), _from_raw(remembering))


def _count_recomputes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    recompute = duck_rollups.RollupKeeper._recompute

    def counted(self, cur, keys, start):  # type: ignore[no-untyped-def]
        calls.append(len(keys))
        return recompute(self, cur, keys, start)

    monkeypatch.setattr(duck_rollups.RollupKeeper, "_recompute", counted)
    return calls


@pytest.mark.parametrize("member_of_other", [M1, M2])
def test_a_refresh_of_some_assets_folds_them_and_leaves_the_others_kept(
    stores: tuple[DuckDBStore, DuckDBStore], monkeypatch: pytest.MonkeyPatch, member_of_other: str
) -> None:
    remembering, _ = stores
    other = [Sample(s.ts, "a-00000002", s.asset_class, s.signal, s.value) for s in _stream(40)]
    mine = _stream(40)
    remembering.write(M1, mine[:30])
    remembering.write(member_of_other, other[:30])
    remembering.refresh_rollups()
    read_backs, recomputes = _count_read_backs(monkeypatch), _count_recomputes(monkeypatch)
    remembering.write(M1, mine[30:60])
    remembering.write(member_of_other, other[30:60])
    some = _rollups(remembering, RollupQuery(assets=("a-00000002",)))
    assert set(some["asset"].to_list()) == {"a-00000002"}
    remembering.write(M1, mine[60:])
    remembering.write(member_of_other, other[60:])
    _equal(_rollups(remembering), _from_raw(remembering))
    assert (read_backs, recomputes) == ([], [])  # the asset refreshed first is not folded twice either


def test_a_full_memory_reads_back_instead(monkeypatch: pytest.MonkeyPatch) -> None:
    store = DuckDBStore(":memory:")
    store.rollups.written = WrittenBatches(max_samples=100)
    try:
        samples = _stream(100)
        store.write(M1, samples[:30])
        store.refresh_rollups()
        calls = _count_read_backs(monkeypatch)
        for i in range(30, len(samples), 30):  # 270 samples: more than the memory keeps
            store.write(M1, samples[i : i + 30])
        store.refresh_rollups()
        assert calls == [273]  # and the 3 samples at the folded time
        _equal(_rollups(store), _from_raw(store))
    finally:
        store.close()


def test_a_deleted_member_leaves_nothing_kept(stores: tuple[DuckDBStore, DuckDBStore]) -> None:
    remembering, _ = stores
    samples = _stream(20)
    remembering.write(M1, samples[:30])
    remembering.refresh_rollups()
    remembering.write(M1, samples[30:])
    remembering.delete_member(M1)
    assert remembering.rollups.written.samples_kept == 0
    assert _rollups(remembering).height == 0


@pytest.mark.parametrize("failure", [duck_rollups.duckdb.IOException("disk full"), RuntimeError("a bug")])
def test_a_flush_that_fails_midway_stores_nothing_of_any_member_and_the_retry_stores_it_once(
    monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    """One transaction per flush: a failure after the samples' insert (here in the rollups' bookkeeping) leaves
    neither member's samples in the file nor in the keeper's memory, and the store takes the same flush again."""
    store = DuckDBStore(":memory:")
    t0 = 1_790_000_000 * 10**9
    flush = {
        M1: [Sample(t0 + i * 10**9, "a-000001", "cnc_milling", "power_kw", float(i), 0) for i in range(5)],
        M2: [Sample(t0 + i * 10**9, "a-000002", "cnc_milling", "parts_total", i, 0) for i in range(5)],
    }
    keeper = store._rollups
    update = keeper.update

    def failing(cur: object, table: str) -> None:
        update(cur, table)  # type: ignore[arg-type]
        raise failure

    monkeypatch.setattr(keeper, "update", failing)
    with pytest.raises(Exception) as raised:
        store.write_many(flush)
    assert raised.value is failure or raised.value.__cause__ is failure
    assert _stored_raw(store).height == 0
    assert keeper.written.samples_kept == 0
    monkeypatch.setattr(keeper, "update", update)
    assert store.write_many(flush) == 10
    raw = _stored_raw(store)
    assert raw.height == 10 and sorted(set(raw["member"].to_list())) == [M1, M2]
    _equal(_rollups(store), _from_raw(store))
