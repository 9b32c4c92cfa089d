"""The watermark log of the disk buffer: the newest source timestamp sent per series, kept in the buffer file.

A mark is the newest source timestamp the gateway sent of one (asset pseudonym, canonical signal); a reading
not newer than it is dropped as replayed, also after a restart, so the marks must reach the disk in the same
transaction as the samples they describe. With thousands of series changing between two flushes, one upsert
per series per flush was a fifth of the gateway's CPU; instead each flush appends its marks as one JSON row
of the ``marklog`` table (:meth:`WatermarkLog.append`, inside the flush's transaction), and every
:data:`MARKLOG_COMPACT_ROWS` rows the marks are folded into the ``watermarks`` table in a transaction of their
own, so that table and log together always hold every mark. The newest mark per series of the rows not yet
folded is kept in memory from the start (the log is parsed once, at open), so folding reads nothing back.

A mark never moves back: a flush that brings an older mark for a series leaves the newer one in place.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterator
from operator import add

import msgspec

log = logging.getLogger(__name__)

__all__ = ["MARKLOG_COMPACT_ROWS", "SCHEMA", "Marks", "WatermarkLog"]

#: (asset pseudonym, canonical signal) -> newest source timestamp (ns)
Marks = dict[tuple[str, str], int]

SCHEMA = """
CREATE TABLE IF NOT EXISTS watermarks (
    asset TEXT NOT NULL,
    signal TEXT NOT NULL,
    ts INTEGER NOT NULL,
    PRIMARY KEY (asset, signal)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS marklog (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    data TEXT NOT NULL
);
"""
#: Watermark log rows folded into the ``watermarks`` table at once (about 10 s of flushes by default).
MARKLOG_COMPACT_ROWS = 100
_json = msgspec.json.Encoder()
#: The watermark log's marks as rows (each log row is a JSON array of [asset, signal, ts]); read at open.
_LOGGED_MARKS = (
    "SELECT json_extract(j.value, '$[0]') AS asset, json_extract(j.value, '$[1]') AS signal, "
    "max(json_extract(j.value, '$[2]')) AS ts FROM marklog, json_each(marklog.data) AS j GROUP BY 1, 2"
)
_FOLD = (
    "INSERT INTO watermarks (asset, signal, ts) VALUES (?, ?, ?) "
    "ON CONFLICT (asset, signal) DO UPDATE SET ts = max(ts, excluded.ts)"
)


def _rows(marks: Marks) -> Iterator[tuple[str, str, int]]:
    """``(asset, signal, ts)`` of every mark, joined in C (``key + (ts,)``): a flush brings a mark for nearly every
    series that changed, and a comprehension unpacking each key was a third of writing them."""
    return map(add, marks, zip(marks.values()))


class WatermarkLog:
    """The marks of one open buffer file (its connection; the tables exist, see :data:`SCHEMA`)."""

    def __init__(self, db: sqlite3.Connection, path: object) -> None:
        self._db = db
        self._path = path
        self._rows = int(db.execute("SELECT count(*) FROM marklog").fetchone()[0])
        #: the marks in the log, newest per series (kept as the log is written, so folding reads nothing back)
        self._unfolded: Marks = {(a, sig): int(ts) for a, sig, ts in db.execute(_LOGGED_MARKS)}

    def append(self, marks: Marks) -> None:
        """Append the marks of a flush as one row; call inside the flush's transaction, then :meth:`committed`."""
        data = _json.encode(list(_rows(marks))).decode()  # TEXT: SQLite reads a BLOB as JSONB
        self._db.execute("INSERT INTO marklog (data) VALUES (?)", (data,))

    def committed(self, marks: Marks) -> None:
        """The flush that appended ``marks`` committed; every :data:`MARKLOG_COMPACT_ROWS` rows, fold the log."""
        unfolded = self._unfolded
        newest = unfolded.get
        for key, ts in marks.items():  # a mark never moves back
            if ts > newest(key, ts - 1):
                unfolded[key] = ts
        self._rows += 1
        if self._rows >= MARKLOG_COMPACT_ROWS:
            self._fold()

    def _fold(self) -> None:
        db = self._db
        try:
            db.execute("BEGIN")
            db.executemany(_FOLD, _rows(self._unfolded))
            db.execute("DELETE FROM marklog")
            db.execute("COMMIT")
        except sqlite3.Error as exc:  # the log still holds every mark: folding is tried again at the next flush
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            log.warning("disk buffer %s: cannot fold the watermark log: %s", self._path, exc)
            return
        self._unfolded = {}
        self._rows = 0

    def marks(self) -> Marks:
        """Every mark saved: the table's, overlaid by the newer ones of the log."""
        marks = {(a, s): int(ts) for a, s, ts in self._db.execute("SELECT asset, signal, ts FROM watermarks")}
        for key, ts in self._unfolded.items():  # the log, read once at open and kept since
            if ts > marks.get(key, ts - 1):
                marks[key] = ts
        return marks
