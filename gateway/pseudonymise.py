"""Keyed pseudonyms: HMAC-SHA256 with the member's key, truncated, prefixed by a kind letter.

Nothing that identifies a machine, a host or a person leaves the factory in clear, and without the
key (which never leaves the factory) nobody, not even the hub's operator, can map a pseudonym back.

The key lives in a small JSON file made by ``metalldaten gateway keygen`` (mode 0600) together with
an opaque key id that travels with every batch, so that a member can rotate keys on purpose. Pseudonyms are
deterministic per key: the same machine keeps its pseudonym for as long as the key is kept.

A member can map its pseudonyms back (:func:`reveal`) by recomputing them over the identifiers it
knows locally: those in its configuration and those in the local journal of identifiers seen.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from wire.model import KEY_ID_RE

from .errors import KeyFileError

log = logging.getLogger(__name__)

Kind = Literal["a", "g", "p"]
KINDS: dict[str, str] = {"a": "asset", "g": "gateway", "p": "person"}
KEY_BYTES = 32
DEFAULT_HEX = 16


@dataclass(frozen=True, slots=True, repr=False)
class MemberKey:
    """The member's secret key and its public id. ``repr`` never shows the key."""

    key_id: str
    secret: bytes

    def __repr__(self) -> str:
        return f"MemberKey(key_id={self.key_id!r})"


def new_key_id() -> str:
    """An opaque key id (``k-`` and 12 random hex digits). It travels with every batch, so it says nothing
    about the member: not when the key was made, nor by whom. Ids of older keys (``k20261201-…``) stay valid."""
    return "k-" + secrets.token_hex(6)


def generate_key(path: Path, *, key_id: str | None = None, overwrite: bool = False) -> MemberKey:
    """Write a new random key to ``path`` with mode 0600 and return it."""
    key_id = key_id or new_key_id()
    if not KEY_ID_RE.fullmatch(key_id):
        raise KeyFileError(f"key id {key_id!r} must be 1-32 characters of [0-9a-zA-Z_.-]")
    if path.exists() and not overwrite:
        raise KeyFileError(f"{path} exists; refusing to overwrite a key (pseudonyms would change)")
    key = MemberKey(key_id=key_id, secret=secrets.token_bytes(KEY_BYTES))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"key_id": key.key_id, "key": key.secret.hex(), "algorithm": "HMAC-SHA256"}, fh)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return key


def load_key(path: Path) -> MemberKey:
    """Read a key file; refuse files that others can read."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} does not exist; create it with 'metalldaten gateway keygen'") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"key file {path} is accessible by group or others (mode {st.st_mode & 0o777:o}); chmod 600")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        key_id = str(data["key_id"])
        secret = bytes.fromhex(str(data["key"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyFileError(f"key file {path} is not a key made by 'metalldaten gateway keygen'") from exc
    if not KEY_ID_RE.fullmatch(key_id):
        raise KeyFileError(f"key file {path}: key id must be 1-32 characters of [0-9a-zA-Z_.-]")
    if len(secret) < 16:
        raise KeyFileError(f"key file {path}: the key is shorter than 16 bytes")
    return MemberKey(key_id=key_id, secret=secret)


def pseudonym(key: MemberKey, kind: Kind, identifier: str, *, length: int = DEFAULT_HEX) -> str:
    """``{kind}-{hex}``: HMAC-SHA256 over the kind and the identifier, truncated to ``length`` hex digits."""
    mac = hmac.new(key.secret, kind.encode() + b"\x00" + identifier.encode("utf-8"), hashlib.sha256)
    return f"{kind}-{mac.hexdigest()[:length]}"


class Journal:
    """Append-only local file of the clear identifiers the gateway has pseudonymised (mode 0600).

    It never leaves the factory; it lets :func:`reveal` map back identifiers that sources discovered
    at run time (for example MQTT topic levels) and that the configuration does not list.
    """

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._known: set[tuple[str, str]] = set(self.read()) if path is not None else set()

    def read(self) -> list[tuple[str, str]]:
        if self._path is None or not self._path.exists():
            return []
        out: list[tuple[str, str]] = []
        with self._path.open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    entry = json.loads(line)
                    out.append((str(entry["k"]), str(entry["id"])))
                except (ValueError, KeyError, TypeError):
                    continue  # a torn last line after a crash
        return out

    def record(self, kind: str, identifier: str) -> None:
        if self._path is None or (kind, identifier) in self._known:
            return
        self._known.add((kind, identifier))
        new = not self._path.exists()
        fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"k": kind, "id": identifier}, ensure_ascii=False) + "\n")
        if new:
            os.chmod(self._path, 0o600)


class Pseudonymiser:
    """Caches pseudonyms per identifier and journals identifiers the first time it sees them."""

    def __init__(self, key: MemberKey, *, length: int = DEFAULT_HEX, journal: Journal | None = None) -> None:
        if not 8 <= length <= 32:
            raise KeyFileError("pseudonym length must be 8..32 hex digits")
        self.key = key
        self.length = length
        self._journal = journal
        self._cache: dict[tuple[str, str], str] = {}

    @property
    def key_id(self) -> str:
        return self.key.key_id

    def __call__(self, kind: Kind, identifier: str) -> str:
        try:
            return self._cache[(kind, identifier)]
        except KeyError:
            pass
        p = pseudonym(self.key, kind, identifier, length=self.length)
        self._cache[(kind, identifier)] = p
        if self._journal is not None:
            self._journal.record(kind, identifier)
        return p

    def asset(self, identifier: str) -> str:
        return self("a", identifier)

    def gateway(self, name: str) -> str:
        return self("g", name)

    def person(self, identifier: str) -> str:
        return self("p", identifier)


def reveal(
    key: MemberKey, target: str, candidates: Iterable[tuple[str, str]], *, length: int | None = None
) -> list[tuple[str, str]]:
    """Return the ``(kind, identifier)`` candidates whose pseudonym is ``target`` (normally one)."""
    kind, _, digest = target.partition("-")
    if kind not in KINDS or not digest:
        return []
    n = length or len(digest)
    found: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for k, ident in candidates:
        if k != kind or (k, ident) in seen:
            continue
        seen.add((k, ident))
        if hmac.compare_digest(pseudonym(key, kind, ident, length=n), target):  # type: ignore[arg-type]
            found.append((k, ident))
    return found
