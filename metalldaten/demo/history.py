"""Weeks of a machine's past, as its controller would have recorded it (pure).

The demo's factories replay this history through their gateways before they go live
(see ``docs/demo.md``): the simulated OPC UA servers write each value with its past source
timestamp, the MQTT factories send Sparkplug B messages whose metrics carry theirs. The
gateways forward them exactly as live data, so the history reaches the hub through the
real path.

The model works in five-minute slots: one ``State`` reading per slot (the hub counts a
state for at most five minutes without news), the counters ``EnergyMeter``,
``PartCounter`` and ``ScrapCounter`` once an hour. A factory works one, two or three
shifts on weekdays, some on Saturday mornings; outside them its machines are switched
off and record nothing. Within a shift they run for a share of the time
(``availability``) and are idle, in setup or down for the rest. A *down day* stops the
whole factory for a day (the machines report ``down``), a *counter reset* restarts one
machine's part counters from zero (a controller restart), as real lines do.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .machines import MachineSpec

SLOT_S = 300
SLOTS_PER_HOUR = 3600 // SLOT_S
_NS = 10**9
#: Share of rated power drawn per state (as the live model in :mod:`.machines`).
_LOAD = {"running": 1.0, "idle": 0.18, "setup": 0.3, "down": 0.03, "off": 0.0}
#: Shift hours (UTC) per number of shifts.
_SHIFT_HOURS = {1: range(6, 14), 2: range(6, 22), 3: range(24)}

Reading = tuple[int, str, float | int | str]  # (source timestamp ns, local variable, value)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkPattern:
    """How a factory works: shifts on weekdays, Saturday mornings, and its bad days."""

    shifts: int = 2
    saturday: bool = False
    availability: float = 0.75  # share of shift time running
    down_day: int | None = None  # days before today on which the whole factory was down
    reset_day: int | None = None  # days before today on which its first machine's counters restarted


def history_start(now: datetime, days: int | None) -> datetime:
    """Midnight (UTC) ``days`` before ``now``; by default the first of the previous month, so that the
    history holds at least one whole closed month, its weeks and its days."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if days is not None:
        return today - timedelta(days=days)
    first = today.replace(day=1)
    return (first - timedelta(days=1)).replace(day=1)


@dataclass(slots=True)
class MachineHistory:
    """One machine's past from ``start``; :meth:`day` produces one day of readings at a time.

    The counters start from the values of a machine that has run for years and end where the
    live model (:class:`~.machines.Machine`) continues: :attr:`energy_kwh`, :attr:`parts_total`,
    :attr:`parts_scrap` after the last day.
    """

    spec: MachineSpec
    pattern: WorkPattern
    rng: random.Random
    first: bool = False  # the factory's first machine: the one a counter reset hits
    energy_kwh: float = 0.0
    parts_total: int = 0
    parts_scrap: int = 0
    _progress: float = 0.0

    def __post_init__(self) -> None:
        self.energy_kwh = round(self.rng.uniform(1_000, 50_000), 3)
        self.parts_total = self.rng.randint(10_000, 200_000)
        self.parts_scrap = int(self.parts_total * self.spec.scrap_rate)

    def _on(self, at: datetime) -> bool:
        """Whether the machine is switched on (within a shift) at ``at``."""
        weekday = at.weekday()
        if weekday == 5:
            return self.pattern.saturday and 6 <= at.hour < 12
        return weekday < 5 and at.hour in _SHIFT_HOURS[self.pattern.shifts]

    def _state(self) -> str:
        r = self.rng.random()
        a = self.pattern.availability
        if r < a:
            return "running"
        rest = (r - a) / (1 - a)
        return "idle" if rest < 0.55 else "setup" if rest < 0.85 else "down"

    def day(self, start: datetime, today: datetime) -> list[Reading]:
        """The readings of the day starting at ``start`` (UTC midnight), in time order."""
        days_ago = (today - start).days
        down = days_ago == self.pattern.down_day
        if self.first and days_ago == self.pattern.reset_day:
            self.parts_total = 0
            self.parts_scrap = 0
        out: list[Reading] = []
        base_ns = int(start.timestamp()) * _NS
        was_on = self._on(start - timedelta(seconds=SLOT_S))
        for slot in range(24 * SLOTS_PER_HOUR):
            at = start + timedelta(seconds=slot * SLOT_S)
            ts = base_ns + slot * SLOT_S * _NS
            on = down or self._on(at)
            # The controller is switched off outside the shifts: it records nothing, the hub sees a gap
            # (neither running nor observed). The counters are read on the hour while it is on, and once
            # more on the hour after the shift ended, so that the last hour's parts count for their day.
            if slot % SLOTS_PER_HOUR == 0 and (on or was_on):
                out.extend(self._counters(ts))
            was_on = on
            if not on:
                continue
            state = "down" if down else self._state()
            out.append((ts, "State", state))
            load = _LOAD[state] * self.rng.uniform(0.9, 1.1)
            self.energy_kwh = round(self.energy_kwh + self.spec.rated_kw * load * SLOT_S / 3600, 4)
            if state == "running":
                self._progress += SLOT_S / (self.spec.cycle_s * self.rng.uniform(0.95, 1.05))
                made = int(self._progress)
                self._progress -= made
                scrap = sum(1 for _ in range(made) if self.rng.random() < self.spec.scrap_rate)
                self.parts_total += made
                self.parts_scrap += scrap
        return out

    def _counters(self, ts: int) -> list[Reading]:
        return [
            (ts, "EnergyMeter", self.energy_kwh),
            (ts, "PartCounter", self.parts_total),
            (ts, "ScrapCounter", self.parts_scrap),
        ]

    def close(self, end: datetime) -> list[Reading]:
        """The counters at ``end`` (the last hour's increases), after the last day."""
        return self._counters(int(end.timestamp()) * _NS)


def days(start: datetime, end: datetime) -> list[datetime]:
    """UTC midnights from ``start`` up to (not including) ``end``."""
    out, at = [], start
    while at < end:
        out.append(at)
        at += timedelta(days=1)
    return out


def machine_histories(specs: list[MachineSpec], pattern: WorkPattern, seed: int) -> list[MachineHistory]:
    rng = random.Random(seed * 104_729 + 17)
    return [
        MachineHistory(spec=s, pattern=pattern, rng=random.Random(rng.random()), first=i == 0)
        for i, s in enumerate(specs)
    ]
