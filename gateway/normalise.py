"""The normalise step: a raw reading with clear identifiers becomes a wire :class:`~wire.Sample`
or a counted drop. Pure: no I/O besides the pseudonymiser's local journal.

One :class:`Normaliser` per source, so that counters and the last values (for the heartbeat)
are per source; all of them share one :class:`~gateway.pseudonymise.Pseudonymiser`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgspec

from wire.codec import MAX_INT_VALUE, MAX_TS_NS, MIN_INT_VALUE, MIN_TS_NS, sample_problem
from wire.model import MAX_STRING_VALUE, Quality, Sample

from .policy import Policy, SignalRule
from .pseudonymise import Pseudonymiser

#: Why a reading did not become a sample (counter labels).
DROP_REASONS = (
    "not_allowed",  # local signal not in the allow-list (default deny)
    "personal",  # looks like personal data and the policy does not name it as personal
    "quality",  # status worse than policy.min_quality
    "no_value",  # the source delivered no value
    "type",  # value of a type the canonical signal cannot hold
    "state_unmapped",  # a state code the policy does not map
    "invalid",  # not finite, negative counter, timestamp outside 2000..2100
    "future",  # stamped more than policy.max_ahead_s ahead of the gateway's clock (the machine's clock is wrong)
    "contract",  # the sample would break the wire contract
    "replayed",  # not newer than what was already sent for this asset and signal (re-read after a reconnect)
)


class Reading(msgspec.Struct, gc=False):
    """A raw value as a source delivers it, identifiers in clear. Never leaves the gateway."""

    asset: str
    signal: str
    value: Any
    recv_ns: int
    source_ns: int | None = None
    server_ns: int | None = None
    status: int = 0


def quality_of(status: int) -> int:
    """OPC UA status code -> :class:`~wire.Quality` (top two bits: 00 good, 01 uncertain, 1x bad)."""
    severity = (status >> 30) & 0b11
    if severity == 0:
        return Quality.GOOD
    if severity == 1:
        return Quality.UNCERTAIN
    return Quality.BAD


def transform_number(rule: SignalRule, value: float) -> float:
    """Scale/convert, clip, bin (floor to multiples) and round one number."""
    v = value * rule.factor + rule.offset
    if v < rule.clip_low:
        v = rule.clip_low
    elif v > rule.clip_high:
        v = rule.clip_high
    if rule.bin:
        v = math.floor(v / rule.bin) * rule.bin
    if rule.digits >= 0:
        v = round(v, rule.digits)
    return v


class _Series:
    """What a normaliser keeps of one output series (asset pseudonym, canonical signal), in one record so that a
    sample updates attributes instead of a handful of dicts: the last sample and its rule (for the heartbeat),
    when the source last delivered or confirmed it, and how far behind its arrival its last change was."""

    __slots__ = ("confirmed_ns", "key", "lag_ns", "last", "rule")

    def __init__(self, key: tuple[str, str]) -> None:
        self.key = key
        self.last: Sample | None = None
        self.rule: SignalRule | None = None
        self.confirmed_ns = 0
        self.lag_ns = 0


#: (asset pseudonym, asset class, rule, series, whether the rule passes numbers as they are) of an allowed
#: (asset, local signal), or why it is dropped.
_Prepared = tuple[str, str, SignalRule, _Series, bool]


class _Drop(Exception):
    """A value the rule cannot turn into a sample value; ``reason`` is the drop reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Watermarks:
    """Newest source timestamp sent per (asset pseudonym, canonical signal), shared by a gateway's sources.

    ``dirty`` collects the marks advanced since the last :meth:`take_dirty`, which the gateway writes to
    the disk buffer in the same transaction as the samples, so that the marks survive a restart.
    Heartbeat repeats do not advance them (they carry the gateway's clock, not the machine's).
    """

    def __init__(self, initial: dict[tuple[str, str], int] | None = None) -> None:
        self.ts: dict[tuple[str, str], int] = dict(initial or {})
        self.dirty: dict[tuple[str, str], int] = {}

    def take_dirty(self) -> dict[tuple[str, str], int]:
        dirty, self.dirty = self.dirty, {}
        return dirty


