"""The rollup keeper's memory of the batches its own process wrote (pure; no I/O).

Every write to InfluxDB carries dirty markers (see :mod:`storage.influx.rollups`), one per asset of the batch,
and every marker is also recorded here, with the asset's samples of the batch, once the write succeeded. A
refresh takes the markers of its own process from here instead of reading them back from InfluxDB, and folds
the samples without reading them back either; InfluxDB is asked only for the markers of *other* writers (a
second ingest worker, an earlier run of this one), which carry another ``writer`` tag. The API process's keeper
writes nothing, so it reads every marker.

The log is kept per asset: a refresh takes an asset's pending markers as one entry (the union of their sample
times, the asset's samples of those batches in the order written), so it costs per asset and not per marker,
and the samples a batch is split into at the write (:func:`split_by_asset`, which also gives the markers) are
never split again.

Memory is bounded twice. Samples: beyond ``max_samples`` the oldest batches' samples are dropped (their
assets are then read back from InfluxDB; their markers stay). Markers: beyond ``max_markers`` pending
markers (a refresh that does not run, or fails for long), all of them are dropped and counted
(:attr:`drops`): until a full refresh that started after the drop succeeded (:meth:`read_back`), refreshes
read this writer's markers back from InfluxDB too.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import secrets
import threading
from collections.abc import Collection, Iterable, Sequence
from typing import NamedTuple

from wire import Sample

#: Samples kept in memory until a refresh has folded them (beyond it the oldest batches' samples are dropped).
MAX_REMEMBERED_SAMPLES = 1_000_000
#: Pending markers kept in memory (beyond it all are dropped and read back from InfluxDB once).
MAX_REMEMBERED_MARKERS = 500_000


@dataclasses.dataclass(slots=True)
class AssetPart:
    """One asset's part of a batch: the class of its first sample, its first and last sample time, its samples
    in the batch's order. Its marker says (asset class, lo, hi)."""

    asset_class: str
    lo: int
    hi: int
    samples: list[Sample]


#: asset -> its part of one batch, the assets in the order they first appear in the batch.
Parts = dict[str, AssetPart]


def split_by_asset(samples: Sequence[Sample]) -> Parts:
    """The batch ``samples`` split by asset, each part with its class (of its first sample) and its first and
    last sample time: the markers of the batch and the samples the keeper folds, in one pass."""
    found: Parts = {}
    get = found.get
    for s in samples:
        asset = s.asset
        p = get(asset)
        if p is None:
            found[asset] = AssetPart(s.asset_class, s.ts, s.ts, [s])
            continue
        p.samples.append(s)
        ts = s.ts
        if ts > p.hi:
            p.hi = ts
        elif ts < p.lo:
            p.lo = ts
    return found


def new_writer_id() -> str:
    """A random tag value naming one process's markers (not derived from anything; new at every start)."""
    return "w-" + secrets.token_hex(6)


class _Batch:
    """One recorded batch: its samples by asset while kept (``None`` once dropped), and how many of its markers
    are still pending."""

    __slots__ = ("member", "parts", "remaining", "size", "written_ns")

    def __init__(self, member: str, written_ns: int, parts: Parts, size: int) -> None:
        self.member = member
        self.written_ns = written_ns
        self.parts: Parts | None = parts
        self.size = size
        self.remaining = len(parts)


class _Marker(NamedTuple):
    batch: _Batch
    asset_class: str
    lo: int
    hi: int


class _Asset:
    """One asset's pending markers, in the order of their batches' ``written_ns``, and their union."""

    __slots__ = ("classes", "hi", "lo", "markers")

    def __init__(self) -> None:
        self.markers: list[_Marker] = []
        self.lo = 2**63
        self.hi = -(2**63)
        self.classes: set[str] = set()

    def add(self, marker: _Marker) -> None:
        markers = self.markers
        if markers and markers[-1].batch.written_ns > marker.batch.written_ns:  # a write that finished late
            bisect.insort(markers, marker, key=lambda m: m.batch.written_ns)
        else:
            markers.append(marker)
        self.lo = min(self.lo, marker.lo)
        self.hi = max(self.hi, marker.hi)
        self.classes.add(marker.asset_class)

    def reset_union(self) -> None:
        self.lo = min((m.lo for m in self.markers), default=2**63)
        self.hi = max((m.hi for m in self.markers), default=-(2**63))
        self.classes = {m.asset_class for m in self.markers}


class AssetPending(NamedTuple):
    """An asset's pending markers as a refresh takes them: the union of their sample times and the markers."""

    member: str
    asset: str
    lo: int
    hi: int
    markers: tuple[_Marker, ...]

    @property
    def written(self) -> list[int]:
        """The markers' ``written_ns``, oldest first."""
        return [m.batch.written_ns for m in self.markers]

    def samples(self) -> list[Sample] | None:
        """The asset's samples of its pending batches in the order written, or ``None`` when any batch's
        samples were dropped (then they must be read back)."""
        asset = self.asset
        parts = [m.batch.parts for m in self.markers]
        if any(p is None for p in parts):
            return None
        return list(itertools.chain.from_iterable(p[asset].samples for p in parts if p is not None))


