"""``metalldaten gateway preview``: what would leave the factory, beside what it came from.

Reads the live sources for a while without buffering or sending anything, and prints per
(asset, local signal) the last raw reading in clear next to the sample the hub would receive,
or the reason the policy drops it. The output stays on the member's screen.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from wire.model import Quality, Sample

from .config import GatewaySettings
from .normalise import Normaliser, Reading
from .policy import compile_policy
from .pseudonymise import Pseudonymiser, load_key
from .sources import SourceContext, build_sources


class RecordingNormaliser(Normaliser):
    """A normaliser that remembers, per (asset, local signal), the last reading and its outcome."""

    seen: dict[tuple[str, str], tuple[Reading, Sample | str]]

    def normalise_value(
        self, asset_id: str, local: str, v: Any, status: int, source_ns: int | None, recv_ns: int
    ) -> Sample | str:
        # every reading passes here, whether a source hands over a Reading or its fields
        result = super().normalise_value(asset_id, local, v, status, source_ns, recv_ns)
        if not hasattr(self, "seen"):
            self.seen = {}
        self.seen[(asset_id, local)] = (Reading(asset_id, local, v, recv_ns, source_ns, None, status), result)
        return result


def _discard(samples: list[Sample], on_durable: Any = None) -> None:
    return None  # preview never buffers, and never acknowledges MQTT messages


def format_rows(source: str, seen: dict[tuple[str, str], tuple[Reading, Sample | str]]) -> list[str]:
    rows = []
    for (asset, signal), (r, result) in sorted(seen.items()):
        clear = f"{source}  {asset} / {signal} = {r.value!r}"
        if isinstance(result, str):
            rows.append(f"{clear}  ->  DROPPED ({result})")
        else:
            q = Quality(result.quality).label
            rows.append(
                f"{clear}  ->  {result.asset} [{result.asset_class}] {result.signal} = {result.value!r}"
                f" ({q}, ts {result.ts})"
            )
    return rows


async def run_preview(settings: GatewaySettings, seconds: float) -> list[str]:
    key = load_key(settings.identity.key_file)
    pseudonymiser = Pseudonymiser(key, length=settings.identity.pseudonym_hex)  # no journal: nothing leaves
    policy = compile_policy(settings.policy)
    classes = settings.asset_classes()
    ctx = SourceContext(
        normaliser=lambda: RecordingNormaliser(policy, pseudonymiser, asset_classes=classes),
        sink=_discard,
        pki_dir=settings.buffer.path.parent / "pki",
        client_id=lambda name: f"mdh-preview-{pseudonymiser.gateway(name)}",
    )
    runners = build_sources(settings, ctx)
    tasks = [asyncio.create_task(r.run()) for r in runners]
    try:
        await asyncio.sleep(seconds)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
    rows = [f"gateway {settings.identity.gateway_name!r} -> {pseudonymiser.gateway(settings.identity.gateway_name)}"]
    for r in runners:
        assert isinstance(r.normaliser, RecordingNormaliser)
        seen = getattr(r.normaliser, "seen", {})
        state = "connected" if r.connected else f"not connected ({r.last_error or 'no answer'})"
        rows.append(f"source {r.name}: {state}, {len(seen)} (asset, signal) pairs seen")
        rows += format_rows(r.name, seen)
    return rows
