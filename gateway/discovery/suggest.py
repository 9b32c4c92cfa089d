"""What a discovered variable probably is: a canonical signal, personal data to exclude, or nothing. Pure.

A suggestion is a proposal for a person to review, never a decision: it comes from the variable's browse
name, its data type and its ``EngineeringUnits`` property, in this order of trust:

1. a unit the policy can convert (``W``, ``kWh``, ``K``, ``rpm``, …) decides the quantity, and the name only
   decides between signals of that unit (``parts_total`` / ``parts_scrap_total`` share ``1``);
2. without a unit, the name decides (``Wirkleistung``, ``Temp``, ``Drehzahl``, ``Ausschuss``, ``Betriebsart``)
   if the data type fits the signal (numbers for gauges and counters, integers, booleans or strings for
   states);
3. otherwise nothing is suggested and the node is listed as not mapped.

A variable whose name (or whose parent's name) matches the policy's personal-data patterns, or whose data
type is free text (``String``, ``LocalizedText``) and that is not a state, is excluded with the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from wire.catalog import SIGNALS

from ..policy import DEFAULT_PERSONAL_PATTERNS, UNIT_CONVERSIONS

NUMERIC = frozenset(
    {"SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64", "Float", "Double", "Number"}
)
INTEGRAL = frozenset({"SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64"})
FREE_TEXT = frozenset({"String", "LocalizedText", "XmlElement", "ByteString"})

#: (canonical signal, name pattern) in order of precedence; the patterns are matched case-insensitively.
_NAMES: tuple[tuple[str, str], ...] = (
    ("parts_scrap_total", r"scrap|reject|ausschuss|nio\b|schlecht"),
    ("parts_total", r"parts|teile|stueck|stück|count|pieces|zaehler_teile|good_parts"),
    ("energy_kwh", r"energy|energie|kwh|arbeit|verbrauch"),
    ("power_kw", r"power|leistung|\bkw\b|wirkleistung"),
    ("temperature_c", r"temp"),
    ("spindle_speed_rpm", r"speed|drehzahl|rpm|spindel"),
    ("state", r"state|status|mode|betriebsart|zustand"),
)
_NAME_RES = tuple((signal, re.compile(p, re.IGNORECASE)) for signal, p in _NAMES)
_PERSONAL_RE = re.compile("|".join(re.escape(p) for p in DEFAULT_PERSONAL_PATTERNS), re.IGNORECASE)

#: Spellings of units in EngineeringUnits display names -> the policy's unit names.
_UNIT_ALIASES = {"°c": "°C", "degc": "°C", "c": "°C", "k": "K", "°f": "°F", "min-1": "1/min", "u/min": "1/min"}


@dataclass(frozen=True, slots=True)
class Suggestion:
    canonical: str | None = None
    unit: str | None = None  # the raw unit the policy converts from (None: already canonical, or unknown)
    conversion: str | None = None  # e.g. "W -> kW"
    excluded: str | None = None  # why the node must not be used


def normalise_unit(text: str | None) -> str | None:
    if not text:
        return None
    t = text.strip()
    known = {src for src, _ in UNIT_CONVERSIONS}
    if t in known:
        return t
    return _UNIT_ALIASES.get(t.lower(), t)


def personal_reason(name: str, parent: str) -> str | None:
    """Why a variable looks like personal data, or ``None``."""
    for text, where in ((name, "name"), (parent, "parent object's name")):
        m = _PERSONAL_RE.search(text)
        if m:
            return f"personal data: the {where} contains '{m.group(0).lower()}'"
    return None


def suggest(name: str, data_type: str | None, unit_text: str | None, *, parent: str = "") -> Suggestion:
    """The suggested canonical signal for one variable (see the module docstring for the rules)."""
    why = personal_reason(name, parent)
    if why is not None:
        return Suggestion(excluded=why)
    unit = normalise_unit(unit_text)
    by_name = [signal for signal, rx in _NAME_RES if rx.search(name)]
    if unit is not None:
        targets = sorted({dst for src, dst in UNIT_CONVERSIONS if src == unit})
        candidates = [s for s, spec in SIGNALS.items() if spec.unit in targets and spec.kind != "state"]
        if candidates:
            named = [s for s in by_name if s in candidates]
            canonical = named[0] if named else (candidates[0] if len(candidates) == 1 else None)
            if canonical is not None and (data_type is None or data_type in NUMERIC):
                target = SIGNALS[canonical].unit
                conversion = None if unit == target else f"{unit} -> {target}"
                return Suggestion(canonical=canonical, unit=None if unit == target else unit, conversion=conversion)
    if data_type in FREE_TEXT and "state" not in by_name[:1]:
        return Suggestion(excluded="free text: a string may hold names or comments")
    for canonical in by_name:
        kind = SIGNALS[canonical].kind
        if kind == "state" and (data_type is None or data_type in INTEGRAL or data_type in {"Boolean", "String"}):
            return Suggestion(canonical=canonical)
        if kind == "counter" and (data_type is None or data_type in NUMERIC):
            return Suggestion(canonical=canonical)
        if kind == "gauge" and (data_type is None or data_type in NUMERIC):
            return Suggestion(canonical=canonical)
    return Suggestion()
