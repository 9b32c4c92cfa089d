"""The InfluxDB store (1.8, 2.x, 3.x): the store, its rollup keeper, InfluxQL and the line-protocol encoder."""

from .connection import InfluxConnection
from .rollups import InfluxRollupKeeper
from .store import InfluxStore, status_error

__all__ = ["InfluxConnection", "InfluxRollupKeeper", "InfluxStore", "status_error"]
