"""The canonical signal catalogue shared by gateways and the hub.

A gateway may only send signals named here; the hub rejects anything else. Each
signal has a unit and a kind. The kind decides how the hub aggregates it:

* ``gauge``   -- an instantaneous reading (mean/min/max per hour);
* ``counter`` -- a monotonically increasing total that may reset to a lower value
  when a machine restarts (deltas per hour, resets handled);
* ``state``   -- one of :data:`MACHINE_STATES` (seconds per state per hour).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SignalKind = Literal["gauge", "counter", "state"]

MACHINE_STATES: tuple[str, ...] = ("running", "idle", "setup", "down", "off")


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalSpec:
    name: str
    unit: str
    kind: SignalKind
    description: str


SIGNALS: dict[str, SignalSpec] = {
    s.name: s
    for s in (
        SignalSpec(name="power_kw", unit="kW", kind="gauge", description="Electrical active power"),
        SignalSpec(name="temperature_c", unit="°C", kind="gauge", description="Process or spindle temperature"),
        SignalSpec(name="spindle_speed_rpm", unit="1/min", kind="gauge", description="Spindle speed"),
        SignalSpec(name="energy_kwh", unit="kWh", kind="counter", description="Electrical energy meter reading"),
        SignalSpec(name="parts_total", unit="1", kind="counter", description="Parts produced, good and scrap"),
        SignalSpec(name="parts_scrap_total", unit="1", kind="counter", description="Parts produced that were scrapped"),
        SignalSpec(name="state", unit="", kind="state", description="Machine state: " + ", ".join(MACHINE_STATES)),
    )
}

#: Signals by kind, in catalogue order: what the hub rolls up as gauges (mean/min/max) and as counters (deltas).
GAUGE_SIGNALS: tuple[str, ...] = tuple(n for n, s in SIGNALS.items() if s.kind == "gauge")
COUNTER_SIGNALS: tuple[str, ...] = tuple(n for n, s in SIGNALS.items() if s.kind == "counter")
STATE_SIGNALS: tuple[str, ...] = tuple(n for n, s in SIGNALS.items() if s.kind == "state")

#: Generalised machine classes. Machine models are mapped to one of these at the
#: gateway; benchmarks use them as fixed peer groups.
ASSET_CLASSES: dict[str, str] = {
    "cnc_milling": "CNC milling centre",
    "cnc_turning": "CNC lathe / turning centre",
    "press": "Forming press",
    "laser_cutting": "Laser cutting machine",
    "welding": "Welding cell",
    "grinding": "Grinding machine",
    "injection_moulding": "Injection moulding machine",
    "furnace": "Heat-treatment furnace",
    "other": "Other machine",
}


def signal(name: str) -> SignalSpec:
    """Return the catalogue entry for ``name`` or raise ``KeyError`` naming the known signals."""
    try:
        return SIGNALS[name]
    except KeyError:
        raise KeyError(f"unknown signal {name!r}; known signals: {', '.join(sorted(SIGNALS))}") from None
