"""``metalldaten gateway check``: configuration, key, buffer folder, and reachability of every endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import os

from asyncua.client.client import Client

from .config import GatewaySettings, MqttSource
from .errors import GatewayError
from .mqtt_session import MqttEndpoint, MqttSession
from .opcua_security import apply_security
from .opcua_source import OpcuaSourceRunner
from .uplink import Uplink

Result = tuple[str, bool, str]


async def _mqtt(endpoint: MqttEndpoint, within_s: float = 5.0) -> Result:
    session = MqttSession(endpoint, asyncio.get_running_loop())
    async with session:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(session.connected.wait(), within_s)
        ok = session.connected.is_set()
    return endpoint.name, ok, "connected" if ok else (session.last_error or "no answer")


async def _opcua(runner: OpcuaSourceRunner) -> Result:
    cfg = runner.cfg
    client = Client(cfg.url, timeout=cfg.timeout_s)
    try:
        await apply_security(client, cfg, runner._pki_dir)
        await asyncio.wait_for(client.connect(), cfg.timeout_s * 2)
    except (OSError, TimeoutError, GatewayError, Exception) as exc:
        return f"opcua {cfg.name}", False, f"cannot connect: {type(exc).__name__}"
    try:
        bindings = await runner.resolve(client)
    finally:
        await client.disconnect()
    ok = runner.unresolved == 0
    return f"opcua {cfg.name}", ok, f"{len(bindings)} of {len(cfg.nodes)} nodes resolved"


def _source_endpoint(mc: MqttSource) -> MqttEndpoint:
    return MqttEndpoint(
        name=f"mqtt {mc.name}",
        host=mc.host,
        port=mc.port,
        client_id=f"mdh-check-{os.getpid()}",
        username=mc.username,
        password=mc.password.get_secret_value() if mc.password else None,
        tls=mc.ca_file is not None,
        ca_file=mc.ca_file,
        backoff_min_s=1,
        backoff_max_s=1,
    )


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
        results.append(await _mqtt(_source_endpoint(mc)))
    up = Uplink(settings.uplink, gw.buffer, member=gw.member, gateway=gw.gateway_pseudonym).endpoint()
    check_ep = MqttEndpoint(**{**up.__dict__, "client_id": up.client_id + "-check", "backoff_max_s": 1.0})
    _, ok, detail = await _mqtt(check_ep)
    results.append(("uplink", ok, detail))
    return results
