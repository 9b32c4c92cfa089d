"""The audit log file: one JSON line per audited request or trustee change, appended; read oldest first.

Light on purpose (no polars, no web framework): the trustee's commands on a broker host write to it with only
the gateway's packages installed. The request side (what is audited) is :mod:`api.audit`.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class AuditLog:
    """Appends JSON lines to a file; safe across threads."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def write(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, separators=(",", ":"), default=str) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line)

    def entries(self, containing: str | None = None) -> Iterator[dict[str, Any]]:
        """The log's entries, oldest first; a line that is not a JSON object is skipped with a warning. With
        ``containing``, lines without that text are skipped unparsed (a pre-filter: the caller still checks
        the entries it gets)."""
        try:
            fh = self.path.open(encoding="utf-8")
        except FileNotFoundError:
            return
        with fh:
            for number, line in enumerate(fh, start=1):
                if containing is not None and containing not in line:
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    entry = None
                if isinstance(entry, dict):
                    yield entry
                elif line.strip():
                    log.warning("audit log %s line %d is not a JSON object; skipped", self.path, number)

    def writable(self) -> bool:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8"):
                pass
        except OSError:
            return False
        return True
