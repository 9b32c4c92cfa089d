"""Encode and decode sample batches: versioned, compact and compressed, with a batch id so that a
batch redelivered under QoS 1 (at least once) is harmless.

Payload layout: the 4-byte magic ``MDZ1`` followed by a zstd frame holding the
MessagePack encoding of a :class:`~wire.model.Batch`. Decoding is defensive: sizes
are bounded before and during decompression (no decompression bombs), and every
field is validated, so that a receiver can reject a payload with a reason instead
of crashing on it.
"""

from __future__ import annotations

import math
import re

import msgspec
import zstandard

from .catalog import ASSET_CLASSES, COUNTER_SIGNALS, GAUGE_SIGNALS, SIGNALS, STATE_SIGNALS, STATE_VALUES
from .errors import InvalidBatch, PayloadTooLarge, UnsupportedSchema, WireError
from .model import (
    KEY_ID_RE,
    MAX_STRING_VALUE,
    MEMBER_RE,
    PSEUDONYM_RE,
    SUPPORTED_SCHEMAS,
    Batch,
    Quality,
    Sample,
    Status,
)

MAGIC = b"MDZ1"
#: Defaults for receivers; both can be lowered or raised per receiver.
MAX_PAYLOAD_BYTES = 8 * 1024 * 1024
MAX_DECODED_BYTES = 64 * 1024 * 1024
MAX_SAMPLES = 200_000

#: The integers MessagePack carries (a sample's integer value outside them cannot be encoded at all).
MIN_INT_VALUE = -(2**63)
MAX_INT_VALUE = 2**64 - 1

#: Plausible timestamps: 2000-01-01 .. 2100-01-01 in ns.
MIN_TS_NS = 946_684_800 * 10**9
MAX_TS_NS = 4_102_444_800 * 10**9
#: How far ahead of its own clock a receiver accepts a sample's timestamp, by default (the hub's ingestor and
#: the gateway's normaliser both take it): room for clocks that disagree by minutes, none for a clock set wrong.
#: A sample stamped in the future would stay the newest of its series until that time came: every later,
#: correct sample of it would look out of order (the gateway drops such ones as replayed, the hub recomputes).
DEFAULT_MAX_AHEAD_S = 600.0

_BATCH_ID_RE = re.compile(r"^[0-9a-zA-Z_-]{8,64}$")

_encoder = msgspec.msgpack.Encoder()
_batch_decoder = msgspec.msgpack.Decoder(Batch)
_status_decoder = msgspec.json.Decoder(Status)
_GAUGE_SIGNALS = frozenset(GAUGE_SIGNALS)
_COUNTER_SIGNALS = frozenset(COUNTER_SIGNALS)
_STATE_SIGNALS = frozenset(STATE_SIGNALS)
#: (state signal, value) pairs the contract admits.
_STATE_PAIRS = frozenset((sig, v) for sig, values in STATE_VALUES.items() for v in values)
_CLASSES = frozenset(ASSET_CLASSES)


class Codec:
    """Reusable encoder (one per thread: zstd contexts are not thread-safe)."""

    def __init__(self, *, level: int = 3) -> None:
        self._cctx = zstandard.ZstdCompressor(level=level, write_content_size=True)

    def encode(self, batch: Batch) -> bytes:
        return MAGIC + self._cctx.compress(_encoder.encode(batch))


def encode_batch(batch: Batch, *, level: int = 3) -> bytes:
    """Encode ``batch`` to a wire payload (convenience; see :class:`Codec`)."""
    return Codec(level=level).encode(batch)


