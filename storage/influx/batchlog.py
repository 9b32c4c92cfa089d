"""The rollup keeper's memory of the batches its own process wrote (pure; no I/O).

Every write to InfluxDB carries dirty markers (see :mod:`storage.influx.rollups`), and every marker is
also recorded here, with the batch's samples, once the write succeeded. A refresh takes the markers of its
own process from here instead of reading them back from InfluxDB, and folds the batches' samples without
reading them back either; InfluxDB is asked only for the markers of *other* writers (a second ingest
worker, an earlier run of this one), which carry another ``writer`` tag. The API process's keeper writes
nothing, so it reads every marker.

Memory is bounded twice. Samples: beyond ``max_samples`` the oldest batches' samples are dropped (their
assets are then read back from InfluxDB; their markers stay). Markers: beyond ``max_markers`` pending
markers (a refresh that does not run, or fails for long), all of them are dropped and counted
(:attr:`drops`): until a full refresh that started after the drop succeeded (:meth:`read_back`), refreshes
read this writer's markers back from InfluxDB too.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Collection, Sequence
from typing import NamedTuple

from wire import Sample

#: Samples kept in memory until a refresh has folded them (beyond it the oldest batches' samples are dropped).
MAX_REMEMBERED_SAMPLES = 1_000_000
#: Pending markers kept in memory (beyond it all are dropped and read back from InfluxDB once).
MAX_REMEMBERED_MARKERS = 500_000

#: asset -> (asset class, first sample time, last sample time) of one batch.
Bounds = dict[str, tuple[str, int, int]]


def marker_bounds(samples: Sequence[Sample]) -> Bounds:
    """Per asset of ``samples``: its class (of its first sample) and its first and last sample time.

    The tuples are built as it goes (a new one when a time widens them): with lists turned into tuples at the end,
    that last pass over the assets was most of the cost of a batch holding an asset or two samples each.
    """
    found: Bounds = {}
    get = found.get
    for s in samples:
        asset = s.asset
        b = get(asset)
        if b is None:
            found[asset] = (s.asset_class, s.ts, s.ts)
            continue
        ts = s.ts
        if ts > b[2]:
            found[asset] = (b[0], b[1], ts)
        elif ts < b[1]:
            found[asset] = (b[0], ts, b[2])
    return found


def new_writer_id() -> str:
    """A random tag value naming one process's markers (not derived from anything; new at every start)."""
    return "w-" + secrets.token_hex(6)


class OwnMarker(NamedTuple):
    """One pending marker of this process (a tuple: a refresh takes thousands; a frozen dataclass is twice as slow)."""

    member: str
    asset: str
    asset_class: str
    lo: int
    hi: int
    written_ns: int


class BatchLog:
    """Thread-safe: the store records from its writer threads, the keeper takes from its refresh."""

    def __init__(self, *, max_samples: int = MAX_REMEMBERED_SAMPLES, max_markers: int = MAX_REMEMBERED_MARKERS) -> None:
        self.writer = new_writer_id()
        self._max_samples = max_samples
        self._max_markers = max_markers
        self._lock = threading.Lock()
        #: (member, written_ns) -> the batch's pending markers
        self._markers: dict[tuple[str, int], Bounds] = {}
        self._marker_count = 0
        #: (member, written_ns) -> the batch's samples, while kept
        self._samples: dict[tuple[str, int], list[Sample]] = {}
        self._sample_count = 0
        self._drops = 0
        self._read_back = 0
        #: batches all of whose markers were handled, (member, written_ns), until the watermark passes them
        self._done: set[tuple[str, int]] = set()

    @property
    def drops(self) -> int:
        """How often the pending markers were dropped since start."""
        return self._drops

    def must_read_back(self, drops: int) -> bool:
        """Whether markers dropped up to ``drops`` (a value of :attr:`drops`) are not yet read back."""
        return drops != self._read_back

    def read_back(self, drops: int) -> None:
        """A full refresh that started when :attr:`drops` was ``drops`` read every writer's markers and succeeded."""
        self._read_back = max(self._read_back, drops)

    @property
    def batches(self) -> int:
        """Batches whose samples are kept."""
        return len(self._samples)

    def record(self, member: str, samples: Sequence[Sample], written_ns: int, bounds: Bounds) -> None:
        """A batch is in InfluxDB with its markers (``bounds``) stamped ``written_ns``."""
        key = (member, written_ns)
        with self._lock:
            old = self._markers.pop(key, None)
            if old is not None:
                self._marker_count -= len(old)
            self._markers[key] = dict(bounds)
            self._marker_count += len(bounds)
            old_samples = self._samples.pop(key, None)
            if old_samples is not None:
                self._sample_count -= len(old_samples)
            self._samples[key] = list(samples)
            self._sample_count += len(samples)
            while self._sample_count > self._max_samples and self._samples:
                self._sample_count -= len(self._samples.pop(next(iter(self._samples))))
            if self._marker_count > self._max_markers:
                self._markers.clear()
                self._samples.clear()
                self._marker_count = self._sample_count = 0
                self._drops += 1

    def pending(
        self,
        members: Collection[str] | None = None,
        assets: Collection[str] | None = None,
        asset_classes: Collection[str] | None = None,
    ) -> list[OwnMarker]:
        """The pending markers (of the given members, assets and classes; ``None``: any)."""
        with self._lock:
            return [
                OwnMarker(member, asset, cls, lo, hi, t)
                for (member, t), bounds in self._markers.items()
                if members is None or member in members
                for asset, (cls, lo, hi) in bounds.items()
                if (assets is None or asset in assets) and (asset_classes is None or cls in asset_classes)
            ]

    def samples(self, member: str, written_ns: int) -> list[Sample] | None:
        """The samples of one batch, or ``None`` when they are not kept."""
        with self._lock:
            return self._samples.get((member, written_ns))

    def has_samples(self, member: str, written_ns: int) -> bool:
        return (member, written_ns) in self._samples

    def done(self, markers: Sequence[OwnMarker]) -> None:
        """``markers`` were handled; a batch none of whose markers is pending any more is forgotten."""
        with self._lock:
            for m in markers:
                key = (m.member, m.written_ns)
                bounds = self._markers.get(key)
                if bounds is None or bounds.pop(m.asset, None) is None:
                    continue
                self._marker_count -= 1
                if not bounds:
                    del self._markers[key]
                    self._done.add(key)
                    batch = self._samples.pop(key, None)
                    if batch is not None:
                        self._sample_count -= len(batch)

    def was_done(self, member: str, written_ns: int) -> bool:
        """Whether every marker of this batch was handled (a read-back after a drop finds them again)."""
        return (member, written_ns) in self._done

    def forget_done_before(self, ns: int) -> None:
        """Forget the handled batches stamped before ``ns`` (the watermark: no read finds them any more)."""
        with self._lock:
            self._done = {k for k in self._done if k[1] > ns}

    def forget(self, member: str) -> None:
        """Drop everything of ``member`` (its points were deleted)."""
        with self._lock:
            for key in [k for k in self._markers if k[0] == member]:
                self._marker_count -= len(self._markers.pop(key))
            for key in [k for k in self._samples if k[0] == member]:
                self._sample_count -= len(self._samples.pop(key))
