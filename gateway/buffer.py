"""Store-and-forward disk buffer: SQLite in WAL mode, bounded by size, so that neither memory nor data
is lost while the uplink is down (the overflow policy decides what goes when the bound is reached).

Samples are collected in memory and written every flush interval (under a second by default), so a
hard kill loses at most one interval of source data; callers that must lose nothing (the MQTT
source) pass ``on_durable`` and acknowledge upstream only when it fires.

Samples accumulate in one *open chunk* row that is rewritten at every flush; it is *sealed* into
a finished wire payload (with its batch id) when it holds ``batch_size`` samples or is
``batch_time_s`` old. A sealed chunk is one uplink message and is deleted only after the broker
acknowledged it, so a chunk resent after a crash carries the same batch id and the same samples.

The watermarks (newest source timestamp sent per series) are written with the samples of each flush, in the
same transaction, through the watermark log of :mod:`.marklog`.

:meth:`DiskBuffer.take` drains in order but, while a backlog older than ``live_window_s`` is being
sent, alternates with the newest chunks so that live data is not starved behind the backlog.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec

from wire.model import Sample

from .errors import DiskBufferError
from .marklog import SCHEMA as MARKLOG_SCHEMA
from .marklog import Marks, WatermarkLog

log = logging.getLogger(__name__)

Sealer = Callable[[str, list[Sample]], bytes]
Overflow = Literal["drop_oldest", "drop_newest"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    sealed INTEGER NOT NULL,
    n INTEGER NOT NULL,
    data BLOB NOT NULL
);
"""
_COLS = "id, batch_id, n, created_ns, data"
_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(list[Sample])


@dataclass(frozen=True, slots=True)
class Chunk:
    """A sealed chunk: one wire payload."""

    id: int
    batch_id: str
    n: int
    created_ns: int
    payload: bytes


