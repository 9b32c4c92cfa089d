"""The demo's cast: thirteen simulated factories, their members, and the settings of every part.

Pure: given a work folder, ports and a seed, it returns the settings objects for
the gateways and the hub and the trustee's register. The factory names are the
clear identities that stay inside each factory; only pseudonyms reach the hub.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.configfile import settings_from_dict
from core.register import Member, Register
from gateway.config import GatewaySettings
from metalldaten.hub import HubSettings

from .history import WorkPattern
from .machines import MachineSpec, factory_machines
from .opcua_factory import QUEUE_SIZE

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
    transport: str  # "opcua" | "mqtt" (Sparkplug B on the factory's own broker)
    emission_factor: float
    work: WorkPattern = field(default_factory=WorkPattern)


def _f(name: str, group: str, classes: str, transport: str, factor: float, **work: Any) -> Factory:
    return Factory(
        name=name,
        group=group,
        region="DE-NW",
        classes=tuple(classes.split()),
        transport=transport,
        emission_factor=factor,
        work=WorkPattern(**work),
    )


#: Thirteen factories in eleven corporate groups. Drehteile Olpe and Präzisionsteile Arnsberg belong to one
#: group, as do Plettenberg and Werdohl: each pair counts as one contributor. Every factory has a milling and a
#: turning machine, nearly every one a press, so those classes have 11 contributors (mean and, by week and
#: month, median); laser cutting has two and is never published. Shifts, Saturdays, availability, a down day
#: and a counter reset differ, so the KPIs spread.
FACTORIES: tuple[Factory, ...] = (
    _f("Schmiedewerk Lüdenscheid GmbH", "grp-01", "cnc_milling cnc_milling press cnc_turning", "opcua", 0.38, shifts=2),
    _f("Drehteile Olpe KG", "grp-02", "cnc_turning cnc_milling", "opcua", 0.36, shifts=1, availability=0.85),
    _f(
        "Umformtechnik Iserlohn AG",
        "grp-03",
        "press cnc_milling cnc_turning",
        "opcua",
        0.41,
        shifts=3,
        availability=0.6,
        reset_day=5,
    ),
    _f(
        "Lasertechnik Siegen GmbH",
        "grp-04",
        "laser_cutting cnc_milling press cnc_turning",
        "mqtt",
        0.30,
        shifts=2,
        saturday=True,
    ),
    _f("Präzisionsteile Arnsberg GmbH", "grp-02", "cnc_milling cnc_turning press", "mqtt", 0.36, shifts=1),
    _f(
        "Metallbau Meschede GmbH",
        "grp-05",
        "cnc_milling press laser_cutting cnc_turning",
        "mqtt",
        0.45,
        shifts=2,
        availability=0.55,
        down_day=6,
    ),
    _f("Stanztechnik Altena GmbH", "grp-06", "press cnc_turning cnc_milling", "mqtt", 0.40, shifts=2, availability=0.8),
    _f(
        "Federnwerk Plettenberg GmbH",
        "grp-07",
        "cnc_turning press cnc_milling",
        "mqtt",
        0.35,
        shifts=1,
        availability=0.7,
    ),
    _f(
        "Armaturen Attendorn KG",
        "grp-08",
        "cnc_milling cnc_turning press",
        "mqtt",
        0.33,
        shifts=2,
        saturday=True,
        availability=0.65,
    ),
    _f("Gießerei Menden GmbH", "grp-09", "cnc_turning press cnc_milling", "mqtt", 0.48, shifts=3, availability=0.7),
    _f("Werkzeugbau Hemer GmbH", "grp-10", "cnc_milling press cnc_turning", "mqtt", 0.37, shifts=1, availability=0.9),
    _f("Kettenfabrik Brilon AG", "grp-11", "press cnc_milling cnc_turning", "mqtt", 0.42, shifts=2, availability=0.75),
    _f("Drahtwerk Werdohl GmbH", "grp-07", "cnc_turning cnc_milling press", "mqtt", 0.35, shifts=2, availability=0.6),
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
    node = f"hall{index}"
    sparkplug = factory.transport != "opcua"
    data: dict[str, Any] = {
        "identity": {
            "member": member,
            "gateway_name": f"{factory.name} / gateway 1",
            "key_file": str(gw_dir / "member.key"),
            "journal_file": str(gw_dir / "journal.jsonl"),
        },
        # A Sparkplug device is known to the gateway as "{edge node}/{device}".
        "assets": [{"id": f"{node}/{m.serial}" if sparkplug else m.serial, "model": m.model} for m in machines],
        "policy": {"signals": SHARED_SIGNALS, "asset_classes": MODEL_CLASSES, "min_quality": "uncertain"},
        "buffer": {"path": str(gw_dir / "buffer.sqlite"), "flush_interval_s": 0.25},
        "uplink": {
            "host": "127.0.0.1",
            "port": broker_port,
            "tls": False,
            "protocol": "3.1.1",
            "batch_time_s": 1.0,
            # Batches of up to 10,000 samples, four in flight: the history moves fast, and an ingestor on a busy
            # machine still acknowledges each within seconds (amqtt, the fallback broker, gives up after 5 s).
            "batch_size": 10_000,
            "max_inflight": 4,
            "heartbeat_s": 30,
        },
        "health": {"port": 0},
    }
    if not sparkplug:
        data["opcua"] = [
            {
                "name": "line",
                "url": f"opc.tcp://127.0.0.1:{port}",
                # one process runs thirteen factories, their gateways and the hub: its loop may stall for seconds
                "timeout_s": 30.0,
                "watchdog_s": 10.0,
                "groups": [
                    {
                        "name": "default",
                        "mode": "subscription",
                        "publishing_interval_ms": 200,
                        "sampling_interval_ms": 0,
                        # the controller replays its past: every re-stamped value counts, and a day of it queues
                        "queue_size": QUEUE_SIZE,
                        "trigger": "status_value_timestamp",
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
                "topics": [{"filter": f"spBv1.0/plant/+/{node}/#", "format": "sparkplug"}],
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
            "cell_key_file": str(hub_dir / "cell_key"),
            # The demo's history is complete before anything asks for a benchmark, so nothing arrives late for a
            # delay to wait for: every KPI's closed periods are released at once (production: 7 days, 28 for
            # utilisation).
            "release_delay_days": 0,
            "release_delay_days_by_kpi": {},
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
