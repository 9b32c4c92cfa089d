"""A fast InfluxDB line-protocol encoder (pure; no I/O).

influxdb-client's ``Point`` is the reference: for every input this module accepts,
the output is byte-for-byte what ``Point.to_line_protocol()`` produces (property
tests check this). It is several times faster because it caches the escaped
series key of each (asset, asset class, signal) and formats values directly.

Escaping (as ``Point`` does it):

* measurement: ``,`` and space escaped with ``\\``; ``\\n``, ``\\t``, ``\\r`` written as escapes;
* tag keys, tag values and field keys: additionally ``=``; a tag value ending in a
  backslash gets a trailing space so that it cannot escape the separator;
* string field values: inside double quotes, with ``"`` and ``\\`` escaped.

Tags and fields are written sorted by key; tags with empty values and ``None``
fields are left out. Floats are written with Python's shortest round-trip repr
(a trailing ``.0`` dropped), integers with the ``i`` suffix, booleans as
``true`` / ``false``. Timestamps are integers in nanoseconds.

Samples are encoded as one point each in the measurement ``samples``, tagged by
``asset``, ``asset_class``, ``member`` and ``signal``; numbers go to the float field
``value``, machine states to the string field ``text``, and the quality to the
integer field ``quality`` (see docs/storage.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from wire import Sample

FieldValue = float | int | bool | str | None

_ESCAPE_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_ESCAPE_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_ESCAPE_STRING = str.maketrans({'"': r"\"", "\\": r"\\"})

SAMPLES_MEASUREMENT = "samples"


def escape_measurement(name: str) -> str:
    return name.translate(_ESCAPE_MEASUREMENT)


def escape_key(key: str) -> str:
    """Escape a tag key or a field key."""
    return key.translate(_ESCAPE_KEY)


def escape_tag_value(value: str) -> str:
    out = value.translate(_ESCAPE_KEY)
    return out + " " if out.endswith("\\") else out


def format_float(value: float) -> str:
    s = repr(value)
    return s[:-2] if s.endswith(".0") else s


def format_field(value: float | int | bool | str) -> str | None:
    """The line-protocol text of one field value, or ``None`` when it cannot be written (NaN, inf)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return format_float(value) if math.isfinite(value) else None
    return '"' + value.translate(_ESCAPE_STRING) + '"'


def encode_point(measurement: str, tags: Mapping[str, str], fields: Mapping[str, FieldValue], ts_ns: int | None) -> str:
    """One line (without the newline); ``""`` when no field can be written, as ``Point`` does."""
    parts: list[str] = []
    for key, value in sorted(fields.items()):
        if value is None:
            continue
        text = format_field(value)
        if text is not None:
            parts.append(f"{escape_key(key)}={text}")
    if not parts:
        return ""
    tag_text = ""
    for key, tag in sorted(tags.items()):
        k, v = escape_key(key), escape_tag_value(tag)
        if k and v:
            tag_text += f",{k}={v}"
    line = f"{escape_measurement(measurement)}{tag_text} {','.join(parts)}"
    return line if ts_ns is None else f"{line} {int(ts_ns)}"


def encode_lines(lines: Iterable[str]) -> bytes:
    """Join lines into a request body (one point per line, empty lines dropped)."""
    return "\n".join(line for line in lines if line).encode("utf-8")


class SampleEncoder:
    """Encodes wire samples as points of :data:`SAMPLES_MEASUREMENT`, caching escaped series keys.

    Not thread-safe (the cache is a plain dict); use one per writer thread.
    """

    def __init__(self, measurement: str = SAMPLES_MEASUREMENT, *, max_cached_series: int = 200_000) -> None:
        self._measurement = escape_measurement(measurement)
        self._series: dict[tuple[str, str, str, str], str] = {}
        self._max = max_cached_series

    def _series_key(self, member: str, s: Sample) -> str:
        key = (member, s.asset, s.asset_class, s.signal)
        text = self._series.get(key)
        if text is None:
            if len(self._series) >= self._max:
                self._series.clear()
            # Already in key order: asset, asset_class, member, signal.
            tags = (("asset", s.asset), ("asset_class", s.asset_class), ("member", member), ("signal", s.signal))
            text = (
                self._measurement
                + "".join(f",{escape_key(k)}={escape_tag_value(v)}" for k, v in tags if v)
                + " quality="
            )
            self._series[key] = text
        return text

    def encode(self, member: str, samples: Sequence[Sample]) -> bytes:
        """The request body for ``samples`` of ``member``; non-finite numbers are skipped (the wire forbids them)."""
        out: list[str] = []
        append = out.append
        series = self._series_key
        for s in samples:
            v = s.value
            if isinstance(v, str):
                append(f'{series(member, s)}{s.quality}i,text="{v.translate(_ESCAPE_STRING)}" {s.ts}')
                continue
            f = float(v)
            if not math.isfinite(f):
                continue
            r = repr(f)
            if r.endswith(".0"):
                r = r[:-2]
            append(f"{series(member, s)}{s.quality}i,value={r} {s.ts}")
        return "\n".join(out).encode("utf-8")


def encode_samples(member: str, samples: Sequence[Sample]) -> bytes:
    """Convenience: :meth:`SampleEncoder.encode` with a fresh encoder."""
    return SampleEncoder().encode(member, samples)