def decode_batch(
    payload: bytes,
    *,
    max_payload_bytes: int = MAX_PAYLOAD_BYTES,
    max_decoded_bytes: int = MAX_DECODED_BYTES,
    earliest_ns: int | None = None,
    latest_ns: int | None = None,
) -> Batch:
    """Decode and fully validate a wire payload; raise :class:`WireError` with a reason.

    ``latest_ns``: the newest sample timestamp accepted (the receiver's clock plus its allowance, see
    :data:`DEFAULT_MAX_AHEAD_S`); a batch with a later one is refused with the code ``future``. ``earliest_ns``: the
    oldest accepted (a store's retention); a batch with an earlier one is refused with the code ``expired``.
    """
    if len(payload) > max_payload_bytes:
        raise PayloadTooLarge(f"payload of {len(payload)} bytes exceeds the limit of {max_payload_bytes}")
    if payload[:4] != MAGIC:
        raise WireError(f"payload does not start with the magic {MAGIC!r}", code="magic")
    frame = payload[4:]
    try:
        declared = zstandard.frame_content_size(frame)
    except zstandard.ZstdError as exc:
        raise WireError(f"payload is not a zstd frame: {exc}", code="decompress") from exc
    if declared > max_decoded_bytes:
        raise PayloadTooLarge(f"payload declares {declared} decompressed bytes, over the limit of {max_decoded_bytes}")
    try:
        with zstandard.ZstdDecompressor().stream_reader(frame) as reader:
            raw = reader.read(max_decoded_bytes + 1)
    except zstandard.ZstdError as exc:
        raise WireError(f"payload does not decompress: {exc}", code="decompress") from exc
    if len(raw) > max_decoded_bytes:
        raise PayloadTooLarge(f"payload decompresses to more than {max_decoded_bytes} bytes")
    try:
        batch = _batch_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        if "schema" in str(exc):
            raise UnsupportedSchema(f"batch does not match the schema: {exc}") from exc
        raise InvalidBatch(f"batch does not match the schema: {exc}", code="decode") from exc
    except msgspec.DecodeError as exc:
        raise InvalidBatch(f"batch is not valid MessagePack: {exc}", code="decode") from exc
    validate_batch(batch, earliest_ns=earliest_ns, latest_ns=latest_ns)
    return batch


def validate_batch(batch: Batch, *, earliest_ns: int | None = None, latest_ns: int | None = None) -> None:
    """Check every field of ``batch``; raise :class:`InvalidBatch` naming the first bad one (``earliest_ns`` and
    ``latest_ns``: see :func:`decode_batch`)."""
    if batch.schema not in SUPPORTED_SCHEMAS:
        raise UnsupportedSchema(
            f"schema version {batch.schema} is not supported (supported: {sorted(SUPPORTED_SCHEMAS)})"
        )
    if not _BATCH_ID_RE.fullmatch(batch.batch_id):
        raise InvalidBatch("batch_id must be 8-64 characters of [0-9a-zA-Z_-]")
    if not MEMBER_RE.fullmatch(batch.member):
        raise InvalidBatch(f"member {batch.member!r} is not a member pseudonym (m-<hex>)")
    if not PSEUDONYM_RE.fullmatch(batch.gateway):
        raise InvalidBatch("gateway is not a pseudonym (<letter>-<hex>)")
    if not KEY_ID_RE.fullmatch(batch.key_id):
        raise InvalidBatch("key_id must be 1-32 characters of [0-9a-zA-Z_.-]")
    n = len(batch.samples)
    if n == 0:
        raise InvalidBatch("batch holds no samples")
    if n > MAX_SAMPLES:
        raise PayloadTooLarge(f"batch holds {n} samples, over the limit of {MAX_SAMPLES}")
    hi = MAX_TS_NS if latest_ns is None else min(MAX_TS_NS, latest_ns)
    lo = MIN_TS_NS if earliest_ns is None else max(MIN_TS_NS, earliest_ns)
    if _all_samples_valid(batch.samples, hi, lo):
        return
    for i, s in enumerate(batch.samples):
        reason = sample_problem(s)
        if reason is not None:
            raise InvalidBatch(f"sample {i}: {reason}")
        if earliest_ns is not None and s.ts < earliest_ns:
            raise InvalidBatch(
                f"sample {i}: timestamp {s.ts} ns is {(earliest_ns - s.ts) / 1e9:.0f} s earlier than the oldest this "
                "receiver keeps (its retention of raw data): it would be deleted at once",
                code="expired",
            )
        if latest_ns is not None and s.ts > latest_ns:
            raise InvalidBatch(
                f"sample {i}: timestamp {s.ts} ns is {(s.ts - latest_ns) / 1e9:.0f} s later than the newest this "
                "receiver accepts now (its clock plus its allowance for clocks that disagree): the clock of the "
                "machine or of the gateway is set ahead",
                code="future",
            )
    raise AssertionError("the fast sample check and sample_problem disagree")  # pragma: no cover


#: (signal, value type) pairs the contract admits; bool is its own type, so it is never a number here.
_VALUE_TYPES = frozenset(
    {(sig, t) for sig in _GAUGE_SIGNALS | _COUNTER_SIGNALS for t in (int, float)}
    | {(sig, str) for sig in _STATE_SIGNALS}
)


