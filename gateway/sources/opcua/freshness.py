"""Is a subscription still delivering? Compare what arrived with a periodic read of the same nodes. Pure.

A monitored item can stop delivering while the session looks healthy: a server whose queues overflow and
never recover, an item the server dropped, a sampling thread that hangs. The subscription then simply goes
quiet, which looks exactly like a machine whose value does not change. The only way to tell them apart is
to ask the server: every ``audit_interval_s`` the source reads the Value attribute of every subscribed node
and hands each source timestamp to :meth:`Freshness.audit`:

- the read's timestamp is not newer than the newest one that arrived: the item is ``fresh`` (and the
  current value is *confirmed*, so the heartbeat may repeat it as good);
- it is newer: the notification may still be on its way, so the item is only ``pending``;
- it was already newer at the previous audit and that value has still not arrived a whole audit interval
  later: the item is ``stalled``. The source then sends the value it read and recreates the item.

Comparing the server's timestamps with the server's timestamps (never with the gateway's clock) makes this
immune to clock skew between machine and gateway; waiting one audit interval makes it immune to slow
publish responses under load.

An item that delivered since the previous audit (and owes no pending value) is alive by the subscription's own
word and is not read (:meth:`Freshness.delivered`): under a steady flow of changes the audit reads only the
quiet items, so its cost follows the number of quiet nodes, not the number of nodes. An item that stops right
after a delivery is read at the next audit, so a stall is found within two or three audit intervals.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass
from typing import Literal

from ...normalise_batch import Change

Verdict = Literal["fresh", "pending", "stalled", "unknown"]


@dataclass(slots=True)
class _Item:
    arrived_ns: int | None = None  # newest source timestamp the subscription delivered
    pending_ns: int | None = None  # a newer source timestamp the server had at the previous audit
    moved: bool = False  # delivered since the previous audit


class Freshness:
    """Per client handle: the newest source timestamp delivered, and the verdict of each audit."""

    def __init__(self) -> None:
        self._items: dict[int, _Item] = {}

    def arrived(self, handle: int, source_ns: int | None) -> None:
        """A value of ``handle`` with ``source_ns`` arrived (:meth:`arrived_all` of one change)."""
        self.arrived_all((handle,), ((handle, None, 0, source_ns, None),))

    def arrived_all(self, bound: Container[int], changes: Iterable[Change]) -> None:
        """:meth:`arrived` for every change (client handle, value, status, source ns, server ns) whose handle is in
        ``bound``, in one loop (a notification holds up to thousands)."""
        items = self._items
        for handle, _value, _status, source_ns, _server_ns in changes:
            if source_ns is None or handle not in bound:
                continue
            item = items.get(handle)
            if item is None:
                items[handle] = _Item(arrived_ns=source_ns, moved=True)
            elif item.arrived_ns is None or source_ns > item.arrived_ns:
                item.arrived_ns = source_ns
                item.moved = True

    def delivered(self, handle: int) -> bool:
        """True if the item delivered a newer value since the previous audit and owes no pending one: it is
        ``fresh`` without a read (and counts as audited). False: read it and call :meth:`audit`."""
        item = self._items.get(handle)
        if item is None or not item.moved:
            return False
        item.moved = False
        if item.pending_ns is not None:
            assert item.arrived_ns is not None  # moved implies a delivery
            if item.arrived_ns < item.pending_ns:
                return False
            item.pending_ns = None
        return True

    def audit(self, handle: int, server_ns: int | None) -> Verdict:
        """The verdict for one item, given the source timestamp a read of its node returned now."""
        if server_ns is None:
            return "unknown"  # a server without source timestamps cannot be audited this way
        item = self._items.setdefault(handle, _Item())
        item.moved = False
        if item.arrived_ns is not None and server_ns <= item.arrived_ns:
            item.pending_ns = None
            return "fresh"
        if item.pending_ns is not None and (item.arrived_ns is None or item.arrived_ns < item.pending_ns):
            item.pending_ns = None
            return "stalled"
        item.pending_ns = server_ns
        return "pending"

    def forget(self, handle: int) -> None:
        """Start over for an item that was recreated."""
        item = self._items.get(handle)
        if item is not None:
            item.pending_ns = None
