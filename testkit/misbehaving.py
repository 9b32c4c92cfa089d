"""asyncua servers built to misbehave the way servers in the field do, for the gateway's staleness tests.

:class:`MisbehavingServer` is a :class:`~testkit.machines.MachineServer` that can, on command:

* ``stall(machine, signal)``: keep the monitored items of a variable but stop notifying them, while the
  value goes on changing (what a server with an overflowing, never-recovering queue looks like from the
  client: the session is healthy, the item exists, nothing arrives). Items created afterwards for the same
  node are notified again, as on a real server after the client recreates them;
* ``overflow(machine, signal, value)``: deliver a value whose status carries the Overflow info bits, the
  way a server reports that it discarded values from an item's queue;
* ``stop()`` (inherited): go away while clients are connected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from asyncua import ua

from .machines import MachineServer

#: StatusCode info bits DataValue + Overflow (OPC UA Part 4, 7.39): Good, but values were discarded.
OVERFLOW = 0x0000_0480


@dataclass
class MisbehavingServer(MachineServer):
    def _attribute(self, machine: str, sig: str) -> Any:
        assert self.server is not None, "the server is not running"
        node = self.server.iserver.aspace._nodes[self.nodes[(machine, sig)].nodeid]
        return node.attributes[ua.AttributeIds.Value]

    def stall(self, machine: str, sig: str) -> int:
        """Stop notifying the variable's current monitored items; returns how many were stalled.

        The items stay registered (so that deleting them works as on any server); their callbacks are
        replaced by one that drops every change."""
        callbacks = self._attribute(machine, sig).datachange_callbacks
        for handle in callbacks:
            callbacks[handle] = _dropped
        return len(callbacks)

    async def overflow(self, machine: str, sig: str, value: Any) -> None:
        await self.write(machine, sig, value, status=OVERFLOW)


async def _dropped(handle: int, value: Any, error: Any = None) -> None:
    return None
