"""API tokens: roles, hashing and the tokens file.

A token is ``mdh_`` followed by 43 characters of URL-safe randomness (256 bits).
Only its SHA-256 digest is stored, so the file does not let anyone use the API.
Because the token is high-entropy random, a plain hash is enough (no salt or
slow hash is needed as it would be for a password).

The tokens file is JSON::

    {"version": 1,
     "tokens": [{"id": "tk-3f9a1c2b", "sha256": "<64 hex>", "role": "member",
                 "member": "m-7f3a9c", "label": "plant A dashboard",
                 "created": "2026-11-24T10:00:00Z", "revoked": null, "purpose": null}]}

An analyst token carries the *purpose* its queries serve (``research`` unless made
with another one of the register's purposes): analyst answers include a member's
rows only where the member consents to that purpose (see :mod:`core.consent`).
Member and admin tokens have no purpose.

:class:`TokenStore` re-reads the file when it changes on disk, so tokens made or
revoked with ``metalldaten tokens`` apply to a running API without a restart.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
import threading
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from core.consent import PURPOSE_RE, RESEARCH
from wire.model import MEMBER_RE

from .errors import TokenFileError

Role = Literal["member", "analyst", "admin"]
ROLES: tuple[str, ...] = ("member", "analyst", "admin")
TOKEN_PREFIX = "mdh_"  # noqa: S105 -- a public prefix, not a secret


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenRecord:
    """One stored token (never the token itself)."""

    id: str
    sha256: str
    role: Role
    member: str | None = None
    label: str = ""
    created: str = ""
    revoked: str | None = None
    #: What an analyst token's queries are for (a purpose of the register); ``None`` for other roles.
    purpose: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked is None


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """Who a request comes from: the token's id, role and (for members) the member pseudonym."""

    token_id: str
    role: Role
    member: str | None = None
    purpose: str | None = None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def validate_binding(role: str, member: str | None, purpose: str | None = None) -> None:
    """Raise ``ValueError`` unless ``member`` is given exactly for the member role, as a pseudonym, and a
    ``purpose`` only for the analyst role."""
    if purpose is not None and role != "analyst":
        raise ValueError(f"only analyst tokens have a purpose; leave out --purpose for an {role} token")
    if purpose is not None and not PURPOSE_RE.fullmatch(purpose):
        raise ValueError(f"purpose {purpose!r} must match {PURPOSE_RE.pattern}")
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)} (got {role!r})")
    if role == "member":
        if member is None or not MEMBER_RE.fullmatch(member):
            raise ValueError("a member token needs --member with a member pseudonym like m-7f3a9c")
    elif member is not None:
        raise ValueError(f"an {role} token is not bound to a member; leave out --member")


class TokenStore:
    """The tokens file, with lookup by token and atomic updates."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._records: list[TokenRecord] = []
        self._by_hash: dict[str, TokenRecord] = {}

    # -- reading -----------------------------------------------------------------------------------
    def _load_locked(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._records, self._by_hash = None, [], {}
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            records = [TokenRecord(**entry) for entry in data["tokens"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise TokenFileError(f"{self.path}: not a valid tokens file: {exc}") from exc
        for r in records:
            if r.role not in ROLES:
                raise TokenFileError(f"{self.path}: token {r.id}: unknown role {r.role!r}")
        self._records = records
        self._by_hash = {r.sha256: r for r in records}
        self._stamp = stamp

    def records(self) -> list[TokenRecord]:
        with self._lock:
            self._load_locked()
            return list(self._records)

    def authenticate(self, token: str) -> Principal | None:
        """The principal of an active token, or ``None``."""
        with self._lock:
            self._load_locked()
            record = self._by_hash.get(hash_token(token))
        if record is None or not record.active:
            return None
        purpose = (record.purpose or RESEARCH) if record.role == "analyst" else None
        return Principal(token_id=record.id, role=record.role, member=record.member, purpose=purpose)

    def readable(self) -> bool:
        try:
            self.records()
        except TokenFileError:
            return False
        return True

    # -- writing -----------------------------------------------------------------------------------
    def _save_locked(self, records: list[TokenRecord]) -> None:
        payload: dict[str, Any] = {"version": 1, "tokens": [asdict(r) for r in records]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tokens-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(payload, fh, indent=1)
                fh.write("\n")
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise TokenFileError(f"{self.path}: cannot write: {exc}") from exc
        self._stamp = None
        self._load_locked()

    def create(
        self, role: str, *, member: str | None = None, label: str = "", purpose: str | None = None
    ) -> tuple[str, TokenRecord]:
        """Make a token; return it (shown once, never stored) and its record. Analyst tokens get ``purpose``
        (default ``research``)."""
        validate_binding(role, member, purpose)
        if role == "analyst" and purpose is None:
            purpose = RESEARCH
        token = new_token()
        record = TokenRecord(
            id="tk-" + secrets.token_hex(4),
            sha256=hash_token(token),
            role=role,  # type: ignore[arg-type]  # checked by validate_binding
            member=member,
            label=label,
            created=_now_iso(),
            purpose=purpose,
        )
        with self._lock:
            self._load_locked()
            self._save_locked([*self._records, record])
        return token, record

    def revoke(self, token_id: str) -> TokenRecord | None:
        """Revoke the token with ``token_id``; return its new record, or ``None`` if there is none."""
        with self._lock:
            self._load_locked()
            found: TokenRecord | None = None
            records: list[TokenRecord] = []
            for r in self._records:
                if r.id == token_id:
                    found = r if r.revoked else replace(r, revoked=_now_iso())
                    r = found
                records.append(r)
            if found is not None:
                self._save_locked(records)
            return found

    def revoke_member(self, member: str) -> list[TokenRecord]:
        """Revoke every active token of ``member``; return the records revoked now."""
        with self._lock:
            self._load_locked()
            now = _now_iso()
            revoked: list[TokenRecord] = []
            records: list[TokenRecord] = []
            for r in self._records:
                if r.member == member and r.revoked is None:
                    r = replace(r, revoked=now)
                    revoked.append(r)
                records.append(r)
            if revoked:
                self._save_locked(records)
            return revoked