class DiskBuffer:
    """Synchronous core; use from one thread (the gateway's event loop)."""

    def __init__(
        self,
        path: Path,
        *,
        seal: Sealer,
        max_bytes: int = 512 * 1024 * 1024,
        overflow: Overflow = "drop_oldest",
        batch_size: int = 2000,
        batch_time_s: float = 1.0,
        live_window_s: float = 10.0,
    ) -> None:
        self.path = path
        self._seal = seal
        self.max_bytes = max_bytes
        self.overflow = overflow
        self.batch_size = batch_size
        self.batch_time_ns = int(batch_time_s * 1e9)
        self.live_window_ns = int(live_window_s * 1e9)
        self._db: sqlite3.Connection | None = None
        self._pending: list[Sample] = []
        self._callbacks: list[Callable[[], None]] = []
        self._open: list[Sample] = []
        self._open_id: int | None = None
        self._open_created = 0
        self._marks: WatermarkLog | None = None
        self.dropped: Counter[str] = Counter()
        self.written = 0
        self.sent = 0
        #: chunks sealed since open (the uplink has news only when this moved)
        self.sealed = 0

    # -- lifecycle -----------------------------------------------------------------------------

    def open(self) -> DiskBuffer:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA + MARKLOG_SCHEMA)
        except sqlite3.Error as exc:
            raise DiskBufferError(f"cannot open the disk buffer {self.path}: {exc}") from exc
        self._db = db
        self._marks = WatermarkLog(db, self.path)
        self._recover()
        return self

    def close(self) -> None:
        if self._db is not None:
            self.flush(seal_all=True)
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()
            self._db = None
            self._marks = None

    def __enter__(self) -> DiskBuffer:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise DiskBufferError("the disk buffer is not open")
        return self._db

    def _recover(self) -> None:
        """Seal chunks left open by a crash."""
        db = self.db
        rows = db.execute("SELECT id, batch_id, data FROM chunks WHERE sealed = 0 ORDER BY id").fetchall()
        if rows:
            db.execute("BEGIN")
            for cid, batch_id, data in rows:
                samples = _dec.decode(data)
                if samples:
                    db.execute(
                        "UPDATE chunks SET sealed = 1, data = ?, n = ? WHERE id = ?",
                        (self._seal(batch_id, samples), len(samples), cid),
                    )
                else:
                    db.execute("DELETE FROM chunks WHERE id = ?", (cid,))
            db.execute("COMMIT")
            log.info("disk buffer: sealed %d chunk(s) left open by the previous run", len(rows))

    # -- depth -----------------------------------------------------------------------------------

    def _depth(self) -> tuple[int, int]:
        """Samples and bytes in the buffer, read from the chunks themselves (also inside a transaction),
        so that no counter can drift from what is on disk."""
        if self._db is None:
            return 0, 0
        n, size = self._db.execute("SELECT coalesce(sum(n), 0), coalesce(sum(length(data)), 0) FROM chunks").fetchone()
        return int(n), int(size)

    @property
    def depth_samples(self) -> int:
        return self._depth()[0]

    @property
    def depth_bytes(self) -> int:
        return self._depth()[1]

    # -- writing ---------------------------------------------------------------------------------

    def add(self, samples: Iterable[Sample], on_durable: Callable[[], None] | None = None) -> None:
        """Queue samples for the next flush; ``on_durable`` runs once they are on disk (or dropped)."""
        self._pending.extend(samples)
        if on_durable is not None:
            self._callbacks.append(on_durable)

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def unsealed(self) -> int:
        """Samples not yet in a sealed chunk: pending in memory plus those in the open chunk."""
        return len(self._pending) + len(self._open)

    def flush(self, *, now_ns: int | None = None, seal_all: bool = False, marks: Marks | None = None) -> int:
        """Write pending samples (and watermarks), seal full or old chunks, enforce the size bound.

        Returns the number of samples written.
        """
        now = now_ns if now_ns is not None else time.time_ns()
        pending, self._pending = self._pending, []
        callbacks, self._callbacks = self._callbacks, []
        if pending and self.overflow == "drop_newest" and self.depth_bytes >= self.max_bytes:
            self.dropped["overflow"] += len(pending)
            log.warning("disk buffer full (%d bytes): dropped %d new samples", self.depth_bytes, len(pending))
            pending = []
        db = self.db
        changed = False
        snapshot = (
            list(self._open),
            self._open_id,
            self._open_created,
        )
        try:
            if pending:
                if not self._open:
                    self._open_created = now
                self._open.extend(pending)
                changed = True
            aged = now - self._open_created >= self.batch_time_ns
            if self._open and (seal_all or aged or len(self._open) >= self.batch_size):
                changed = True
            if changed or marks:
                db.execute("BEGIN")
                while len(self._open) >= self.batch_size:
                    head, self._open = self._open[: self.batch_size], self._open[self.batch_size :]
                    self._write_sealed(head)
                if self._open and (seal_all or now - self._open_created >= self.batch_time_ns):
                    self._write_sealed(self._open)
                    self._open = []
                if self._open:
                    self._write_open(now)
                if marks:
                    self._marklog.append(marks)
                db.execute("COMMIT")
                if marks:
                    self._marklog.committed(marks)
        except Exception as exc:  # SQLite's, or the sealer's: never leave the transaction open
            with contextlib.suppress(sqlite3.Error):
                if db.in_transaction:
                    db.execute("ROLLBACK")
            # nothing was written: keep the samples and callbacks for the next attempt
            (self._open, self._open_id, self._open_created) = snapshot
            self._pending[:0] = pending
            self._callbacks[:0] = callbacks
            if not isinstance(exc, sqlite3.Error):
                raise
            raise DiskBufferError(f"cannot write the disk buffer {self.path}: {exc}", retryable=True) from exc
        self.written += len(pending)
        # the depth grows only by a write (read from the chunks: a sum over the table, not for an idle flush)
        if changed and self.overflow == "drop_oldest" and self.depth_bytes > self.max_bytes:
            self._drop_oldest()
        for cb in callbacks:
            try:
                cb()
            except Exception:
                log.exception("disk buffer: durable callback failed")
        return len(pending)

    @property
    def _marklog(self) -> WatermarkLog:
        if self._marks is None:
            raise DiskBufferError("the disk buffer is not open")
        return self._marks

    def watermarks(self) -> Marks:
        """Watermarks saved by earlier runs: newest source timestamp per (asset pseudonym, signal)."""
        return self._marklog.marks()

    def _write_open(self, now: int) -> None:
        data = _enc.encode(self._open)
        if self._open_id is None:
            cur = self.db.execute(
                "INSERT INTO chunks (batch_id, created_ns, sealed, n, data) VALUES (?, ?, 0, ?, ?)",
                (uuid.uuid4().hex, self._open_created, len(self._open), data),
            )
            self._open_id = cur.lastrowid
        else:
            self.db.execute("UPDATE chunks SET n = ?, data = ? WHERE id = ?", (len(self._open), data, self._open_id))

    def _write_sealed(self, samples: list[Sample]) -> None:
        db = self.db
        self.sealed += 1
        if self._open_id is not None:
            (batch_id,) = db.execute("SELECT batch_id FROM chunks WHERE id = ?", (self._open_id,)).fetchone()
            payload = self._seal(batch_id, samples)
            db.execute(
                "UPDATE chunks SET sealed = 1, n = ?, data = ? WHERE id = ?", (len(samples), payload, self._open_id)
            )
        else:
            batch_id = uuid.uuid4().hex
            payload = self._seal(batch_id, samples)
            db.execute(
                "INSERT INTO chunks (batch_id, created_ns, sealed, n, data) VALUES (?, ?, 1, ?, ?)",
                (batch_id, self._open_created, len(samples), payload),
            )
        self._open_id = None

    def _drop_oldest(self) -> None:
        db = self.db
        dropped = 0
        excess = self.depth_bytes - self.max_bytes
        while excess > 0:
            row = db.execute("SELECT id, n, length(data) FROM chunks WHERE sealed = 1 ORDER BY id LIMIT 1").fetchone()
            if row is None:
                break
            db.execute("DELETE FROM chunks WHERE id = ?", (row[0],))
            excess -= int(row[2])
            dropped += int(row[1])
        if dropped:
            self.dropped["overflow"] += dropped
            log.warning("disk buffer over %d bytes: dropped the %d oldest samples", self.max_bytes, dropped)

    # -- draining --------------------------------------------------------------------------------

    def take(self, limit: int, exclude: Iterable[int] = (), *, now_ns: int | None = None) -> list[Chunk]:
        """Up to ``limit`` sealed chunks not in ``exclude``: oldest first, alternating with live ones."""
        if limit <= 0:
            return []
        now = now_ns if now_ns is not None else time.time_ns()
        ex = sorted(set(exclude))
        marks = ",".join("?" * len(ex))
        where = f"sealed = 1 AND id NOT IN ({marks})" if ex else "sealed = 1"
        db = self.db
        query = f"SELECT {_COLS} FROM chunks WHERE {where} ORDER BY id LIMIT ?"
        head = [Chunk(*r) for r in db.execute(query, (*ex, limit))]
        if not head or head[0].created_ns >= now - self.live_window_ns:
            return head
        live_from = now - self.live_window_ns
        tail = [
            Chunk(*r)
            for r in db.execute(
                f"SELECT {_COLS} FROM chunks WHERE {where} AND created_ns >= ? ORDER BY id DESC LIMIT ?",
                (*ex, live_from, (limit + 1) // 2),
            )
        ][::-1]
        out: list[Chunk] = []
        seen: set[int] = set()
        for pair in zip(tail + [None] * len(head), head, strict=False):
            for c in pair:
                if c is not None and c.id not in seen and len(out) < limit:
                    seen.add(c.id)
                    out.append(c)
        return out

    def ack(self, chunk_id: int) -> None:
        """The broker acknowledged this chunk: delete it."""
        try:
            row = self.db.execute("DELETE FROM chunks WHERE id = ? RETURNING n, length(data)", (chunk_id,)).fetchone()
        except sqlite3.Error as exc:
            raise DiskBufferError(f"cannot update the disk buffer {self.path}: {exc}") from exc
        if row is not None:
            self.sent += int(row[0])

    def oldest_ns(self) -> int | None:
        row = self.db.execute("SELECT created_ns FROM chunks ORDER BY id LIMIT 1").fetchone()
        return None if row is None else int(row[0])

    def sealed_count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM chunks WHERE sealed = 1").fetchone()[0])