class Normaliser:
    def __init__(
        self,
        policy: Policy,
        pseudonymiser: Pseudonymiser,
        *,
        asset_classes: dict[str, str] | None = None,
        watermarks: Watermarks | None = None,
    ) -> None:
        self.policy = policy
        self.pseudonymiser = pseudonymiser
        self._asset_classes = dict(asset_classes or {})
        self._prepared: dict[tuple[str, str], _Prepared | str] = {}
        #: Counts the changes of the rules (a reloaded policy, a newly classified asset): what was prepared under
        #: an older epoch is void (see :class:`~gateway.normalise_batch.HandleRoutes`).
        self.epoch = 0
        self.accepted = 0
        self.dropped: Counter[str] = Counter()
        #: (asset pseudonym, canonical signal) -> its record: last sample and rule (for the heartbeat), last
        #: delivery or confirmation, lag of the last change.
        self._series: dict[tuple[str, str], _Series] = {}
        #: (asset pseudonym, canonical signal) -> newest timestamp accepted; shared and persisted by the
        #: gateway, so a value that a server delivers again after a reconnect or restart is not sent twice.
        self.watermarks = watermarks if watermarks is not None else Watermarks()
        self._marks = self.watermarks.ts
        #: True for sources that can confirm an unchanged value (OPC UA reads it): the heartbeat then repeats
        #: a value as good only if the source confirmed it within the heartbeat period (:meth:`confirm`).
        self.require_confirmation = False
        #: Told how far ahead (ns) of the gateway's clock each reading dropped as ``future`` was stamped (the
        #: source counts it as a problem: health and a log line).
        self.on_future: Callable[[int], None] | None = None

    def set_policy(self, policy: Policy, asset_classes: dict[str, str]) -> None:
        """Apply a reloaded policy from the next reading on; the heartbeat forgets series whose rule changed."""
        self.policy = policy
        self._asset_classes = dict(asset_classes)
        self._prepared = {}
        self.epoch += 1
        for series in self._series.values():
            if series.rule is not None and policy.rules.get(series.rule.local) != series.rule:
                series.last = series.rule = None

    def classify(self, asset: str, asset_class: str) -> None:
        """Set the asset class of a clear asset id discovered at run time."""
        self._asset_classes[asset] = asset_class
        self._prepared = {k: v for k, v in self._prepared.items() if k[0] != asset}
        self.epoch += 1

    def _prepare(self, asset: str, local: str) -> _Prepared | str:
        rule = self.policy.rules.get(local)
        prepared: _Prepared | str
        if rule is None:
            prepared = "personal" if self.policy.is_personal_name(local) else "not_allowed"
        elif self.policy.is_personal_name(local) and not rule.personal:
            prepared = "personal"
        else:
            aclass = self._asset_classes.get(asset, self.policy.default_asset_class)
            pseudonym = self.pseudonymiser.asset(asset)
            key = (pseudonym, rule.canonical)
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = _Series(key)
            plain = rule.plain and not rule.personal and rule.kind != "state"
            prepared = (pseudonym, aclass, rule, series, plain)
        self._prepared[(asset, local)] = prepared
        return prepared

    def prepared(self, asset: str, local: str) -> _Prepared | str:
        """What a reading of ``asset``/``local`` becomes: (asset pseudonym, asset class, rule, series record, whether
        the rule passes numbers as they are), or the reason it is dropped."""
        found = self._prepared.get((asset, local))
        return found if found is not None else self._prepare(asset, local)

    def watermark(self, asset: str, local: str) -> int | None:
        """The newest timestamp sent of the series a reading of ``asset``/``local`` goes to (``None``: none yet,
        or the reading would be dropped); where a backfill after an outage starts."""
        prepared = self.prepared(asset, local)
        if isinstance(prepared, str):
            return None
        return self._marks.get(prepared[3].key)

    def drop(self, reason: str) -> str:
        self.dropped[reason] += 1
        return reason

    def normalise(self, r: Reading) -> Sample | str:
        """Return the wire sample for ``r`` or the reason it was dropped (counted)."""
        return self.normalise_value(r.asset, r.signal, r.value, r.status, r.source_ns, r.recv_ns)

    def normalise_value(
        self, asset_id: str, local: str, v: Any, status: int, source_ns: int | None, recv_ns: int
    ) -> Sample | str:
        """:meth:`normalise` of a reading given by its fields (the OPC UA source's way: no :class:`Reading`)."""
        prepared = self._prepared.get((asset_id, local))
        if prepared is None:
            prepared = self._prepare(asset_id, local)
        if isinstance(prepared, str):
            return self.drop(prepared)
        asset, aclass, rule, series, plain = prepared
        if status:
            q = quality_of(status)
            if q > self.policy.min_quality:
                return self.drop("quality")
        else:  # good (the lowest minimum quality is good, too)
            q = 0
        if v is None:
            return self.drop("no_value")
        ts = source_ns if source_ns is not None else recv_ns
        if rule.coarsen_ns:
            ts -= ts % rule.coarsen_ns
        if not MIN_TS_NS <= ts <= MAX_TS_NS:
            return self.drop("invalid")
        if ts - recv_ns > self.policy.max_ahead_ns:
            if self.on_future is not None:
                self.on_future(ts - recv_ns)
            return self.drop("future")
        t = type(v)
        value: Any
        if plain and (t is float or t is int):
            # The hot path (nearly every change: a number for a rule that passes it as it is): the checks below
            # that apply to it, nothing else; no sample of it can break the contract.
            if t is float:
                if not math.isfinite(v):
                    return self.drop("invalid")
                if rule.integral and v == int(v):
                    v = int(v)
            if (v < 0 and rule.kind == "counter") or (v.__class__ is int and not MIN_INT_VALUE <= v <= MAX_INT_VALUE):
                return self.drop("invalid")
            sample = Sample(ts, asset, aclass, rule.canonical, v, q)
        else:
            try:
                value = self._value(rule, v, t)
            except _Drop as why:
                return self.drop(why.reason)
            sample = Sample(ts, asset, aclass, rule.canonical, value, q)
            checked = rule.personal or (isinstance(value, str) and len(value) > MAX_STRING_VALUE)
            if checked and sample_problem(sample) is not None:
                return self.drop("contract")
        key = series.key
        marks = self._marks
        mark = marks.get(key)
        if mark is not None and ts <= mark:
            if series.last is None:  # first sight after a restart: the heartbeat repeats it from now on
                series.last = sample
                series.rule = rule
                series.confirmed_ns = recv_ns
            # The source delivered a value it holds as current again (a re-read after a reconnect or a
            # backfill): the series is not catching up with its past.
            series.lag_ns = 0
            return self.drop("replayed")
        self.accepted += 1
        marks[key] = ts
        self.watermarks.dirty[key] = ts
        # How far behind its arrival a *change* is (the first value of a series is the source's current one).
        series.lag_ns = recv_ns - ts if series.last is not None else 0
        series.last = sample
        series.rule = rule
        series.confirmed_ns = recv_ns
        return sample

    def _value(self, rule: SignalRule, v: Any, t: type) -> Any:
        """The sample value of ``v`` (of type ``t``, not ``None``) by ``rule``, off the hot path of
        :meth:`normalise_value`: a person's pseudonym, a mapped state, or a converted or transformed number.
        Raises :class:`_Drop` for a value the rule cannot take."""
        if rule.personal:
            return self.pseudonymiser.person(str(v))
        if rule.kind == "state":
            assert rule.states is not None
            code = ("true" if v else "false") if isinstance(v, bool) else str(v)
            value = rule.states.get(code)
            if value is None:
                raise _Drop("state_unmapped")
            return value
        if t is not float and t is not int:
            if t is bool or isinstance(v, bool):
                raise _Drop("type")
            try:
                v = float(v) if not isinstance(v, int) else int(v)
            except (TypeError, ValueError, OverflowError):
                raise _Drop("type") from None
        if v.__class__ is float and not math.isfinite(v):
            raise _Drop("invalid")  # before a rule's clip could turn an overflowed sensor's inf into a bound
        if not rule.plain:
            try:
                v = transform_number(rule, v)
            except (ValueError, OverflowError):  # a bin of a value too large for it
                raise _Drop("invalid") from None
        if t is float or not rule.plain:
            if not math.isfinite(v):
                raise _Drop("invalid")
            if rule.integral and v == int(v):
                v = int(v)
        if (rule.kind == "counter" and v < 0) or (v.__class__ is int and not MIN_INT_VALUE <= v <= MAX_INT_VALUE):
            raise _Drop("invalid")  # (an integer the wire cannot carry stopped the gateway's buffer at sealing)
        return v

    def confirm(self, asset: str, local: str, recv_ns: int) -> None:
        """The source read (asset, local signal) again and its value is unchanged: the value is still current."""
        prepared = self._prepared.get((asset, local))
        if prepared is None or isinstance(prepared, str):
            return
        series = prepared[3]
        if series.last is not None:
            series.confirmed_ns = recv_ns

    def repeat_stale(self, now_ns: int, older_than_ns: int, *, confirmed_since_ns: int | None = None) -> list[Sample]:
        """Repeat, stamped ``now_ns``, every last value not refreshed for ``older_than_ns``.

        The hub caps how long a state lasts without news; repeating current values while the
        source is connected keeps states and gauges of quiet machines alive. A value is never
        repeated as good on the gateway's word alone: with :attr:`require_confirmation`, only values
        the source delivered or confirmed at or after ``confirmed_since_ns`` are repeated (a stalled
        subscription therefore goes quiet instead of repeating a frozen value).

        Nor is a series repeated while it is catching up with its past: when its last change arrived more
        than four times ``older_than_ns`` after its source timestamp (a source replaying or backfilling
        history), a repeat stamped now would sit before the newer history still to come, and an old
        counter reading after newer ones reads as a counter reset at the hub. It is repeated again once
        a current value arrives or the source delivers its current value again.
        """
        out: list[Sample] = []
        since = now_ns - older_than_ns if confirmed_since_ns is None else confirmed_since_ns
        history = 4 * older_than_ns
        for series in self._series.values():
            s, rule = series.last, series.rule
            if s is None or rule is None:
                continue
            if self.require_confirmation and series.confirmed_ns < since:
                continue
            if series.lag_ns >= history:
                continue
            if now_ns - s.ts >= older_than_ns:
                ts = now_ns - now_ns % rule.coarsen_ns if rule.coarsen_ns else now_ns
                if ts <= s.ts:
                    continue
                repeated = Sample(ts, s.asset, s.asset_class, s.signal, s.value, s.quality)
                series.last = repeated
                out.append(repeated)
        return out
