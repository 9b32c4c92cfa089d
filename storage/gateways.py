"""Which gateways are online, when each was last heard of, and whether its clock runs ahead (pure bookkeeping)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class GatewayState:
    member: str
    gateway: str
    online: bool = False
    #: ns: last status message (birth or death) and last message of any kind
    last_status_ns: int | None = None
    last_seen_ns: int | None = None
    births: int = 0
    deaths: int = 0
    #: s: the gateway's clock at sealing its last batch (``sent_ns``) less the hub's at receiving it. Transit and
    #: buffering only make it smaller, so a positive figure is a lower bound of how far the gateway's clock leads.
    clock_ahead_s: float | None = None


#: From how far ahead a gateway's clock is reported (health reason), well before its samples reach the hub's
#: allowance (``ingest.max_ahead_s``, 600 s by default) and are refused.
CLOCK_AHEAD_WARN_S = 60.0


class GatewayTracker:
    def __init__(self) -> None:
        self._states: dict[tuple[str, str], GatewayState] = {}

    def _get(self, member: str, gateway: str) -> GatewayState:
        key = (member, gateway)
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = GatewayState(member=member, gateway=gateway)
        return state

    def status(self, member: str, gateway: str, online: bool, now_ns: int) -> GatewayState:
        """A birth (``online``) or death message arrived."""
        state = self._get(member, gateway)
        state.online = online
        state.last_status_ns = now_ns
        state.last_seen_ns = now_ns
        if online:
            state.births += 1
        else:
            state.deaths += 1
        return state

    def seen(self, member: str, gateway: str, now_ns: int, sent_ns: int | None = None) -> GatewayState:
        """Data arrived (a batch sealed at ``sent_ns`` by the gateway's clock): the gateway is alive even if its
        birth message was missed."""
        state = self._get(member, gateway)
        state.last_seen_ns = now_ns
        state.online = True
        if sent_ns is not None:
            state.clock_ahead_s = (sent_ns - now_ns) / 1e9
        return state

    def clock_warnings(self, threshold_s: float = CLOCK_AHEAD_WARN_S) -> list[str]:
        """One line per gateway whose last batch was sealed more than ``threshold_s`` ahead of the hub's clock."""
        return [
            f"gateway {s.gateway} of {s.member}: its clock runs at least {s.clock_ahead_s:.0f} s ahead of the hub's "
            "(the sealing time of its last batch); samples stamped beyond ingest.max_ahead_s are refused: check "
            "its time synchronisation (NTP)"
            for s in self._states.values()
            if s.clock_ahead_s is not None and s.clock_ahead_s > threshold_s
        ]

    def forget(self, keep: Callable[[str], bool]) -> list[tuple[str, str]]:
        """Drop the states of members ``keep`` says no to (suspended, removed, deleted); return their (member,
        gateway) pairs."""
        gone = [key for key in self._states if not keep(key[0])]
        for key in gone:
            del self._states[key]
        return gone

    def snapshot(self) -> list[GatewayState]:
        return [GatewayState(**{f: getattr(s, f) for f in GatewayState.__slots__}) for s in self._states.values()]

    def online_count(self) -> int:
        return sum(1 for s in self._states.values() if s.online)
