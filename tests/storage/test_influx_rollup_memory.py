"""The InfluxDB rollup keeper folds the batches its own process wrote without reading them back, and reads back
what another process (a second ingest worker) wrote; the rollups equal a full recompute either way."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from polars.testing import assert_frame_equal

from storage import InfluxStore, RollupQuery, open_store
from storage.influx.batchlog import BatchLog
from storage.influx.lineprotocol import SampleEncoder
from storage.rollups import compute_rollups
from testkit.servers import InfluxServer
from wire import Sample

from .conftest import influx_settings
from .test_contract import A1, A2, M1, T0, H, S, _live_stream, _stored_raw, smp

pytestmark = pytest.mark.integration


@pytest.fixture
def stores(influx_server: InfluxServer) -> Iterator[tuple[Any, Any, list[int]]]:
    settings = influx_settings(influx_server)
    first, second = open_store(settings), open_store(settings)  # two workers on one database
    assert isinstance(first, InfluxStore) and isinstance(second, InfluxStore)
    read_back: list[int] = []  # samples read back from InfluxDB per fold or recompute
    read_new, recompute = first.rollups._read_new, first.rollups._recompute

    def counting_read(folding: Any) -> Any:
        frame = read_new(folding)
        read_back.append(frame.height)
        return frame

    def counting_recompute(bound: Any, start: int) -> None:
        read_back.append(-1)  # a recompute reads the raw window back
        recompute(bound, start)

    first.rollups._read_new = counting_read  # type: ignore[method-assign]
    first.rollups._recompute = counting_recompute  # type: ignore[method-assign]
    try:
        yield first, second, read_back
    finally:
        first.close()
        second.close()


def _batches(samples: list[Sample], per_batch: int) -> list[list[Sample]]:
    """Consecutive batches of ``per_batch`` timestamps each (a batch never splits one timestamp's samples)."""
    times = sorted({s.ts for s in samples})
    out: list[list[Sample]] = []
    for i in range(0, len(times), per_batch):
        lo, hi = times[i], times[min(i + per_batch, len(times)) - 1]
        out.append([s for s in samples if lo <= s.ts <= hi])
    return out


def test_own_batches_are_folded_from_memory_and_others_read_back(stores: tuple[Any, Any, list[int]]) -> None:
    first, second, read_back = stores
    batches = _batches(_live_stream((A1, A2), 2400, T0 + H - 1200 * S), 6)
    half = len(batches) // 2
    first.write(M1, batches[0])
    first.refresh_rollups()
    assert read_back == [-1]  # no carry yet: the first refresh recomputes from raw
    for batch in batches[1:half]:
        first.write(M1, batch)
        first.refresh_rollups()
    assert read_back == [-1], "the keeper read back samples its own process had written"
    assert first.rollups.log.batches == 0, "folded batches are forgotten"
    assert first.rollups.log.pending() == [], "handled markers are forgotten"
    assert_frame_equal(
        first.query_rollups(RollupQuery()), compute_rollups(_stored_raw(first)), check_exact=False, abs_tol=1e-6
    )
    # from here on another worker writes every other batch: those assets are read back, the result stays exact
    for i, batch in enumerate(batches[half:]):
        (second if i % 2 else first).write(M1, batch)
        first.refresh_rollups()
    assert any(n > 0 for n in read_back[1:]), "the other worker's batches were not read back"
    assert_frame_equal(
        first.query_rollups(RollupQuery()), compute_rollups(_stored_raw(first)), check_exact=False, abs_tol=1e-6
    )


def test_an_asset_a_limited_refresh_handled_is_folded_from_its_own_batches_only(
    stores: tuple[Any, Any, list[int]],
) -> None:
    """A member's request refreshes only its assets: a batch that also holds other assets stays pending for them.
    The next refresh folds those assets from it, and the refreshed asset only from its newer batches: its samples
    in the older batch were folded already (taken again, they would send it to a recompute from raw)."""
    first, _, read_back = stores
    batches = _batches(_live_stream((A1, A2), 2400, T0 + H - 1200 * S), 6)
    first.write(M1, batches[0])
    first.refresh_rollups()
    assert read_back == [-1]  # no carry yet: the first refresh recomputes from raw
    for i, batch in enumerate(batches[1:8], 1):
        first.write(M1, batch)
        if i % 2:  # a request for A1 alone, which refreshes A1 only; A2 stays pending in the same batch
            first.query_rollups(RollupQuery(assets=(A1,), refresh_max_assets=50))
        else:
            first.refresh_rollups()
    first.refresh_rollups()
    assert read_back == [-1], "an asset was read back or recomputed although all its batches were in memory"
    assert first.rollups.log.batches == 0
    assert_frame_equal(
        first.query_rollups(RollupQuery()), compute_rollups(_stored_raw(first)), check_exact=False, abs_tol=1e-6
    )


def test_a_redelivered_batch_is_counted_once(stores: tuple[Any, Any, list[int]]) -> None:
    first, _, read_back = stores
    batches = _batches(_live_stream((A1,), 600, T0 + H - 300 * S), 6)
    first.write(M1, batches[0])
    first.refresh_rollups()
    first.write(M1, batches[1])
    first.write(M1, batches[1])  # the broker delivered the batch again before its ack arrived
    first.refresh_rollups()
    assert read_back == [-1], "the fold did not take the remembered batches"
    assert_frame_equal(
        first.query_rollups(RollupQuery()), compute_rollups(_stored_raw(first)), check_exact=False, abs_tol=1e-6
    )


def test_markers_dropped_from_memory_are_read_back(stores: tuple[Any, Any, list[int]]) -> None:
    first, _, read_back = stores
    first.rollups.log = BatchLog(max_markers=3)  # two assets a batch: the second batch overflows it
    batches = _batches(_live_stream((A1, A2), 1200, T0 + H - 600 * S), 6)
    first.write(M1, batches[0])
    first.refresh_rollups()
    assert read_back == [-1]
    for batch in batches[1:4]:
        first.write(M1, batch)
    assert first.rollups.log.drops > 0, "the markers were not dropped"
    first.refresh_rollups()  # reads this writer's markers (and then their samples) back from InfluxDB
    assert read_back[1:] and read_back[1] > 0, "the dropped batches were not read back"
    assert not first.rollups.log.must_read_back(first.rollups.log.drops)
    assert_frame_equal(
        first.query_rollups(RollupQuery()), compute_rollups(_stored_raw(first)), check_exact=False, abs_tol=1e-6
    )


def test_markers_without_a_writer_tag_are_read(stores: tuple[Any, Any, list[int]]) -> None:
    """Markers as written before they carried the writer (a hub upgraded while markers were pending)."""
    first, second, _ = stores
    batches = _batches(_live_stream((A1,), 600, T0 + H - 300 * S), 6)
    first.write(M1, batches[0])
    first.refresh_rollups()
    later = [s for b in batches[1:] for s in b]
    encoder = SampleEncoder()
    second.write_lines(encoder.encode(M1, later), rp=second.raw_rp)
    now = time.time_ns()
    lo, hi = min(s.ts for s in later), max(s.ts for s in later)
    marker = f"rollup_dirty,asset={A1},asset_class=press,member={M1} hi_ns={hi}i,lo_ns={lo}i,written_ns={now}i {now}"
    second.write_lines(marker.encode(), rp=second.raw_rp)
    assert first.refresh_rollups() == 1
    assert_frame_equal(
        first.query_rollups(RollupQuery()), compute_rollups(_stored_raw(first)), check_exact=False, abs_tol=1e-6
    )


def test_a_process_that_never_refreshed_reports_the_as_of_of_the_one_that_did(
    stores: tuple[Any, Any, list[int]],
) -> None:
    """An API-only process reads the rows the ingest process keeps: its answers say how fresh they are."""
    first, second, _ = stores
    first.write(M1, _live_stream((A1, A2), 600, T0 + H - 300 * S))
    # a bounded query with more pending assets than its bound reads the rows as kept, refreshing nothing
    assert second.rollups.query(RollupQuery(refresh_max_assets=0)).as_of_ns is None, "nothing refreshed yet"
    before = time.time_ns()
    first.refresh_rollups()
    after = time.time_ns()
    kept = second.rollups.query(RollupQuery(refresh_max_assets=0))
    assert kept.as_of_ns is not None, "the rows are kept, but the answer does not say as of when"
    assert before <= kept.as_of_ns <= after, "the as_of is not that of the refresh that kept the rows"
    assert kept.frame.height > 0


def test_a_backfill_another_worker_wrote_is_recomputed_over_its_window(stores: Any) -> None:
    """The batches of another writer are read back: one that lies wholly before the folded time gets one window
    over its range (its signals taken from what was read), one that reaches past it a recompute up to now."""
    first, second, _ = stores

    def _equal(store: InfluxStore) -> None:
        got = store.query_rollups(RollupQuery())
        assert_frame_equal(got, compute_rollups(_stored_raw(store)), check_exact=False, abs_tol=1e-6)

    day = [
        smp(T0 + i * 20 * S, A1, sig, v)
        for i in range(6 * 180)
        for sig, v in (("energy_kwh", i * 0.5), ("power_kw", 1.0 * (i % 7)))
    ]
    first.write(M1, day)
    first.refresh_rollups()
    backfill = [smp(T0 + 2 * H + 15 * S, A1, "energy_kwh", 999.0), smp(T0 + 2 * H + 35 * S, A1, "power_kw", 9.0)]
    second.write(M1, backfill)
    first.refresh_rollups()
    assert first.late_recomputes == {"window": 1}
    _equal(first)
    second.write(M1, [smp(T0 + 3 * H + 15 * S, A1, "power_kw", 9.0), smp(T0 + 6 * H, A1, "power_kw", 2.0)])
    first.refresh_rollups()
    assert first.late_recomputes == {"window": 1, "full": 1}
    _equal(first)
