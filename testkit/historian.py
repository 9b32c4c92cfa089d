"""A machine server whose variables the server historises, so that a client can read gaps back (HistoryRead).

:class:`HistorisedMachineServer` is a :class:`~testkit.machines.MachineServer` whose nodes (all, or those in
``historised``) have the ``Historizing`` attribute set and the HistoryRead access bit, with asyncua's
in-memory history storage behind them. Every :meth:`write` is stored in the history as it is written
(not sampled by the server's own subscription), so a test knows exactly which changes the history holds;
:meth:`prefill` adds history without changing the current value. ``response_size`` bounds the values
per HistoryRead response, so that reading a gap takes continuation points.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from asyncua import ua
from asyncua.server.history import HistoryDict

from .machines import MachineServer


def _data_value(value: Any, vtype: ua.VariantType, ts: datetime, status: int = 0) -> ua.DataValue:
    stamp = cast(ua.DateTime, ts)
    return ua.DataValue(
        Value=ua.Variant(value, vtype),
        StatusCode=ua.StatusCode(ua.UInt32(status)),
        SourceTimestamp=stamp,
        ServerTimestamp=stamp,
    )


@dataclass
class HistorisedMachineServer(MachineServer):
    response_size: int = 50
    historised: set[tuple[str, str]] | None = None
    #: a server that claims to historise but refuses every HistoryRead (a fault of the whole request)
    refuse_reads: bool = False
    history_reads: int = 0
    storage: HistoryDict = field(default_factory=HistoryDict)

    async def start(self, *, reorder: bool = False) -> None:
        await super().start(reorder=reorder)
        assert self.server is not None
        self.storage = _CountingHistory(self, self.response_size)
        self.server.iserver.history_manager.set_storage(self.storage)
        for key, node in self.nodes.items():
            if self.historised is not None and key not in self.historised:
                continue
            await node.write_attribute(ua.AttributeIds.Historizing, ua.DataValue(True))
            await node.set_attr_bit(ua.AttributeIds.AccessLevel, ua.AccessLevel.HistoryRead)
            await node.set_attr_bit(ua.AttributeIds.UserAccessLevel, ua.AccessLevel.HistoryRead)
            await self.storage.new_historized_node(node.nodeid, None)

    def is_historised(self, machine: str, sig: str) -> bool:
        return self.historised is None or (machine, sig) in self.historised

    async def write(
        self, machine: str, sig: str, value: Any, *, status: int = 0, ts: datetime | None = None
    ) -> datetime:
        ts = await super().write(machine, sig, value, status=status, ts=ts)
        if self.is_historised(machine, sig):
            await self.storage.save_node_value(
                self.nodes[(machine, sig)].nodeid, _data_value(value, self._vtype(sig, value), ts, status)
            )
        return ts

    async def prefill(self, machine: str, sig: str, values: Iterable[tuple[datetime, Any]]) -> None:
        """Add ``(timestamp, value)`` pairs to the history (oldest first) without writing the variable."""
        nodeid = self.nodes[(machine, sig)].nodeid
        for ts, value in values:
            await self.storage.save_node_value(nodeid, _data_value(value, self._vtype(sig, value), ts))

    def _vtype(self, sig: str, value: Any) -> ua.VariantType:
        return self.types.get(sig) or (ua.VariantType.Double if isinstance(value, float) else ua.VariantType.Int64)


class _CountingHistory(HistoryDict):
    """asyncua's in-memory history, counting the read requests (one per node and continuation)."""

    def __init__(self, owner: HistorisedMachineServer, response_size: int) -> None:
        super().__init__(max_history_data_response_size=response_size)
        self._owner = owner

    async def read_node_history(
        self, node_id: ua.NodeId, start: datetime | None, end: datetime | None, nb_values: int
    ) -> tuple[list[ua.DataValue], datetime | None]:
        self._owner.history_reads += 1
        if self._owner.refuse_reads:
            raise ua.UaStatusCodeError(ua.StatusCodes.BadHistoryOperationUnsupported)
        return await super().read_node_history(node_id, start, end, nb_values)
