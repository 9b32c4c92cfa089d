"""Consent: which of a member's data categories may be used for which purpose, and when (pure; no I/O).

A member's consent is a list of permissions, each in the shape of an ODRL permission
(W3C ODRL 2.2): a *target* (the data category), the action ``use``, a *purpose*
constraint and a validity period (``dateTime`` constraints)::

    [[member.permission]]
    target = "kpis"                       # raw_series | kpis | benchmark
    purpose = "research"                  # one of the register's purposes
    valid_from = 2026-01-01T00:00:00Z
    valid_until = 2027-01-01T00:00:00Z    # optional; open-ended when absent

A use is permitted at time ``t`` when some permission of the category and the
purpose has ``valid_from <= t < valid_until``. Nothing else is permitted (default
deny). Withdrawing a consent sets ``valid_until`` to the moment of withdrawal, so
the register keeps the history of what was allowed when. :func:`odrl_policy`
renders a member's permissions as an ODRL ``Set`` policy in JSON-LD, the form a
dataspace connector (Eclipse Dataspace Components) offers usage policies in.

The validity period bounds the *use*, not the time the data was measured: a
consent for research valid from March lets analysts read the member's older
series from March on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: What a permission can be about: raw series, KPIs, contributions to benchmark cells.
Category = Literal["raw_series", "kpis", "benchmark"]
CATEGORIES: tuple[Category, ...] = get_args(Category)
#: The purposes every register knows; a register may name more (``purposes = [...]``).
BENCHMARKING = "benchmarking"
RESEARCH = "research"
STANDARD_PURPOSES: tuple[str, ...] = (BENCHMARKING, RESEARCH)
PURPOSE_RE = re.compile(r"^[a-z][a-z0-9_-]{1,31}$")
#: Start of the permissions a member gets when its entry names none.
_SINCE_ALWAYS = datetime(2000, 1, 1, tzinfo=UTC)
#: ODRL's namespace and the vocabulary used for the data categories and purposes in policies.
ODRL_CONTEXT = "http://www.w3.org/ns/odrl.jsonld"
HUB_VOCABULARY = "https://metalldaten.example/vocab/"


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class Permission(BaseModel):
    """One ODRL-like permission: use ``target`` for ``purpose`` within [valid_from, valid_until)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: Category
    purpose: str = Field(pattern=PURPOSE_RE.pattern)
    valid_from: datetime
    valid_until: datetime | None = None

    @field_validator("valid_from", "valid_until")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _aware(value).astimezone(UTC)

    @model_validator(mode="after")
    def _ordered(self) -> Permission:
        if self.valid_until is not None and self.valid_until < self.valid_from:
            raise ValueError(f"valid_until ({self.valid_until}) must not be before valid_from ({self.valid_from})")
        return self

    def allows(self, category: str, purpose: str, at: datetime) -> bool:
        at = _aware(at)
        return (
            self.target == category
            and self.purpose == purpose
            and self.valid_from <= at
            and (self.valid_until is None or at < self.valid_until)
        )


def default_permissions() -> list[Permission]:
    """What a member entry without ``permission`` consents to: benchmarking of its benchmark contributions
    and research on its series and KPIs, open-ended. Onboarding writes them out, so the file shows them."""
    return [
        Permission(target="benchmark", purpose=BENCHMARKING, valid_from=_SINCE_ALWAYS),
        Permission(target="raw_series", purpose=RESEARCH, valid_from=_SINCE_ALWAYS),
        Permission(target="kpis", purpose=RESEARCH, valid_from=_SINCE_ALWAYS),
    ]


def permits(permissions: Iterable[Permission], category: str, purpose: str, at: datetime) -> bool:
    return any(p.allows(category, purpose, at) for p in permissions)


def granted(permissions: list[Permission], permission: Permission) -> list[Permission]:
    """``permissions`` plus ``permission`` (an identical one is not added twice)."""
    return permissions if permission in permissions else [*permissions, permission]


def withdrawn(permissions: list[Permission], category: str, purpose: str, at: datetime) -> tuple[list[Permission], int]:
    """``permissions`` with every one of ``category`` / ``purpose`` still valid at ``at`` (or later) ended at
    ``at``; permissions that would only have started later are dropped. Returns the list and how many changed."""
    at = _aware(at).astimezone(UTC)
    out: list[Permission] = []
    changed = 0
    for p in permissions:
        if p.target != category or p.purpose != purpose or (p.valid_until is not None and p.valid_until <= at):
            out.append(p)
            continue
        changed += 1
        if p.valid_from < at:
            out.append(p.model_copy(update={"valid_until": at}))
    return out, changed


def iso(value: datetime) -> str:
    return _aware(value).astimezone(UTC).isoformat().replace("+00:00", "Z")


def odrl_policy(
    member: str, permissions: Iterable[Permission], *, assigner: str = "metalldaten-trustee"
) -> dict[str, Any]:
    """The member's permissions as an ODRL ``Set`` policy (JSON-LD), one ODRL permission each."""
    rules: list[dict[str, Any]] = []
    for p in permissions:
        constraints: list[dict[str, Any]] = [
            {"leftOperand": "purpose", "operator": "eq", "rightOperand": HUB_VOCABULARY + "purpose/" + p.purpose},
            {
                "leftOperand": "dateTime",
                "operator": "gteq",
                "rightOperand": {"@value": iso(p.valid_from), "@type": "xsd:dateTime"},
            },
        ]
        if p.valid_until is not None:
            constraints.append(
                {
                    "leftOperand": "dateTime",
                    "operator": "lt",
                    "rightOperand": {"@value": iso(p.valid_until), "@type": "xsd:dateTime"},
                }
            )
        rules.append(
            {
                "target": f"{HUB_VOCABULARY}data/{member}/{p.target}",
                "action": "use",
                "assignee": HUB_VOCABULARY + "party/members-and-trustee",
                "constraint": [{"and": constraints}] if len(constraints) > 1 else constraints,
            }
        )
    return {
        "@context": ODRL_CONTEXT,
        "@type": "Set",
        "uid": f"{HUB_VOCABULARY}policy/{member}",
        "assigner": f"{HUB_VOCABULARY}party/{member}",
        "profile": HUB_VOCABULARY + "profile",
        "permission": rules,
    }
