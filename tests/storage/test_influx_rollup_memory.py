"""The InfluxDB rollup keeper folds the batches its own process wrote without reading them back, and reads back
what another process (a second ingest worker) wrote; the rollups equal a full recompute either way."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from polars.testing import assert_frame_equal

from storage import InfluxStore, RollupQuery, open_store
from storage.rollups import compute_rollups
from testkit.servers import InfluxServer
from wire import Sample

from .conftest import influx_settings
from .test_contract import A1, A2, M1, T0, H, S, _live_stream, _stored_raw

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
    assert first.rollups._written == {}, "folded batches are forgotten"
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
