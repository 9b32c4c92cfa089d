"""What a demo factory shares between its transports: its machines' history, the live model that
continues from it, and how far the replay has come (for the console).

A factory first replays its history (see :mod:`.history`), paced by its gateway: it waits until the
gateway reads (``ready``), and, for a transport without flow control of its own, until the gateway has
taken delivery of what was sent (``delivered``). Then its machines go live where the history ended.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .history import MachineHistory, Reading, WorkPattern, days, history_start, machine_histories
from .machines import Machine, MachineSpec, build_machines

log = logging.getLogger(__name__)

#: How long a replay waits for its gateway before it goes on regardless (and says so in the log).
WAIT_S = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryPlan:
    """Which past a factory replays: from ``start`` up to ``end`` (today's UTC midnight); ``today`` anchors
    the work pattern's down day and counter reset."""

    start: datetime
    end: datetime

    @classmethod
    def for_days(cls, now: datetime, history_days: int | None) -> HistoryPlan:
        end = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return cls(start=history_start(now, history_days), end=end)


@dataclass(slots=True)
class ReplayProgress:
    days_total: int = 0
    days_done: int = 0
    readings: int = 0  # readings handed to the transport
    live: bool = False


class FactoryMachines:
    """The machines of one factory: their history and the live model that continues from it."""

    def __init__(self, specs: list[MachineSpec], *, seed: int, pattern: WorkPattern, history: HistoryPlan | None):
        self.specs = specs
        self.live: list[Machine] = build_machines(specs, seed)
        self.history = history
        self.histories: list[MachineHistory] = machine_histories(specs, pattern, seed) if history else []
        self.progress = ReplayProgress(days_total=len(days(history.start, history.end)) if history else 0)
        start = {
            s.serial: (h.energy_kwh, h.parts_total, h.parts_scrap) for s, h in zip(specs, self.histories, strict=False)
        }
        self._start = start
        self._days = self._record()
        end_ns = int(history.end.timestamp()) * 10**9 if history else 0
        #: Readings of the history before its end (what the hub must hold before benchmarks are asked for).
        self.expected = sum(1 for ms in self._days.values() for m in ms for r in m if r[0] < end_ns)
        if not self.histories:
            self.progress.live = True

    def first_readings(self) -> dict[str, dict[str, float | int | str]]:
        """Each machine's values before its history starts (the counters the history continues)."""
        out: dict[str, dict[str, float | int | str]] = {}
        for m in self.live:
            values = m.readings()
            if m.spec.serial in self._start:
                energy, parts, scrap = self._start[m.spec.serial]
                values.update(EnergyMeter=energy, PartCounter=parts, ScrapCounter=scrap)
                values.update(State="off", ActivePower=0.0, SpindleSpeed=0.0)
            out[m.spec.serial] = values
        return out

    def _record(self) -> dict[datetime, list[list[Reading]]]:
        """Every day of the history, each machine's readings (the last day ends with the counters at its end)."""
        if self.history is None:
            return {}
        out = {
            day: [h.day(day, self.history.end) for h in self.histories]
            for day in days(self.history.start, self.history.end)
        }
        if out:
            last = out[max(out)]
            for machine, h in zip(last, self.histories, strict=True):
                machine.extend(h.close(self.history.end))
        return out

    def day(self, day: datetime) -> list[list[Reading]]:
        """Each machine's readings of the day starting at ``day``."""
        return self._days[day]

    async def replay(
        self,
        name: str,
        ready: Callable[[], bool],
        delivered: Callable[[], int],
        send: Callable[[MachineSpec, list[Reading]], Awaitable[None]],
    ) -> None:
        """Send the history a day at a time (``send`` per machine) once the gateway reads, paced by what it
        has read (see :class:`Pacer`); then the live machines take over from the history's counters."""
        if self.history is None:
            return
        began = time.monotonic()
        await wait_for(f"the gateway of {name} to subscribe", ready)
        pacer = Pacer(delivered, self.progress)
        day = self.history.start
        while day < self.history.end:
            readings = self.day(day)
            for spec, machine in zip(self.specs, readings, strict=True):
                await send(spec, machine)
            await pacer.sent(sum(map(len, readings)), f"the gateway of {name} to read day {day:%Y-%m-%d}")
            day += timedelta(days=1)
        await pacer.finish(f"the gateway of {name} to read the history")
        log.info(
            "%s: %d readings of %d days replayed in %.1f s",
            name,
            self.progress.readings,
            self.progress.days_done,
            time.monotonic() - began,
        )
        self.go_live()

    def go_live(self) -> None:
        """The live machines continue the counters where the history ended (no false reset at the hub)."""
        for m, h in zip(self.live, self.histories, strict=True):
            m.energy_kwh, m.parts_total, m.parts_scrap = h.energy_kwh, h.parts_total, h.parts_scrap
        self.progress.live = True


async def wait_for(what: str, done: Callable[[], bool], within_s: float = WAIT_S) -> bool:
    """Poll ``done`` until it holds or ``within_s`` passed (then log and return False)."""
    deadline = time.monotonic() + within_s
    while not done():
        if time.monotonic() > deadline:
            log.warning("replay: waited %.0f s for %s; going on", within_s, what)
            return False
        await asyncio.sleep(0.02)
    return True


def reached(count: Callable[[], int], target: int) -> Callable[[], bool]:
    """A condition for :func:`wait_for`: ``count()`` has reached ``target``."""
    return lambda: count() >= target


class Pacer:
    """Keeps a replay at most ``ahead`` days in front of its gateway.

    Each :meth:`sent` day is counted done once the gateway has read (``delivered``) everything up to its
    end; a further day waits until the oldest of ``ahead`` days in flight is done. Days in flight hide the
    round trips (a subscription's publishing interval, a buffer flush) without piling up more than the
    OPC UA server's queue or the broker's patience holds.
    """

    def __init__(self, delivered: Callable[[], int], progress: ReplayProgress, *, ahead: int = 3) -> None:
        self._delivered = delivered
        self._progress = progress
        self._ahead = ahead
        self._target = delivered()
        self._in_flight: deque[int] = deque()

    async def sent(self, readings: int, what: str) -> None:
        self._target += readings
        self._progress.readings += readings
        self._in_flight.append(self._target)
        while len(self._in_flight) >= self._ahead:
            await self._done_one(what)

    async def finish(self, what: str) -> None:
        while self._in_flight:
            await self._done_one(what)

    async def _done_one(self, what: str) -> None:
        await wait_for(what, reached(self._delivered, self._in_flight.popleft()))
        self._progress.days_done += 1
