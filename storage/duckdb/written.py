"""The embedded rollup keeper's memory of the batches this process wrote (pure; no I/O).

A DuckDB file has one writer, the process that opened it, so every batch written since the store was opened
went through this process. A refresh folds an asset from the samples kept here
(:func:`~storage.sample_fold.fold_samples`) instead of reading them back from DuckDB and folding frames
(:func:`~storage.incremental.fold`), when every batch of the asset since its last refresh is kept. The asset is
read back as before when

* it was not refreshed since the store was opened (its pending rows may be older than this process);
* a write that held a batch of it inserted fewer rows than it had (a redelivery, or a sample twice in one flush:
  the file keeps the first, so the samples of that write are not what the file holds; such a batch is kept all
  the same, for the windows of late samples, which need only a superset of what changed);
* the memory was full: beyond ``max_samples`` every kept batch is dropped, and the assets that may have had
  samples in them are read back at their next refresh.

A write only appends a reference to its samples; a refresh passes once over the kept batches of the members it
refreshes. A full refresh (every pending asset) folds everything kept, so the memory is emptied after it.
Not thread-safe by itself: the keeper calls it under the store's connection lock, which also orders every
write before or after every refresh.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from wire import Sample

from ..incremental import Key

#: Samples kept until a refresh has folded them (beyond it every kept batch is dropped and read back).
MAX_KEPT_SAMPLES = 1_000_000


class WrittenBatches:
    """Batches written since their assets' last refresh, per member, numbered in the order written."""

    def __init__(self, *, max_samples: int = MAX_KEPT_SAMPLES) -> None:
        self._max_samples = max_samples
        self._seq = 0
        self._batches: dict[str, list[tuple[int, Sequence[Sample]]]] = {}
        self._count = 0
        #: (member, asset) -> the number of the last batch written before its last refresh
        self._refreshed: dict[Key, int] = {}
        #: batches up to this number may have been dropped
        self._dropped_upto = 0
        #: (member, asset) -> the number of its last batch that is not kept as the file holds it
        self._holes: dict[Key, int] = {}

    @property
    def samples_kept(self) -> int:
        return self._count

    def wrote(self, member: str, samples: Sequence[Sample], *, complete: bool) -> None:
        """``samples`` of ``member`` were committed, every one of them a new row in the file when ``complete``
        (else some were there already: the file keeps the first)."""
        if not samples:
            return
        self._seq += 1
        if not complete:  # kept for the late windows, which need only a superset of what changed
            for asset in {s.asset for s in samples}:
                self._holes[(member, asset)] = self._seq
        if self._count + len(samples) > self._max_samples:
            self._batches.clear()
            self._count = 0
            self._dropped_upto = self._seq
            return
        self._batches.setdefault(member, []).append((self._seq, samples))
        self._count += len(samples)

    def _complete(self, key: Key, *, holes: bool) -> int | None:
        """The number of the key's last refreshed batch when every batch of it since is kept (and, unless ``holes``,
        each of their samples was a new row), else ``None``."""
        refreshed = self._refreshed.get(key)
        if refreshed is None or refreshed < self._dropped_upto or (not holes and self._holes.get(key, 0) > refreshed):
            return None
        return refreshed

    def has_holes(self, key: Key) -> bool:
        """Whether a write of ``key`` since its last refresh found some of its samples in the file already."""
        return self._holes.get(key, 0) > self._refreshed.get(key, 0)

    def samples(self, keys: Iterable[Key], *, holes: bool = False) -> dict[str, dict[str, list[Sample]]]:
        """Per member and asset, the samples written since the asset's last refresh, in the order written: for
        those of ``keys`` whose every such batch is kept and that have any (the others must be read back). With
        ``holes`` also for an asset whose writes found some samples in the file already (the file kept those):
        then the samples are a superset of what changed, enough for a late window (:mod:`storage.late`), not for
        a fold."""
        since: dict[str, dict[str, int]] = {}
        for key in keys:
            refreshed = self._complete(key, holes=holes)
            if refreshed is not None:
                since.setdefault(key[0], {})[key[1]] = refreshed
        out: dict[str, dict[str, list[Sample]]] = {}
        for member, assets in since.items():
            found: dict[str, list[Sample]] = {a: [] for a in assets}
            get = found.get
            oldest = min(assets.values())
            alike = oldest == max(assets.values())  # the usual case: all refreshed together
            for seq, batch in self._batches.get(member, ()):
                if seq <= oldest:
                    continue
                for s in batch:
                    into = get(s.asset)
                    if into is not None and (alike or seq > assets[s.asset]):
                        into.append(s)
            kept = {a: samples for a, samples in found.items() if samples}
            if kept:
                out[member] = kept
        return out

    def refreshed(self, keys: Iterable[Key], *, everything: bool) -> None:
        """A refresh of ``keys`` (every pending asset with ``everything``) committed."""
        seq = self._seq
        for key in keys:
            self._refreshed[key] = seq
            self._holes.pop(key, None)
        if everything:  # every batch kept had pending rows, all of them refreshed now
            self._batches.clear()
            self._count = 0

    def forget(self, member: str) -> None:
        """Drop everything of ``member`` (its rows were deleted)."""
        self._count -= sum(len(b) for _, b in self._batches.pop(member, ()))
        for table in (self._refreshed, self._holes):
            for key in [k for k in table if k[0] == member]:
                del table[key]
