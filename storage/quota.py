"""How many distinct assets and gateways each member has sent since the ingestor started, within a limit (pure).

A member's login may publish anything below its own topics, so one member could send samples of a million invented
asset pseudonyms, or under a million gateway pseudonyms. Each new asset is a set of new series in the store (one
per signal and quality), a rollup carry in memory and cached series keys; each new gateway a state of the gateway
tracker and a label of the ingest metrics. The hub would run out of memory, or its store out of series, for every
member. So each member gets a limit on both (``ingest.max_assets_per_member``, ``ingest.max_gateways_per_member``):
a batch (or status message) that would pass it is refused whole, with the reason, and dead-lettered like any other
refusal; what the member sent before, and its batches of known assets, are taken as usual.

The count starts at each start of the ingestor, and each ingest worker counts what it receives: a member reaches at
most the limit per worker and per start.
"""

from __future__ import annotations

from collections.abc import Callable, Collection


class MemberQuota:
    def __init__(self, *, max_assets: int, max_gateways: int) -> None:
        self.max_assets = max_assets
        self.max_gateways = max_gateways
        self._assets: dict[str, set[str]] = {}
        self._gateways: dict[str, set[str]] = {}

    def admit(self, member: str, gateway: str, assets: Collection[str] = ()) -> str | None:
        """Record ``gateway`` and ``assets`` as sent by ``member``, or, if that would pass a limit, record nothing and
        return why."""
        gateways = self._gateways.get(member)
        if gateways is None:
            gateways = self._gateways[member] = set()
        if gateway not in gateways and len(gateways) >= self.max_gateways:
            return (
                f"member {member} sends under more than {self.max_gateways} gateways "
                "(ingest.max_gateways_per_member); messages of its known gateways are taken"
            )
        known = self._assets.get(member)
        if known is None:
            known = self._assets[member] = set()
        new = [a for a in assets if a not in known]
        if len(known) + len(new) > self.max_assets:
            return (
                f"member {member} sends more than {self.max_assets} distinct assets (ingest.max_assets_per_member): "
                f"this batch adds {len(new)} to the {len(known)} known; batches of known assets are taken"
            )
        known.update(new)
        gateways.add(gateway)
        return None

    def forget(self, keep: Callable[[str], bool]) -> None:
        """Drop the counts of members ``keep`` says no to (suspended, removed, deleted)."""
        for counts in (self._assets, self._gateways):
            for member in [m for m in counts if not keep(m)]:
                del counts[member]

    def counts(self, member: str) -> tuple[int, int]:
        """(distinct assets, distinct gateways) of ``member`` so far."""
        return len(self._assets.get(member, ())), len(self._gateways.get(member, ()))
