"""Suspending and removing a member, at once: register, broker logins, certificates, live broker, tokens.

Order matters, so that nothing of the member gets through in between:

1. the register marks the member suspended (or removed): the ingestor re-reads the file and refuses every
   message of the member from the next one on, including those still queued for it at the broker; the API
   leaves the member out of analyst answers from the next request on;
2. the member's gateway logins leave the password file (a suspension keeps their hashes in
   ``<passwd>.suspended``, 0600, for :func:`resume_member`), and the plugin's file is regenerated;
3. removal only: the member's client certificates are added to the revocation list (``crl.pem``);
4. the member's API tokens are revoked (the API re-reads the tokens file on change);
5. the running broker is told through the plugin's control topic (``disableClient`` and
   ``removeClientRole``, see :mod:`metalldaten.broker_control`): every connected gateway of the member is
   disconnected, its password refused from then on, and its login left without rights; then the plugin's
   file is regenerated again from the password file (the plugin saved its own state in between).

Mosquitto 2.0.11 reads the revocation list at start only. Until the next restart a client certificate's
holder can still complete the TLS handshake and CONNECT (it is asked for no password; its CN is the login),
but the login it gets has no role: every PUBLISH is refused (PUBACK 0x87) and every SUBSCRIBE too, and the
ingestor refuses anything of a suspended or removed member anyway. After a restart the login is in neither
the plugin's file nor the password file, and the revocation list refuses a removed member's certificate in
the TLS handshake.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from api.tokens import TokenStore
from core.register import load_register, save_register, with_member_changed

from .broker_ca import CaFiles, revoke_client_certificates
from .broker_control import ControlEndpoint, disable_logins, enable_logins
from .broker_files import (
    delete_login,
    logins,
    member_of_login,
    share_with_broker,
    write_access,
    write_secret_file,
)

Action = Literal["suspend", "remove"]


@dataclass(slots=True)
class Revocation:
    member: str
    action: Action
    logins: list[str] = field(default_factory=list)
    certificates_revoked: int = 0
    tokens_revoked: list[str] = field(default_factory=list)
    #: Per login: ``None`` once the running broker disabled it, else the broker's error; empty if not told.
    live: dict[str, str | None] = field(default_factory=dict)

    def summary(self) -> str:
        told = (
            "running broker: " + ", ".join(f"{k} {'disabled' if v is None else v}" for k, v in self.live.items())
            if self.live
            else "running broker: not told (no --broker-port); restart it"
        )
        return (
            f"member {self.member} {'suspended' if self.action == 'suspend' else 'removed'}; "
            f"logins: {', '.join(self.logins) or 'none'}; client certificates revoked: {self.certificates_revoked}; "
            f"API tokens revoked: {len(self.tokens_revoked)}; {told}"
        )


def stash_path(passwd: Path) -> Path:
    return passwd.with_name(passwd.name + ".suspended")


def revoke_member(
    *,
    register: Path,
    passwd: Path,
    member: str,
    action: Action,
    ca: CaFiles | None = None,
    tokens: TokenStore | None = None,
    control: ControlEndpoint | None = None,
) -> Revocation:
    """Suspend or remove ``member`` (see the module docstring). Raises ``KeyError`` for an unknown member."""
    reg = load_register(register)
    changes: dict[str, object] = {"suspended": True} if action == "suspend" else {"active": False, "suspended": False}
    save_register(register, with_member_changed(reg, member, **changes))
    result = Revocation(member=member, action=action)
    result.logins = [login for login in logins(passwd) if member_of_login(login) == member]
    if action == "suspend" and result.logins:
        lines = [
            line for line in passwd.read_text(encoding="utf-8").splitlines() if line.split(":", 1)[0] in result.logins
        ]
        stash = stash_path(passwd)
        kept = stash.read_text(encoding="utf-8").splitlines() if stash.exists() else []
        write_secret_file(stash, "\n".join([*kept, *lines]) + "\n")
    for login in result.logins:
        delete_login(passwd, login)
    if action == "remove":
        stash = stash_path(passwd)
        if stash.exists():  # a suspended member removed: its stashed logins go too
            rest = [
                ln
                for ln in stash.read_text(encoding="utf-8").splitlines()
                if member_of_login(ln.split(":", 1)[0]) != member
            ]
            result.logins += [
                ln.split(":", 1)[0] for ln in stash.read_text(encoding="utf-8").splitlines() if ln not in rest
            ]
            write_secret_file(stash, "\n".join(rest) + ("\n" if rest else ""))
        if ca is not None and ca.ca_key.exists():
            result.certificates_revoked = len(revoke_client_certificates(ca, {member, *result.logins}))
            share_with_broker(ca.crl)
    if tokens is not None:
        result.tokens_revoked = [r.id for r in tokens.revoke_member(member)]
    if control is not None:
        result.live = disable_logins(control, result.logins or [member], f"member-{member}")
        write_access(passwd)
    return result


def resume_member(
    *, register: Path, passwd: Path, member: str, control: ControlEndpoint | None = None
) -> dict[str, str | None]:
    """Undo a suspension: the register entry, the stashed logins back into the password file, and (when told)
    the running broker enables them again. New API tokens are made with ``metalldaten tokens create``."""
    reg = load_register(register)
    entry = reg.get(member)
    if entry is None or not entry.active:
        raise KeyError(f"{member} is not a registered, not removed member")
    stash = stash_path(passwd)
    stashed = stash.read_text(encoding="utf-8").splitlines() if stash.exists() else []
    mine = [ln for ln in stashed if member_of_login(ln.split(":", 1)[0]) == member]
    if mine:
        current = passwd.read_text(encoding="utf-8").splitlines() if passwd.exists() else []
        write_secret_file(passwd, "\n".join([*current, *mine]) + "\n")
        os.chmod(passwd, 0o600)
        share_with_broker(passwd)
        rest = [ln for ln in stashed if ln not in mine]
        write_secret_file(stash, "\n".join(rest) + ("\n" if rest else ""))
    write_access(passwd)
    save_register(register, with_member_changed(reg, member, suspended=False))
    live: dict[str, str | None] = {}
    if control is not None:
        live = enable_logins(control, [ln.split(":", 1)[0] for ln in mine] or [member], f"member-{member}")
        write_access(passwd)
    return live
