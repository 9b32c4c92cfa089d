"""The member's sharing policy: allow-listed signals and how each is transformed.

Members compete with each other, so a factory shares nothing it did not choose to share.

Default deny: a local signal leaves the factory only if ``[policy.signals.<local name>]`` names it.
Per signal the policy can rename it to a canonical signal of the catalogue, convert its unit, scale
it, clip, bin and round it, coarsen its timestamps, and map raw state codes to machine states.
Machine models are generalised to asset classes. Local signals that look like personal data
(operator, badge, names, free text) are dropped unless their rule says ``personal = true``, and
then their values leave only as keyed ``p-`` pseudonyms.

This module holds the policy's definition (pydantic models, part of the gateway settings) and
compiles it into plain, fast :class:`SignalRule` objects that :mod:`gateway.normalise` applies.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from wire.catalog import ASSET_CLASSES, SIGNALS
from wire.codec import DEFAULT_MAX_AHEAD_S
from wire.model import Quality

from .errors import PolicyError

#: (source unit, canonical unit) -> (factor, offset): canonical = raw * factor + offset.
UNIT_CONVERSIONS: dict[tuple[str, str], tuple[float, float]] = {
    ("W", "kW"): (1e-3, 0.0),
    ("kW", "kW"): (1.0, 0.0),
    ("MW", "kW"): (1e3, 0.0),
    ("Wh", "kWh"): (1e-3, 0.0),
    ("kWh", "kWh"): (1.0, 0.0),
    ("MWh", "kWh"): (1e3, 0.0),
    ("J", "kWh"): (1 / 3.6e6, 0.0),
    ("kJ", "kWh"): (1 / 3.6e3, 0.0),
    ("MJ", "kWh"): (1 / 3.6, 0.0),
    ("°C", "°C"): (1.0, 0.0),
    ("degC", "°C"): (1.0, 0.0),
    ("K", "°C"): (1.0, -273.15),
    ("°F", "°C"): (5 / 9, -32 * 5 / 9),
    ("degF", "°C"): (5 / 9, -32 * 5 / 9),
    ("1/min", "1/min"): (1.0, 0.0),
    ("rpm", "1/min"): (1.0, 0.0),
    ("1/s", "1/min"): (60.0, 0.0),
    ("Hz", "1/min"): (60.0, 0.0),
    ("1", "1"): (1.0, 0.0),
}

#: Local signal names matching these (case-insensitive, anywhere in the name) are treated as
#: possible personal data unless the policy explicitly names them with ``personal = true``.
DEFAULT_PERSONAL_PATTERNS: tuple[str, ...] = (
    "operator",
    "worker",
    "employee",
    "badge",
    "user",
    "name",
    "person",
    "shift_lead",
    "login",
    "comment",
    "note",
    "text",
    "message",
    "bediener",
    "werker",
    "mitarbeiter",
    "ausweis",
    "benutzer",
)

QualityName = Literal["good", "uncertain", "bad"]


class SignalPolicy(BaseModel):
    """How one allow-listed local signal leaves the factory."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    canonical: str = Field(description="Canonical signal name from the catalogue")
    unit: str | None = Field(default=None, description="Unit of the raw value; converted to the canonical unit")
    scale: float = 1.0
    offset: float = 0.0
    clip: tuple[float, float] | None = None
    bin: float | None = Field(default=None, gt=0)
    round: int | None = Field(default=None, ge=0, le=12)
    coarsen_s: float = Field(default=0.0, ge=0, description="Floor timestamps to multiples of this many seconds")
    states: dict[str, str] | None = Field(
        default=None, description="Raw value (as text) -> a value of the state signal (machine state, reason)"
    )
    personal: bool = Field(default=False, description="The value identifies a person: send only a p- pseudonym")

    @field_validator("canonical")
    @classmethod
    def _known_signal(cls, v: str) -> str:
        if v not in SIGNALS:
            raise ValueError(f"must be a catalogue signal ({', '.join(sorted(SIGNALS))})")
        return v

    @model_validator(mode="after")
    def _unit_known(self) -> SignalPolicy:
        spec = SIGNALS[self.canonical]
        if self.states is not None and spec.kind == "state":
            bad = sorted(set(self.states.values()) - set(spec.values))
            if bad:
                raise ValueError(f"state values must be among {', '.join(spec.values)}; got {bad}")
        if self.unit is not None and spec.kind != "state" and (self.unit, spec.unit) not in UNIT_CONVERSIONS:
            known = sorted(src for (src, dst) in UNIT_CONVERSIONS if dst == spec.unit)
            raise ValueError(f"unit {self.unit!r} cannot be converted to {spec.unit!r}; known: {', '.join(known)}")
        if self.clip is not None and not self.clip[0] <= self.clip[1]:
            raise ValueError("clip must be [low, high] with low <= high")
        return self


