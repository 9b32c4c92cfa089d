"""The demo's cast: six simulated factories, their members, and the settings of every part.

Pure: given a work folder, ports and a seed, it returns the settings objects for
the gateways and the hub and the trustee's register. The factory names are the
clear identities that stay inside each factory; only pseudonyms reach the hub.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.configfile import settings_from_dict
from core.register import Member, Register
from gateway.config import GatewaySettings
from metalldaten.hub import HubSettings

from .machines import MachineSpec, factory_machines

#: Local signal names of the simulated controllers -> how the member's policy shares them.
SHARED_SIGNALS: dict[str, dict[str, Any]] = {
    "ActivePower": {"canonical": "power_kw", "round": 2},
    "EnergyMeter": {"canonical": "energy_kwh", "round": 4},
    "PartCounter": {"canonical": "parts_total"},
    "ScrapCounter": {"canonical": "parts_scrap_total"},
    "SpindleTemp": {"canonical": "temperature_c", "bin": 0.5},
    "SpindleSpeed": {"canonical": "spindle_speed_rpm", "round": 0},
    "State": {"canonical": "state"},
}
#: Read from the machines too, but not in the allow-list: they must never leave the factory.
PRIVATE_SIGNALS = ("OperatorBadge", "SerialNumber")

MODEL_CLASSES = {
    "DMU 50": "cnc_milling",
    "CTX beta 800": "cnc_turning",
    "BSTA 510": "press",
    "TruLaser 3030": "laser_cutting",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Factory:
    name: str  # clear company name: stays in the factory
    group: str  # corporate group (the trustee's register knows it under a code)
    region: str
    classes: tuple[str, ...]
    transport: str  # "opcua" | "mqtt"
    emission_factor: float


FACTORIES: tuple[Factory, ...] = (
    Factory(
        name="Schmiedewerk Lüdenscheid GmbH",
        group="grp-01",
        region="DE-NW",
        classes=("cnc_milling", "cnc_milling", "press", "cnc_turning"),
        transport="opcua",
        emission_factor=0.38,
    ),
    Factory(
        name="Drehteile Olpe KG",
        group="grp-02",
        region="DE-NW",
        classes=("cnc_turning", "cnc_turning", "cnc_milling"),
        transport="opcua",
        emission_factor=0.36,
    ),
    Factory(
        name="Umformtechnik Iserlohn AG",
        group="grp-03",
        region="DE-NW",
        classes=("press", "press", "cnc_milling"),
        transport="opcua",
        emission_factor=0.41,
    ),
    Factory(
        name="Lasertechnik Siegen GmbH",
        group="grp-04",
        region="DE-NW",
        classes=("laser_cutting", "laser_cutting", "cnc_milling"),
        transport="opcua",
        emission_factor=0.30,
    ),
    # Same corporate group as Drehteile Olpe: the two count as one contributor in benchmarks.
    Factory(
        name="Präzisionsteile Arnsberg GmbH",
        group="grp-02",
        region="DE-NW",
        classes=("cnc_milling", "cnc_milling", "cnc_turning"),
        transport="opcua",
        emission_factor=0.36,
    ),
    Factory(
        name="Metallbau Meschede GmbH",
        group="grp-05",
        region="DE-NW",
        classes=("cnc_milling", "press", "laser_cutting"),
        transport="mqtt",
        emission_factor=0.45,
    ),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class FactoryPlan:
    index: int
    factory: Factory
    member: str  # pseudonym assigned by the trustee
    machines: list[MachineSpec]
    port: int  # OPC UA server port, or the factory's local MQTT broker port
    namespace: str
    gateway: GatewaySettings


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    factories: list[FactoryPlan]
    hub: HubSettings
    register: Register
    broker_port: int


def member_pseudonym(rng_hex: str) -> str:
    return f"m-{rng_hex}"


def gateway_settings(
    *,
    workdir: Path,
    index: int,
    factory: Factory,
    member: str,
    machines: list[MachineSpec],
    port: int,
    namespace: str,
    broker_port: int,
) -> GatewaySettings:
    gw_dir = workdir / f"factory-{index}"
    data: dict[str, Any] = {
        "identity": {
            "member": member,
            "gateway_name": f"{factory.name} / gateway 1",
            "key_file": str(gw_dir / "member.key"),
            "journal_file": str(gw_dir / "journal.jsonl"),
        },
        "assets": [{"id": m.serial, "model": m.model} for m in machines],
        "policy": {"signals": SHARED_SIGNALS, "asset_classes": MODEL_CLASSES, "min_quality": "uncertain"},
        "buffer": {"path": str(gw_dir / "buffer.sqlite"), "flush_interval_s": 0.25},
        "uplink": {
            "host": "127.0.0.1",
            "port": broker_port,
            "tls": False,
            "protocol": "3.1.1",
            "batch_time_s": 1.0,
            "heartbeat_s": 30,
        },
        "health": {"port": 0},
    }
    if factory.transport == "opcua":
        data["opcua"] = [
            {
                "name": "line",
                "url": f"opc.tcp://127.0.0.1:{port}",
                "groups": [
                    {
                        "name": "default",
                        "mode": "subscription",
                        "publishing_interval_ms": 500,
                        "sampling_interval_ms": 250,
                    }
                ],
                "nodes": [
                    {"asset": m.serial, "signal": var, "node": f"nsu={namespace};s={m.serial}.{var}"}
                    for m in machines
                    for var in (*SHARED_SIGNALS, *PRIVATE_SIGNALS)
                ],
            }
        ]
    else:
        data["mqtt"] = [
            {
                "name": "plant",
                "host": "127.0.0.1",
                "port": port,
                "topics": [
                    {
                        "filter": f"plant/hall{index}/+/+",
                        "format": "json",
                        "asset_level": 2,
                        "signal_level": 3,
                        "value_path": "value",
                        "ts_path": "ts",
                        "ts_unit": "iso",
                    }
                ],
            }
        ]
    return settings_from_dict(GatewaySettings, data, source=f"<demo gateway {index}>")


def hub_settings(*, workdir: Path, broker_port: int, api_port: int) -> HubSettings:
    hub_dir = workdir / "hub"
    data: dict[str, Any] = {
        "register_file": str(hub_dir / "members.toml"),
        "store": {"kind": "duckdb", "path": str(hub_dir / "hub.duckdb")},
        "metrics_listen": "127.0.0.1:0",  # a free port: several demos may run at once
        # The embedded broker speaks MQTT 3.1.1 only: one ingestor, no shared subscription, no TLS on loopback.
        "ingest": {
            "host": "127.0.0.1",
            "port": broker_port,
            "tls": False,
            "protocol": "3.1.1",
            "shared_group": None,
            "username": None,
            "client_id": "demo-ingestor",
            "dead_letter_path": str(hub_dir / "dead-letters.jsonl"),
            "rollup_refresh_s": 10.0,
        },
        "api": {
            "host": "127.0.0.1",
            "port": api_port,
            "tokens_file": str(hub_dir / "tokens.json"),
            "audit_log": str(hub_dir / "audit.log"),
            "release_delay_days": 0,
            "dp": {"budget_file": str(hub_dir / "dp_budget.json")},
        },
    }
    return settings_from_dict(HubSettings, data, source="<demo hub>")


def make_plan(*, workdir: Path, ports: list[int], seed: int) -> Plan:
    """``ports``: one per factory, then the hub broker, then the API."""
    broker_port, api_port = ports[len(FACTORIES)], ports[len(FACTORIES) + 1]
    plans: list[FactoryPlan] = []
    members: list[Member] = []
    for i, f in enumerate(FACTORIES, start=1):
        member = member_pseudonym(secrets.token_hex(3))
        machines = factory_machines(i, list(f.classes), seed)
        namespace = f"urn:demo:factory{i}:line-controller"
        gw = gateway_settings(
            workdir=workdir,
            index=i,
            factory=f,
            member=member,
            machines=machines,
            port=ports[i - 1],
            namespace=namespace,
            broker_port=broker_port,
        )
        plans.append(
            FactoryPlan(
                index=i, factory=f, member=member, machines=machines, port=ports[i - 1], namespace=namespace, gateway=gw
            )
        )
        members.append(
            Member(pseudonym=member, group=f.group, region=f.region, emission_factor_kg_per_kwh=f.emission_factor)
        )
    return Plan(
        factories=plans,
        hub=hub_settings(workdir=workdir, broker_port=broker_port, api_port=api_port),
        register=Register(member=members),
        broker_port=broker_port,
    )
