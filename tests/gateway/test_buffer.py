"""Disk buffer: sealing by size and time, crash recovery, overflow policies, live data not starved."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
from collections.abc import Iterable
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.mqtt import MqttError
from gateway.buffer import Chunk, DiskBuffer
from gateway.config import UplinkSettings
from gateway.errors import DiskBufferError
from gateway.marklog import MARKLOG_COMPACT_ROWS
from gateway.uplink import Uplink
from wire import Batch, Codec, Sample, decode_batch

T0 = 1_790_000_000 * 10**9
codec = Codec()


def _seal(batch_id: str, samples: list[Sample]) -> bytes:
    return codec.encode(Batch(1, batch_id, "m-0a1b2c", "g-0123456789abcdef", "k1", T0, samples))


def _samples(n: int, start: int = 0, *, noisy: bool = False) -> list[Sample]:
    rng = random.Random(start)
    return [
        Sample(
            T0 + (start + i) * 10**6,
            "a-0123456789abcdef",
            "press",
            "power_kw",
            float(start + i) + (rng.random() if noisy else 0.0),
        )
        for i in range(n)
    ]


_MARK_KEYS = [(f"a-{i:016x}", sig) for i in range(3) for sig in ("power_kw", "state")]


def _buffer(path: Path, **kw: object) -> DiskBuffer:
    return DiskBuffer(path, seal=_seal, batch_size=100, batch_time_s=1.0, live_window_s=10.0, **kw).open()  # type: ignore[arg-type]


def test_seals_by_size_and_age_and_acks_delete(tmp_path: Path) -> None:
    b = _buffer(tmp_path / "b.sqlite")
    durable: list[int] = []
    b.add(_samples(250), on_durable=lambda: durable.append(1))
    assert durable == []
    assert b.flush(now_ns=T0) == 250
    assert durable == [1]
    chunks = b.take(10, now_ns=T0)
    assert [c.n for c in chunks] == [100, 100]  # 50 stay in the open chunk
    assert b.flush(now_ns=T0 + 2 * 10**9) == 0  # now old enough: sealed
    chunks = b.take(10, now_ns=T0)
    assert [c.n for c in chunks] == [100, 100, 50]
    values = [s.value for c in chunks for s in decode_batch(c.payload).samples]
    assert values == [float(i) for i in range(250)]
    assert len({c.batch_id for c in chunks}) == 3
    for c in chunks:
        b.ack(c.id)
    assert b.depth_samples == 0 and b.take(10) == [] and b.sent == 250
    b.close()


def test_open_chunk_survives_a_crash_and_is_sealed_with_its_batch_id(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    b = _buffer(path)
    b.add(_samples(30))
    b.flush(now_ns=T0)
    batch_id = sqlite3.connect(path).execute("SELECT batch_id FROM chunks").fetchone()[0]
    # no close(): the process dies here
    b2 = _buffer(path)
    chunks = b2.take(10, now_ns=T0)
    assert [(c.batch_id, c.n) for c in chunks] == [(batch_id, 30)]
    assert b2.depth_samples == 30
    assert decode_batch(chunks[0].payload).batch_id == batch_id
    b2.close()


def test_overflow_drop_oldest_keeps_the_newest(tmp_path: Path) -> None:
    b = _buffer(tmp_path / "b.sqlite", max_bytes=64 * 1024, overflow="drop_oldest")
    for i in range(60):
        b.add(_samples(100, start=i * 100, noisy=True))
        b.flush(now_ns=T0)
    assert b.depth_bytes <= 64 * 1024
    assert b.dropped["overflow"] > 0
    chunks = b.take(1000, now_ns=T0)
    assert b.dropped["overflow"] + sum(c.n for c in chunks) == 6000
    assert decode_batch(chunks[-1].payload).samples[-1].ts == T0 + 5999 * 10**6


def test_overflow_drop_newest_keeps_the_oldest(tmp_path: Path) -> None:
    b = _buffer(tmp_path / "b.sqlite", max_bytes=64 * 1024, overflow="drop_newest")
    for i in range(60):
        b.add(_samples(100, start=i * 100, noisy=True))
        b.flush(now_ns=T0)
    chunks = b.take(1000, now_ns=T0)
    assert decode_batch(chunks[0].payload).samples[0].ts == T0
    assert b.dropped["overflow"] + sum(c.n for c in chunks) == 6000
    assert b.dropped["overflow"] > 0


def test_backlog_drains_in_order_alternating_with_live_data(tmp_path: Path) -> None:
    b = _buffer(tmp_path / "b.sqlite")
    for i in range(10):  # an hour-old backlog
        b.add(_samples(100, start=i * 100))
        b.flush(now_ns=T0)
    now = T0 + 3600 * 10**9
    for i in range(10, 13):  # live data
        b.add(_samples(100, start=i * 100))
        b.flush(now_ns=now)
    chunks = b.take(6, now_ns=now)
    firsts = [decode_batch(c.payload).samples[0].value for c in chunks]
    backlog = [v for v in firsts if v < 1000]
    live = [v for v in firsts if v >= 1000]
    assert backlog == sorted(backlog) and backlog[0] == 0.0  # in order from the oldest
    assert len(live) == 3  # live data is interleaved, not starved behind the backlog
    assert b.take(20, exclude=[c.id for c in chunks], now_ns=now)[0].id not in {c.id for c in chunks}


def test_watermarks_are_saved_with_the_samples_and_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    b = _buffer(path)
    b.add(_samples(3))
    b.flush(now_ns=T0, marks={("a-0123456789abcdef", "power_kw"): T0 + 2 * 10**6})
    b.flush(now_ns=T0, marks={("a-0123456789abcdef", "power_kw"): T0 + 1})  # never moves back
    assert _buffer(path).watermarks() == {("a-0123456789abcdef", "power_kw"): T0 + 2 * 10**6}


@settings(max_examples=40, deadline=None)
@given(
    flushes=st.lists(
        st.tuples(st.dictionaries(st.sampled_from(_MARK_KEYS), st.integers(0, 10**6), max_size=4), st.booleans()),
        max_size=2 * MARKLOG_COMPACT_ROWS + 10,
    )
)
def test_watermarks_are_the_newest_mark_of_every_flush_across_compactions_and_restarts(
    tmp_path_factory: pytest.TempPathFactory, flushes: list[tuple[dict[tuple[str, str], int], bool]]
) -> None:
    path = tmp_path_factory.mktemp("marks") / "b.sqlite"
    expected: dict[tuple[str, str], int] = {}
    b = _buffer(path)
    for marks, restart in flushes:
        b.flush(now_ns=T0, marks=marks)
        for key, ts in marks.items():
            expected[key] = max(ts, expected.get(key, ts))
        if restart:
            b.close()
            b = _buffer(path)
        assert b.watermarks() == expected
    b.close()


@settings(max_examples=50, deadline=None)
@given(marks=st.dictionaries(st.tuples(st.text(max_size=20), st.text(max_size=20)), st.integers(0, 2**63 - 1)))
def test_a_log_row_holds_each_mark_as_asset_signal_and_ts(
    tmp_path_factory: pytest.TempPathFactory, marks: dict[tuple[str, str], int]
) -> None:
    b = _buffer(tmp_path_factory.mktemp("row") / "b.sqlite")
    b.flush(now_ns=T0, marks=marks)
    if marks:  # the row's text as it always was: a JSON array of [asset, signal, ts] in the order of the flush
        (data,) = b.db.execute("SELECT data FROM marklog").fetchone()
        assert data == msgspec.json.encode([[a, sig, ts] for (a, sig), ts in marks.items()]).decode()
    b.close()


def test_the_watermark_log_is_folded_into_the_table_and_stays_short(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    b = _buffer(path)
    n = 2 * MARKLOG_COMPACT_ROWS + 7
    for i in range(n):
        b.flush(now_ns=T0, marks={_MARK_KEYS[i % 2]: T0 + i, _MARK_KEYS[2]: T0 - i})
    assert b.db.execute("SELECT count(*) FROM marklog").fetchone()[0] == 7
    assert b.db.execute("SELECT count(*) FROM watermarks").fetchone()[0] == 3
    b.close()
    assert _buffer(path).watermarks() == {_MARK_KEYS[0]: T0 + n - 1, _MARK_KEYS[1]: T0 + n - 2, _MARK_KEYS[2]: T0}


def test_a_failed_write_keeps_the_samples_for_the_next_flush(tmp_path: Path) -> None:
    b = _buffer(tmp_path / "b.sqlite")
    b.add(_samples(30))
    b.flush(now_ns=T0)
    durable: list[int] = []
    b.add(_samples(20, start=30), on_durable=lambda: durable.append(1))
    b.db.execute("CREATE TEMP TRIGGER full BEFORE UPDATE ON chunks BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    try:
        b.flush(now_ns=T0)
    except DiskBufferError as exc:
        assert exc.retryable
    else:
        raise AssertionError("the write should have failed")
    assert durable == [] and b.pending == 20 and b.depth_samples == 30
    b.db.execute("DROP TRIGGER full")
    assert b.flush(now_ns=T0, seal_all=True) == 20
    assert durable == [1]
    chunks = b.take(10, now_ns=T0)
    assert [s.value for c in chunks for s in decode_batch(c.payload).samples] == [float(i) for i in range(50)]


def test_a_sealer_that_fails_leaves_no_transaction_open_and_the_next_flush_writes_everything(tmp_path: Path) -> None:
    """An exception that is not SQLite's (here the sealer's) used to leave the flush's transaction open: every
    later flush then failed with "cannot start a transaction within a transaction"."""
    failing = [True]

    def seal(batch_id: str, samples: list[Sample]) -> bytes:
        if failing[0]:
            raise OverflowError("cannot encode")
        return _seal(batch_id, samples)

    b = DiskBuffer(tmp_path / "b.sqlite", seal=seal, batch_size=100, batch_time_s=1.0).open()
    durable: list[int] = []
    b.add(_samples(30), on_durable=lambda: durable.append(1))
    with pytest.raises(OverflowError):
        b.flush(now_ns=T0, seal_all=True)
    assert not b.db.in_transaction
    assert durable == [] and b.pending == 30 and b.depth_samples == 0
    failing[0] = False
    b.add(_samples(5, start=30))
    assert b.flush(now_ns=T0, seal_all=True) == 35
    assert durable == [1]
    chunks = b.take(10, now_ns=T0)
    assert [s.value for c in chunks for s in decode_batch(c.payload).samples] == [float(i) for i in range(35)]


class _Session:
    """What the uplink uses of an MQTT session: connected, and publish (failing while ``failing`` > 0)."""

    def __init__(self) -> None:
        self.connected = asyncio.Event()
        self.connected.set()
        self.published: list[bytes] = []
        self.failing = 0

    def publish(self, topic: str, payload: bytes, *, qos: int = 1) -> int:
        if self.failing:
            self.failing -= 1
            raise MqttError("not connected")
        self.published.append(payload)
        return len(self.published)


async def test_the_uplink_publishes_every_sealed_chunk_once_and_takes_only_after_news(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = _buffer(tmp_path / "b.sqlite")
    up = Uplink(UplinkSettings(max_inflight=4), b, member="m-0a1b2c", gateway="g-0123456789abcdef")
    session = _Session()
    up.session = session  # type: ignore[assignment]
    takes: list[int] = []
    take = b.take

    def counted(limit: int, exclude: Iterable[int] = (), *, now_ns: int | None = None) -> list[Chunk]:
        chunks = take(limit, exclude, now_ns=now_ns)
        takes.append(len(chunks))
        return chunks

    monkeypatch.setattr(b, "take", counted)
    b.add(_samples(100))
    b.flush(now_ns=T0)
    task = asyncio.create_task(up.run())
    await asyncio.sleep(0.05)
    assert len(session.published) == 1
    assert takes == [1]  # fewer than it could take: no second take before news
    session.failing = 1  # a failed publish with slots left is retried at once
    b.add(_samples(200, start=100))
    b.flush(now_ns=T0)
    up.wake()
    await asyncio.sleep(0.05)
    assert takes == [1, 2, 2]
    for mid in range(1, 4):
        up._on_publish(mid, 0)
    await asyncio.sleep(0.05)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert [decode_batch(p).samples[0].value for p in session.published] == [0.0, 100.0, 200.0]
    assert b.sealed_count() == 0 and up.batches_sent == 3
    b.close()
