"""The embedded store on one DuckDB file: the store, its connection and its rollup keeper."""

from ..base import samples_frame
from .connection import DuckDBConnection
from .rollups import RollupKeeper
from .store import DuckDBStore

__all__ = ["DuckDBConnection", "DuckDBStore", "RollupKeeper", "samples_frame"]
