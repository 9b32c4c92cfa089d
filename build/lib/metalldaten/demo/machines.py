"""Simulated machines: a pure model of a machine tool that the demo's factories expose.

A machine cycles through the states running, idle, setup and down; draws power
according to its state; counts good parts and scrap while running; and integrates
its energy meter. Each machine has a clear serial number, a model name and an
operator badge number — exactly the things that must never leave a factory.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

#: Mean dwell time in seconds per state, and the states that may follow.
_DWELL_S = {"running": 40.0, "idle": 8.0, "setup": 10.0, "down": 6.0}
_NEXT = {
    "running": (("idle", 0.6), ("setup", 0.25), ("down", 0.15)),
    "idle": (("running", 0.8), ("setup", 0.2)),
    "setup": (("running", 1.0),),
    "down": (("idle", 0.5), ("running", 0.5)),
}
#: Share of rated power drawn per state.
_LOAD = {"running": 1.0, "idle": 0.18, "setup": 0.3, "down": 0.03, "off": 0.0}


@dataclass(frozen=True, slots=True, kw_only=True)
class MachineSpec:
    serial: str  # clear identifier, e.g. "DMG-DMU50-2019-0815"
    model: str  # maker's model name, generalised to an asset class at the gateway
    rated_kw: float
    cycle_s: float  # seconds per part while running
    scrap_rate: float  # share of parts scrapped


@dataclass(slots=True)
class Machine:
    spec: MachineSpec
    rng: random.Random
    state: str = "idle"
    dwell_left: float = 0.0
    power_kw: float = 0.0
    energy_kwh: float = 0.0
    parts_total: int = 0
    parts_scrap: int = 0
    temperature_c: float = 21.0
    spindle_rpm: float = 0.0
    operator_badge: str = field(default="")
    _part_progress: float = 0.0

    def __post_init__(self) -> None:
        self.energy_kwh = round(self.rng.uniform(1_000, 50_000), 3)
        self.parts_total = self.rng.randint(10_000, 200_000)
        self.parts_scrap = int(self.parts_total * self.spec.scrap_rate)
        self.operator_badge = f"B{self.rng.randint(10000, 99999)}"
        self.dwell_left = self.rng.expovariate(1 / _DWELL_S[self.state])

    def step(self, dt: float) -> None:
        """Advance the machine by ``dt`` seconds."""
        self.dwell_left -= dt
        if self.dwell_left <= 0:
            choices, weights = zip(*_NEXT.get(self.state, (("idle", 1.0),)), strict=True)
            self.state = self.rng.choices(choices, weights)[0]
            self.dwell_left = self.rng.expovariate(1 / _DWELL_S[self.state])
            if self.state == "setup":
                self.operator_badge = f"B{self.rng.randint(10000, 99999)}"
        load = _LOAD[self.state] * self.rng.uniform(0.9, 1.1)
        self.power_kw = round(self.spec.rated_kw * load, 3)
        self.energy_kwh = round(self.energy_kwh + self.power_kw * dt / 3600.0, 6)
        target_temp = 22.0 + 30.0 * load
        self.temperature_c = round(self.temperature_c + (target_temp - self.temperature_c) * min(1.0, dt / 60), 2)
        self.spindle_rpm = round(8000.0 * load if self.state == "running" else 0.0, 1)
        if self.state == "running":
            self._part_progress += dt / self.spec.cycle_s
            while self._part_progress >= 1.0:
                self._part_progress -= 1.0
                self.parts_total += 1
                if self.rng.random() < self.spec.scrap_rate:
                    self.parts_scrap += 1

    def restart(self) -> None:
        """A controller restart: the part counters start again from zero."""
        self.parts_total = 0
        self.parts_scrap = 0
        self._part_progress = 0.0
        self.state = "off"
        self.dwell_left = 2.0

    def readings(self) -> dict[str, float | int | str]:
        """The machine's variables under its own (clear, maker-specific) names."""
        return {
            "State": self.state,
            "ActivePower": self.power_kw,
            "EnergyMeter": self.energy_kwh,
            "PartCounter": self.parts_total,
            "ScrapCounter": self.parts_scrap,
            "SpindleTemp": self.temperature_c,
            "SpindleSpeed": self.spindle_rpm,
            "OperatorBadge": self.operator_badge,
            "SerialNumber": self.spec.serial,
        }


def build_machines(specs: list[MachineSpec], seed: int) -> list[Machine]:
    """Simulated machines for ``specs``, each with its own random stream derived from ``seed``."""
    rng = random.Random(seed)
    return [Machine(spec=s, rng=random.Random(rng.random())) for s in specs]


_MODELS = {
    "cnc_milling": ("DMU 50", 22.0, 45.0),
    "cnc_turning": ("CTX beta 800", 18.0, 30.0),
    "press": ("BSTA 510", 55.0, 2.0),
    "laser_cutting": ("TruLaser 3030", 30.0, 20.0),
}


def factory_machines(factory: int, classes: list[str], seed: int) -> list[MachineSpec]:
    """Machines of one simulated factory; efficiency differs between factories so benchmarks spread."""
    rng = random.Random(seed * 7919 + factory)
    specs = []
    for i, cls in enumerate(classes):
        model, rated, cycle = _MODELS[cls]
        specs.append(
            MachineSpec(
                serial=f"SN-{factory:02d}{i:02d}-{rng.randint(100000, 999999)}",
                model=model,
                rated_kw=round(rated * rng.uniform(0.7, 1.4), 1),
                cycle_s=round(cycle * rng.uniform(0.8, 1.3), 1),
                scrap_rate=round(rng.uniform(0.005, 0.06), 3),
            )
        )
    return specs
