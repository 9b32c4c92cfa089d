"""The canonical signal catalogue shared by gateways and the hub.

A gateway may only send signals named here; the hub rejects anything else. Each
signal has a unit and a kind. The kind decides how the hub aggregates it:

* ``gauge``   -- an instantaneous reading (mean/min/max per hour);
* ``counter`` -- a monotonically increasing total that may reset to a lower value
  when a machine restarts (deltas per hour, resets handled);
* ``state``   -- one value of a fixed vocabulary (seconds per value per hour): :data:`MACHINE_STATES` for
  ``state``, :data:`DOWNTIME_REASONS` for ``downtime_reason``. A fixed vocabulary, never free text: an
  alarm's message or an operator's note can name a person and never becomes a value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SignalKind = Literal["gauge", "counter", "state"]

MACHINE_STATES: tuple[str, ...] = ("running", "idle", "setup", "down", "off")

#: Why a machine is down, as the gateway maps OPC UA events and alarms (``none``: not down, or the
#: reason ended). Coarse on purpose: the hub sums downtime per reason and asset (``/v1/kpis``).
DOWNTIME_REASONS: tuple[str, ...] = (
    "none",
    "breakdown",
    "tooling",
    "material",
    "maintenance",
    "setup",
    "quality",
    "no_order",
    "no_staff",
    "other",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalSpec:
    name: str
    unit: str
    kind: SignalKind
    description: str
    #: The values a state signal may take (empty for gauges and counters).
    values: tuple[str, ...] = ()


SIGNALS: dict[str, SignalSpec] = {
    s.name: s
    for s in (
        SignalSpec(name="power_kw", unit="kW", kind="gauge", description="Electrical active power"),
        SignalSpec(name="temperature_c", unit="°C", kind="gauge", description="Process or spindle temperature"),
        SignalSpec(name="spindle_speed_rpm", unit="1/min", kind="gauge", description="Spindle speed"),
        SignalSpec(name="energy_kwh", unit="kWh", kind="counter", description="Electrical energy meter reading"),
        SignalSpec(name="parts_total", unit="1", kind="counter", description="Parts produced, good and scrap"),
        SignalSpec(name="parts_scrap_total", unit="1", kind="counter", description="Parts produced that were scrapped"),
        SignalSpec(
            name="state",
            unit="",
            kind="state",
            description="Machine state: " + ", ".join(MACHINE_STATES),
            values=MACHINE_STATES,
        ),
        SignalSpec(
            name="downtime_reason",
            unit="",
            kind="state",
            description="Why the machine is down: " + ", ".join(DOWNTIME_REASONS),
            values=DOWNTIME_REASONS,
        ),
    )
}

#: Signals by kind, in catalogue order: what the hub rolls up as gauges (mean/min/max) and as counters (deltas).
GAUGE_SIGNALS: tuple[str, ...] = tuple(n for n, s in SIGNALS.items() if s.kind == "gauge")
COUNTER_SIGNALS: tuple[str, ...] = tuple(n for n, s in SIGNALS.items() if s.kind == "counter")
STATE_SIGNALS: tuple[str, ...] = tuple(n for n, s in SIGNALS.items() if s.kind == "state")
#: State signal -> the values it may take.
STATE_VALUES: dict[str, frozenset[str]] = {n: frozenset(SIGNALS[n].values) for n in STATE_SIGNALS}

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
