"""Deleting a member's data at the hub, with a receipt the trustee can hand to the member.

What goes (``metalldaten members delete-data``): every raw sample, hourly rollup and rollup marker of the
member in the store (DuckDB or InfluxDB), its dead letters, what the store caches of it, and the
contributors' values of the released benchmark cells its corporate group contributed to. The ingestor
keeps gateway status in memory only and drops the member's the moment the member is suspended or removed.

What stays, and why (also in the receipt): released benchmark cells keep their published figures, band,
digest and contributor set (corporate-group pseudonyms): each is an aggregate of at least five groups that
was published, and later releases need the contributor set for the differencing rule. The register entry
stays (inactive), so the pseudonym is never given out again; the audit log keeps its lines (who read what,
when), which hold counts and never data.

The receipt is JSON; ``digest`` is the SHA-256 of the receipt's other fields in canonical JSON (sorted
keys, no spaces), so the member can check that the receipt it holds is the one the trustee issued.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.auditlog import AuditLog
from core.errors import MdhError
from core.register import load_register
from storage import Store
from storage.deadletter import purge_member

KEPT = [
    "released benchmark cells: their published figures, contributor band, digest and contributor set "
    "(corporate-group pseudonyms) stay; each is an aggregate of at least five groups, published before the "
    "deletion; the contributors' values of every cell the member's group contributed to were erased",
    "the register entry (inactive), so that the pseudonym is never given out again",
    "the audit log: which analyst token read how many of the member's rows when (counts, no data)",
]


class DeletionRefused(MdhError, RuntimeError):
    """The member may still send: suspend or remove it first."""

    exit_code = 2


def canonical(data: dict[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def receipt_digest(receipt: dict[str, Any]) -> str:
    """The digest of a receipt: SHA-256 over its fields except ``digest``, in canonical JSON."""
    return hashlib.sha256(canonical({k: v for k, v in receipt.items() if k != "digest"})).hexdigest()


def delete_member_data(
    *,
    store: Store,
    store_kind: str,
    register_file: Path,
    dead_letter_path: Path,
    member: str,
    by: str,
    now: datetime,
    audit: AuditLog | None = None,
) -> dict[str, Any]:
    """Delete ``member``'s data; return the receipt (also audited when ``audit`` is given)."""
    entry = load_register(register_file).get(member)
    if entry is None:
        raise DeletionRefused(f"{member} is not in the register {register_file}")
    if entry.may_send:
        raise DeletionRefused(
            f"{member} is active: suspend or remove it first (`metalldaten members suspend {member}`), "
            "so that no new data of it arrives during and after the deletion"
        )
    counts = store.delete_member(member, group=entry.group, now_ns=int(now.timestamp() * 1e9))
    ledger = counts.pop("release_ledger", 0)
    receipt: dict[str, Any] = {
        "receipt": "mdh-deletion-" + secrets.token_hex(6),
        "member": member,
        "deleted_at": now.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "deleted_by": by,
        "store": store_kind,
        "rows_deleted": counts,
        "dead_letters_deleted": purge_member(dead_letter_path, member),
        "release_ledger_cells_values_erased": ledger,
        "kept": KEPT,
    }
    receipt["digest"] = receipt_digest(receipt)
    if audit is not None:
        audit.write(
            {
                "ts": receipt["deleted_at"],
                "role": "trustee",
                "actor": by,
                "action": "member.delete-data",
                "member": member,
                "receipt": receipt["receipt"],
                "digest": receipt["digest"],
            }
        )
    return receipt
