"""The audit log's reading side: the pre-filter never hides an entry that names the member, and the access log
keeps only the most recent entries however long the log is."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from core.auditlog import AuditLog

MEMBERS = ("m-a00001", "m-a000011", "m-b00002")

entry = st.fixed_dictionaries(
    {
        "ts": st.just("2026-03-01T00:00:00Z"),
        "role": st.sampled_from(("analyst", "member", "trustee")),
        "members": st.dictionaries(st.sampled_from(MEMBERS), st.integers(0, 9), max_size=3),
        "note": st.text(max_size=12),
    }
)
line = st.one_of(entry.map(lambda e: json.dumps(e, separators=(",", ":"))), st.sampled_from(("{", "[1]", "", "x")))


@settings(max_examples=60, deadline=None)
@given(lines=st.lists(line, max_size=25), member=st.sampled_from(MEMBERS))
def test_the_prefilter_keeps_every_entry_that_names_the_member(lines: list[str], member: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "audit.log"
        path.write_text("".join(x + "\n" for x in lines), encoding="utf-8")
        log = AuditLog(path)
        naming = [e for e in log.entries() if member in (e.get("members") or {})]
        assert [e for e in log.entries(containing=member) if member in (e.get("members") or {})] == naming
