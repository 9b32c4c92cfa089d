"""``metalldaten simulate``: only the demo's simulated factories, for real gateways to read.

The OPC UA factories listen on ``--host`` at ``--base-port + i`` (factory i); the
others publish Sparkplug B to the MQTT broker at ``--mqtt-host:--mqtt-port`` under
``spBv1.0/plant/DDATA/hall{i}/{serial}``. docker-compose's ``simulator`` profile runs
this next to a gateway configured by ``deploy/gateway-sim.toml``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

import typer

from .machines import factory_machines
from .mqtt_factory import MqttFactory
from .opcua_factory import OpcUaFactory
from .replay import FactoryMachines
from .scenario import FACTORIES


async def simulate(*, host: str, base_port: int, mqtt_host: str, mqtt_port: int, seed: int) -> None:
    """Live values only (no history: a real gateway started beside it reads from now on)."""
    async with contextlib.AsyncExitStack() as stack, asyncio.TaskGroup() as tg:
        for i, f in enumerate(FACTORIES, start=1):
            machines = FactoryMachines(
                factory_machines(i, list(f.classes), seed), seed=seed + i, pattern=f.work, history=None
            )
            if f.transport == "opcua":
                opc = OpcUaFactory(
                    name=f.name,
                    port=base_port + i,
                    namespace=f"urn:demo:factory{i}:line-controller",
                    machines=machines,
                    host=host,
                )
                await stack.enter_async_context(opc.running())
                tg.create_task(opc.run(lambda: True, lambda: 0))
                typer.echo(f"factory {i}: {opc.endpoint}")
            else:
                mq = MqttFactory(
                    name=f.name, node=f"hall{i}", broker_port=mqtt_port, broker_host=mqtt_host, machines=machines
                )
                await stack.enter_async_context(mq.running())
                tg.create_task(mq.run(lambda: True, lambda: 0))
                typer.echo(f"factory {i}: mqtt://{mqtt_host}:{mqtt_port} {mq.topic('+')} (Sparkplug B)")


def simulate_command(
    host: Annotated[str, typer.Option(help="Address the OPC UA servers listen on.")] = "127.0.0.1",
    base_port: Annotated[int, typer.Option(help="Factory i listens on base-port + i.")] = 4840,
    mqtt_host: Annotated[str, typer.Option(help="The MQTT factory's local broker.")] = "127.0.0.1",
    mqtt_port: Annotated[int, typer.Option(help="Port of that broker.")] = 1883,
    seed: Annotated[int, typer.Option(help="Seed of the simulated machines.")] = 7,
) -> None:
    """Run the demo's simulated factories (OPC UA servers, Sparkplug B publishers), live only, until Ctrl-C."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(simulate(host=host, base_port=base_port, mqtt_host=mqtt_host, mqtt_port=mqtt_port, seed=seed))
