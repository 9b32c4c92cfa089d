"""The trustee's member register: who may send, and what benchmarks need to know of them.

The register is a TOML file kept by the trustee (``metalldaten broker add-member``
writes it). Each ``[[member]]`` entry::

    [[member]]
    pseudonym = "m-7f3a9c"            # broker login and first topic level
    group = "grp-01"                  # corporate group: one contributor in benchmarks
    region = "DE-NW"                  # coarse region
    emission_factor_kg_per_kwh = 0.38 # optional; default below
    active = true                     # false once removed: its data is rejected
    suspended = false                 # true while suspended: like removed, but it can be resumed

    [[member.permission]]             # consent per data category and purpose (core.consent)
    target = "kpis"
    purpose = "research"
    valid_from = 2026-01-01T00:00:00Z

A register may name purposes beyond ``benchmarking`` and ``research`` in a top-level
``purposes = ["process-optimisation"]``; a permission naming an unknown purpose is an error.

It holds no company names: the mapping of pseudonym to company stays with the
trustee, outside the hub.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import tomllib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from wire.model import MEMBER_RE

from .configfile import ConfigError
from .consent import PURPOSE_RE, STANDARD_PURPOSES, Permission, default_permissions, iso, permits

#: kg CO2e per kWh used when a member's entry names none (documented in docs/kpis.md).
DEFAULT_EMISSION_FACTOR = 0.380


class Member(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pseudonym: str = Field(pattern=MEMBER_RE.pattern)
    group: str = Field(min_length=1, max_length=64)
    region: str = Field(default="", max_length=32)
    emission_factor_kg_per_kwh: float = Field(default=DEFAULT_EMISSION_FACTOR, ge=0, le=5)
    active: bool = True
    suspended: bool = False
    #: Consent (see :mod:`core.consent`); an entry that names none consents to the defaults.
    permission: list[Permission] = Field(default_factory=default_permissions)

    @property
    def may_send(self) -> bool:
        """Active and not suspended: its gateways may send, its data is used."""
        return self.active and not self.suspended

    def permits(self, category: str, purpose: str, at: datetime) -> bool:
        return self.may_send and permits(self.permission, category, purpose, at)


class Register(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Purposes beyond benchmarking and research that permissions may name.
    purposes: list[str] = Field(default_factory=list)
    member: list[Member] = Field(default_factory=list)

    @model_validator(mode="after")
    def _known_purposes(self) -> Register:
        for i, p in enumerate(self.purposes):
            if not PURPOSE_RE.fullmatch(p):
                raise ValueError(f"purposes.{i}: {p!r} must match {PURPOSE_RE.pattern}")
        known = self.known_purposes
        for m in self.member:
            for i, perm in enumerate(m.permission):
                if perm.purpose not in known:
                    raise ValueError(
                        f"member {m.pseudonym}: permission.{i}.purpose: {perm.purpose!r} is not one of "
                        f"{', '.join(known)} (add it to the register's purposes)"
                    )
        return self

    @property
    def known_purposes(self) -> tuple[str, ...]:
        return (*STANDARD_PURPOSES, *(p for p in self.purposes if p not in STANDARD_PURPOSES))

    def consenting(self, category: str, purpose: str, at: datetime) -> tuple[str, ...]:
        """Pseudonyms of the members that may send and permit ``category`` for ``purpose`` at ``at``."""
        return tuple(m.pseudonym for m in self.member if m.permits(category, purpose, at))

    def get(self, pseudonym: str) -> Member | None:
        for m in self.member:
            if m.pseudonym == pseudonym:
                return m
        return None

    def is_active(self, pseudonym: str) -> bool:
        """Whether ``pseudonym`` may send now (registered, not removed, not suspended)."""
        m = self.get(pseudonym)
        return m is not None and m.may_send

    def active(self) -> Iterator[Member]:
        return (m for m in self.member if m.may_send)


def load_register(path: Path | str) -> Register:
    p = Path(path)
    if not p.exists():
        return Register()
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
        return Register.model_validate(data)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(p, [("(file)", f"valid TOML: {exc}")]) from exc
    except ValidationError as exc:
        raise ConfigError(p, [(".".join(str(x) for x in e["loc"]), str(e["msg"])) for e in exc.errors()]) from None


def dump_register(register: Register) -> str:
    lines: list[str] = []
    if register.purposes:
        lines += ["purposes = [" + ", ".join(_toml_str(p) for p in register.purposes) + "]", ""]
    for m in register.member:
        lines += [
            "[[member]]",
            f'pseudonym = "{m.pseudonym}"',
            f"group = {_toml_str(m.group)}",
            f"region = {_toml_str(m.region)}",
            f"emission_factor_kg_per_kwh = {m.emission_factor_kg_per_kwh!r}",
            f"active = {'true' if m.active else 'false'}",
            f"suspended = {'true' if m.suspended else 'false'}",
        ]
        if not m.permission:
            lines.append("permission = []  # consents to nothing")
        lines.append("")
        for p in m.permission:
            lines += [
                "[[member.permission]]",
                f'target = "{p.target}"',
                f'purpose = "{p.purpose}"',
                f"valid_from = {iso(p.valid_from)}",
                *([f"valid_until = {iso(p.valid_until)}"] if p.valid_until is not None else []),
                "",
            ]
    return "\n".join(lines)


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class RegisterFile:
    """The register at ``path``, re-read when the file changes (members added or removed take effect live)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self._register = Register()

    def __call__(self) -> Register:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            self._register = load_register(self.path)
            self._stamp = stamp
        return self._register


def new_pseudonym(register: Register, *, hex_digits: int = 6) -> str:
    """A random member pseudonym (``m-`` + hex) that no entry of ``register`` uses, active or not."""
    taken = {m.pseudonym for m in register.member}
    for _ in range(1000):
        candidate = "m-" + secrets.token_hex((hex_digits + 1) // 2)[:hex_digits]
        if candidate not in taken:
            return candidate
    raise RuntimeError("no free pseudonym found; use more hex digits")


def with_member(register: Register, member: Member) -> Register:
    """``register`` plus ``member``; a pseudonym may appear only once (removed members keep theirs)."""
    if register.get(member.pseudonym) is not None:
        raise ValueError(f"pseudonym {member.pseudonym} is already in the register")
    return Register(purposes=register.purposes, member=[*register.member, member])


def with_member_inactive(register: Register, pseudonym: str) -> Register:
    """``register`` with ``pseudonym`` marked inactive (kept, so the pseudonym is never given out again)."""
    return with_member_changed(register, pseudonym, active=False)


def with_member_changed(register: Register, pseudonym: str, **changes: object) -> Register:
    """``register`` with the entry of ``pseudonym`` changed (``suspended=True``, ``permission=[...]`` ...),
    validated again (a permission naming an unknown purpose is refused)."""
    if register.get(pseudonym) is None:
        raise KeyError(f"pseudonym {pseudonym} is not in the register")
    members = [
        Member.model_validate(m.model_dump() | changes) if m.pseudonym == pseudonym else m for m in register.member
    ]
    return Register(purposes=register.purposes, member=members)


def save_register(path: Path | str, register: Register) -> None:
    """Write the register atomically (a reader never sees half a file)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=p.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("# Member register of the Metall+Daten hub (kept by the trustee; see broker_config/README.md)\n\n")
            fh.write(dump_register(register))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
