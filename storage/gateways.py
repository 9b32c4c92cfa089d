"""Which gateways are online and when each was last heard of (pure bookkeeping)."""

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

    def seen(self, member: str, gateway: str, now_ns: int) -> GatewayState:
        """Data arrived: the gateway is alive even if its birth message was missed."""
        state = self._get(member, gateway)
        state.last_seen_ns = now_ns
        state.online = True
        return state

    def forget(self, keep: Callable[[str], bool]) -> int:
        """Drop the states of members ``keep`` says no to (suspended, removed, deleted); return how many."""
        gone = [key for key in self._states if not keep(key[0])]
        for key in gone:
            del self._states[key]
        return len(gone)

    def snapshot(self) -> list[GatewayState]:
        return [GatewayState(**{f: getattr(s, f) for f in GatewayState.__slots__}) for s in self._states.values()]

    def online_count(self) -> int:
        return sum(1 for s in self._states.values() if s.online)
