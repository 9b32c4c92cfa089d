"""``metalldaten gateway check``: configuration, key, buffer folder, and reachability of every endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import os

from asyncua.client.client import Client

from core.mqtt import MqttClient, MqttEndpoint

from .config import GatewaySettings
from .errors import GatewayError
from .sources.opcua import OpcuaSourceRunner
from .sources.opcua.resolve import resolve
from .sources.opcua.security import apply_security

Result = tuple[str, bool, str]
#: A check retries a refused connection within its few seconds, not after the configured back-off.
_QUICK = {"backoff_min_s": 1.0, "backoff_max_s": 1.0}
#: Missing nodes named in the check's output (the rest are counted).
_SHOW = 5


async def _mqtt(endpoint: MqttEndpoint, within_s: float = 5.0) -> Result:
    session = MqttClient(endpoint)
    async with session:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(session.connected.wait(), within_s)
        ok = session.connected.is_set()
    return endpoint.name, ok, "connected" if ok else (session.last_error or "no answer")


async def _opcua(runner: OpcuaSourceRunner) -> Result:
    """Connect, resolve every configured node and check that the server has it (``nsu=`` ids included)."""
    cfg = runner.cfg
    name = f"opcua {cfg.name}"
    client = Client(cfg.url, timeout=cfg.timeout_s)
    try:
        await apply_security(client, cfg, runner.pki_dir)
        await asyncio.wait_for(client.connect(), cfg.timeout_s * 2)
    except (OSError, TimeoutError, GatewayError, Exception) as exc:
        return name, False, f"cannot connect: {type(exc).__name__}"
    try:
        res = await resolve(client, cfg)
    finally:
        with contextlib.suppress(Exception):
            await client.disconnect()
    detail = f"{len(res.bindings)} of {len(cfg.nodes)} nodes exist on the server"
    if res.missing:
        shown = [f"{node} ({why})" for node, why in list(res.missing.items())[:_SHOW]]
        more = len(res.missing) - len(shown)
        detail += "; missing: " + ", ".join(shown) + (f" and {more} more" if more > 0 else "")
    return name, not res.missing, detail


async def run_check(settings: GatewaySettings) -> list[Result]:
    from .runner import Gateway

    results: list[Result] = [("configuration", True, "valid")]
    try:
        gw = Gateway(settings)
    except GatewayError as exc:
        return [*results, ("key file", False, str(exc))]
    results.append(("key file", True, f"key id {gw.key.key_id}; gateway pseudonym {gw.gateway_pseudonym}"))
    folder = settings.buffer.path.parent
    writable = folder.is_dir() and os.access(folder, os.W_OK)
    results.append(("buffer folder", writable, str(folder) if writable else f"{folder} is not a writable folder"))
    for s in gw.sources:
        if isinstance(s, OpcuaSourceRunner):
            results.append(await _opcua(s))
    for mc in settings.mqtt:
        # Its own client id, a clean session: the check must not take over the running gateway's session.
        ep = mc.endpoint(f"mdh-check-{os.getpid()}")
        probe = ep.replace(name=f"source {mc.name}", clean_session=True, manual_ack=False, **_QUICK)
        _, ok, detail = await _mqtt(probe)
        results.append((f"mqtt {mc.name}", ok, detail))
    up = settings.uplink.endpoint(member=gw.member, gateway=gw.gateway_pseudonym)
    _, ok, detail = await _mqtt(up.replace(client_id=up.client_id + "-check", **_QUICK))
    results.append(("uplink", ok, detail))
    return results