class PolicySettings(BaseModel):
    """The ``[policy]`` section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    signals: dict[str, SignalPolicy] = Field(default_factory=dict)
    asset_classes: dict[str, str] = Field(default_factory=dict, description="Machine model -> asset class")
    default_asset_class: str = "other"
    min_quality: QualityName = "bad"
    #: A reading stamped more than this many seconds ahead of the gateway's clock is dropped (``future``): the
    #: machine's clock is set wrong, and the hub would refuse the whole batch holding it (its own allowance,
    #: ``ingest.max_ahead_s``, has the same default).
    max_ahead_s: float = Field(default=DEFAULT_MAX_AHEAD_S, gt=0, le=7 * 86_400)
    personal_patterns: list[str] = Field(default_factory=lambda: list(DEFAULT_PERSONAL_PATTERNS))

    @field_validator("asset_classes")
    @classmethod
    def _classes(cls, v: dict[str, str]) -> dict[str, str]:
        bad = sorted({c for c in v.values() if c not in ASSET_CLASSES})
        if bad:
            raise ValueError(f"asset classes must be among {', '.join(ASSET_CLASSES)}; got {bad}")
        return v

    @field_validator("default_asset_class")
    @classmethod
    def _default_class(cls, v: str) -> str:
        if v not in ASSET_CLASSES:
            raise ValueError(f"must be one of {', '.join(ASSET_CLASSES)}")
        return v


@dataclass(frozen=True, slots=True)
class SignalRule:
    """A compiled :class:`SignalPolicy`: every transformation folded into a few numbers."""

    local: str
    canonical: str
    kind: str
    factor: float = 1.0
    offset: float = 0.0
    clip_low: float = -math.inf
    clip_high: float = math.inf
    bin: float = 0.0
    digits: int = -1
    coarsen_ns: int = 0
    states: dict[str, str] | None = None
    personal: bool = False
    integral: bool = False
    plain: bool = field(default=False)  # no numeric transformation at all


@dataclass(frozen=True, slots=True)
class Policy:
    rules: dict[str, SignalRule]
    asset_classes: dict[str, str]
    default_asset_class: str
    min_quality: int
    personal_re: re.Pattern[str] | None
    max_ahead_ns: int = int(DEFAULT_MAX_AHEAD_S * 1e9)

    def is_personal_name(self, local: str) -> bool:
        return self.personal_re is not None and self.personal_re.search(local) is not None

    def asset_class(self, model: str | None, explicit: str | None = None) -> str:
        if explicit is not None:
            return explicit
        if model is not None:
            return self.asset_classes.get(model, self.default_asset_class)
        return self.default_asset_class


def compile_rule(local: str, sp: SignalPolicy) -> SignalRule:
    spec = SIGNALS[sp.canonical]
    factor, offset = sp.scale, sp.offset
    if sp.unit is not None and spec.kind != "state":
        f, o = UNIT_CONVERSIONS[(sp.unit, spec.unit)]
        factor, offset = factor * f, offset * f + o
    low, high = sp.clip if sp.clip is not None else (-math.inf, math.inf)
    digits = sp.round if sp.round is not None else -1
    plain = factor == 1.0 and offset == 0.0 and sp.clip is None and sp.bin is None and digits < 0
    states = {s: s for s in spec.values} if spec.kind == "state" and sp.states is None else sp.states
    return SignalRule(
        local=local,
        canonical=sp.canonical,
        kind=spec.kind,
        factor=factor,
        offset=offset,
        clip_low=low,
        clip_high=high,
        bin=sp.bin or 0.0,
        digits=digits,
        coarsen_ns=int(sp.coarsen_s * 1e9),
        states=states,
        personal=sp.personal,
        integral=spec.kind == "counter" and spec.unit == "1",
        plain=plain,
    )


def compile_policy(ps: PolicySettings) -> Policy:
    try:
        rules = {local: compile_rule(local, sp) for local, sp in ps.signals.items()}
        patterns = [re.escape(p) for p in ps.personal_patterns if p]
        personal_re = re.compile("|".join(patterns), re.IGNORECASE) if patterns else None
    except (KeyError, re.error) as exc:
        raise PolicyError(f"policy cannot be compiled: {exc}") from exc
    return Policy(
        rules=rules,
        asset_classes=dict(ps.asset_classes),
        default_asset_class=ps.default_asset_class,
        min_quality=int(Quality[ps.min_quality.upper()]),
        personal_re=personal_re,
        max_ahead_ns=int(ps.max_ahead_s * 1e9),
    )