class BatchLog:
    """Thread-safe: the store records from its writer threads, the keeper takes from its refresh."""

    def __init__(self, *, max_samples: int = MAX_REMEMBERED_SAMPLES, max_markers: int = MAX_REMEMBERED_MARKERS) -> None:
        self.writer = new_writer_id()
        self._max_samples = max_samples
        self._max_markers = max_markers
        self._lock = threading.Lock()
        #: (member, asset) -> its pending markers
        self._assets: dict[tuple[str, str], _Asset] = {}
        self._marker_count = 0
        #: (member, written_ns) -> batches with a pending marker, in the order recorded
        self._batches: dict[tuple[str, int], _Batch] = {}
        #: the batches whose samples are kept, in the order recorded
        self._kept: dict[tuple[str, int], _Batch] = {}
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
        return len(self._kept)

    @property
    def markers(self) -> int:
        """Pending markers."""
        return self._marker_count

    def record(self, member: str, written_ns: int, parts: Parts) -> None:
        """A batch is in InfluxDB with its markers (one per asset of ``parts``) stamped ``written_ns``."""
        key = (member, written_ns)
        size = sum(len(p.samples) for p in parts.values())
        batch = _Batch(member, written_ns, parts, size)
        with self._lock:
            if key in self._batches:  # two batches stamped alike (InfluxDB keeps the later marker): read back
                self._drop_samples(self._batches[key])
                batch.parts = None
            else:
                self._kept[key] = batch
                self._sample_count += size
            self._batches[key] = batch
            assets = self._assets
            for asset, p in parts.items():
                entry = assets.get((member, asset))
                if entry is None:
                    entry = assets[(member, asset)] = _Asset()
                entry.add(_Marker(batch, p.asset_class, p.lo, p.hi))
            self._marker_count += len(parts)
            while self._sample_count > self._max_samples and self._kept:
                self._drop_samples(next(iter(self._kept.values())))
            if self._marker_count > self._max_markers:
                self._assets.clear()
                self._batches.clear()
                self._kept.clear()
                self._marker_count = self._sample_count = 0
                self._drops += 1

    def _drop_samples(self, batch: _Batch) -> None:
        if self._kept.pop((batch.member, batch.written_ns), None) is batch:
            self._sample_count -= batch.size
        batch.parts = None

    def pending(
        self,
        members: Collection[str] | None = None,
        assets: Collection[str] | None = None,
        asset_classes: Collection[str] | None = None,
    ) -> list[AssetPending]:
        """The pending assets (of the given members, assets and classes; ``None``: any), each with its pending
        markers (only those of the given classes)."""
        out: list[AssetPending] = []
        with self._lock:
            for (member, asset), entry in self._assets.items():
                if (members is not None and member not in members) or (assets is not None and asset not in assets):
                    continue
                if asset_classes is None or entry.classes <= set(asset_classes):
                    out.append(AssetPending(member, asset, entry.lo, entry.hi, tuple(entry.markers)))
                    continue
                taken = tuple(m for m in entry.markers if m.asset_class in asset_classes)
                if taken:
                    lo, hi = min(m.lo for m in taken), max(m.hi for m in taken)
                    out.append(AssetPending(member, asset, lo, hi, taken))
        return out

    def done(self, handled: Iterable[AssetPending], read_back: Iterable[tuple[str, str, int]] = ()) -> None:
        """The markers of ``handled`` (and this writer's markers ``read_back`` from InfluxDB, as (member, asset,
        written_ns)) were handled; a batch none of whose markers is pending any more is forgotten."""
        with self._lock:
            for p in handled:
                entry = self._assets.get((p.member, p.asset))
                if entry is None:
                    continue
                n = len(p.markers)
                if tuple(entry.markers[:n]) == p.markers:  # the usual case: none recorded since came before
                    removed = entry.markers[:n]
                    del entry.markers[:n]
                else:
                    taken = {id(m) for m in p.markers}
                    removed = [m for m in entry.markers if id(m) in taken]
                    entry.markers = [m for m in entry.markers if id(m) not in taken]
                self._finish(p.member, p.asset, entry, removed)
            for member, asset, written_ns in read_back:
                entry = self._assets.get((member, asset))
                if entry is None:
                    continue
                removed = [m for m in entry.markers if m.batch.written_ns == written_ns]
                entry.markers = [m for m in entry.markers if m.batch.written_ns != written_ns]
                self._finish(member, asset, entry, removed)

    def _finish(self, member: str, asset: str, entry: _Asset, removed: list[_Marker]) -> None:
        if not removed:
            return
        if entry.markers:
            entry.reset_union()
        else:
            del self._assets[(member, asset)]
        self._marker_count -= len(removed)
        for m in removed:
            batch = m.batch
            batch.remaining -= 1
            if batch.remaining == 0:
                key = (batch.member, batch.written_ns)
                if self._batches.get(key) is batch:
                    del self._batches[key]
                    self._done.add(key)
                self._drop_samples(batch)

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
            for key in [k for k in self._assets if k[0] == member]:
                self._marker_count -= len(self._assets.pop(key).markers)
            for batch_key in [k for k in self._batches if k[0] == member]:
                self._drop_samples(self._batches.pop(batch_key))
