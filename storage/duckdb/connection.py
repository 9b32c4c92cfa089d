"""The one DuckDB connection of an embedded store, shared by the store and its rollup keeper.

DuckDB connections are not shared between threads: readers take their own cursor
(:meth:`DuckDBConnection.cursor`); writers take the connection's lock for the
length of their transaction (:meth:`DuckDBConnection.locked`), so that writes,
rollup recomputes and retention never interleave.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from ..errors import StoreUnavailable


class DuckDBConnection:
    """A DuckDB file (``":memory:"`` for a throw-away one) with the lock its writers share."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(self.path)
        except duckdb.Error as exc:
            raise StoreUnavailable(f"cannot open DuckDB file {self.path}: {exc}") from exc
        self._lock = threading.Lock()

    def execute(self, sql: str, params: list[Any] | None = None) -> duckdb.DuckDBPyConnection:
        """Run one statement on the shared connection (schema set-up and bulk loading)."""
        return self._con.execute(sql, params) if params is not None else self._con.execute(sql)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor for one reading thread; close it after use."""
        return self._con.cursor()

    @contextmanager
    def locked(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor used under the writers' lock (for one transaction), closed afterwards."""
        with self._lock:
            cur = self._con.cursor()
            try:
                yield cur
            finally:
                cur.close()

    @contextmanager
    def exclusive(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The shared connection itself under the writers' lock (statements outside a transaction)."""
        with self._lock:
            yield self._con

    def close(self) -> None:
        with self._lock:
            self._con.close()


def in_clause(column: str, values: tuple[str, ...] | None, where: list[str], params: list[Any]) -> None:
    """Append ``column IN (?, …)`` to ``where`` (``FALSE`` for an empty tuple; nothing for ``None``)."""
    if values is None:
        return
    if not values:
        where.append("FALSE")
        return
    where.append(f"{column} IN ({', '.join('?' for _ in values)})")
    params.extend(values)