def _all_samples_valid(samples: list[Sample], latest_ns: int = MAX_TS_NS, earliest_ns: int = MIN_TS_NS) -> bool:
    """The hub's hot path: the same rules as :func:`sample_problem`, about three times faster, and no timestamp
    after ``latest_ns`` (at most :data:`MAX_TS_NS`) or before ``earliest_ns`` (at least :data:`MIN_TS_NS`).

    It only answers yes or no; on a no, :func:`validate_batch` looks for the first bad sample
    with :func:`sample_problem` to name the reason. A property test keeps the two in step.
    """
    value_types, states, counters, classes = _VALUE_TYPES, _STATE_PAIRS, _COUNTER_SIGNALS, _CLASSES
    lo, hi, match = earliest_ns, latest_ns, PSEUDONYM_RE.fullmatch
    imin, imax = MIN_INT_VALUE, MAX_INT_VALUE
    assets: set[str] = set()
    for s in samples:
        v = s.value
        t = type(v)
        if (s.signal, t) not in value_types:
            return False
        if t is str:
            if (s.signal, v) not in states:
                return False
        elif (  # NaN and ±inf fail v - v == 0; an int must fit MessagePack's 64 bits
            v - v != 0  # type: ignore[operator]
            or (v < 0 and s.signal in counters)  # type: ignore[operator]
            or (t is int and not imin <= v <= imax)  # type: ignore[operator]
        ):
            return False
        if not lo <= s.ts <= hi or not 0 <= s.quality <= 2 or s.asset_class not in classes:
            return False
        a = s.asset
        if a not in assets:
            if not match(a):
                return False
            assets.add(a)
    return True


def sample_problem(s: Sample) -> str | None:
    """Return why ``s`` breaks the contract, or ``None`` if it is valid."""
    if not MIN_TS_NS <= s.ts <= MAX_TS_NS:
        return f"timestamp {s.ts} ns is outside 2000..2100"
    if not PSEUDONYM_RE.fullmatch(s.asset):
        return "asset is not a pseudonym (<letter>-<hex>)"
    if s.asset_class not in _CLASSES:
        return f"unknown asset class {s.asset_class[:40]!r}"
    if not 0 <= s.quality <= Quality.BAD:
        return f"quality {s.quality} is not 0 (good), 1 (uncertain) or 2 (bad)"
    v = s.value
    sig = s.signal
    if sig in _GAUGE_SIGNALS or sig in _COUNTER_SIGNALS:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return f"signal {sig} needs a number, got {type(v).__name__}"
        if isinstance(v, float) and not math.isfinite(v):
            return f"signal {sig} value is not finite"
        if isinstance(v, int) and not MIN_INT_VALUE <= v <= MAX_INT_VALUE:
            return f"signal {sig} value is outside the 64-bit integers MessagePack carries"
        if sig in _COUNTER_SIGNALS and v < 0:
            return f"counter {sig} is negative"
        return None
    if sig in _STATE_SIGNALS:
        if not isinstance(v, str) or v not in STATE_VALUES[sig]:
            return f"signal {sig} needs one of {', '.join(SIGNALS[sig].values)}"
        return None
    return f"unknown signal {sig[:MAX_STRING_VALUE]!r}"


def encode_status(status: Status) -> bytes:
    return msgspec.json.encode(status)


def decode_status(payload: bytes) -> Status:
    """Decode and fully validate a status (birth / death) message; raise :class:`WireError` with a reason."""
    if len(payload) > 4096:
        raise PayloadTooLarge("status message over 4096 bytes")
    try:
        status = _status_decoder.decode(payload)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidBatch(f"status message is invalid: {exc}", code="decode") from exc
    validate_status(status)
    return status


def validate_status(status: Status) -> None:
    """Check every field of ``status`` as :func:`validate_batch` checks a batch's."""
    if status.schema not in SUPPORTED_SCHEMAS:
        raise UnsupportedSchema(
            f"status schema version {status.schema} is not supported (supported: {sorted(SUPPORTED_SCHEMAS)})"
        )
    if not MEMBER_RE.fullmatch(status.member):
        raise InvalidBatch(f"status member {status.member[:40]!r} is not a member pseudonym (m-<hex>)")
    if not PSEUDONYM_RE.fullmatch(status.gateway):
        raise InvalidBatch("status gateway is not a pseudonym (<letter>-<hex>)")
    if status.state not in ("online", "offline"):
        raise InvalidBatch(f"status state {status.state[:20]!r} is neither online nor offline")
    if not MIN_TS_NS <= status.ts_ns <= MAX_TS_NS:
        raise InvalidBatch(f"status timestamp {status.ts_ns} ns is outside 2000..2100")
