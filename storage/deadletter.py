"""Dead letters: messages the ingestor refused, kept with the reason, the original bytes and the time.

One JSON object per line (JSONL), appended and flushed before the message is
acknowledged::

    {"time": "2026-01-05T10:00:00.123456+00:00", "topic": "mdh/v1/m-.../g-.../samples",
     "code": "too_large", "reason": "payload of ... bytes exceeds ...", "size": 123, "payload_b64": "..."}

When the file passes ``max_bytes`` it is renamed to ``<name>.1`` (replacing an older
one) and a new file is started, so dead letters never fill the disk. Payloads larger
than ``max_payload_bytes`` are kept truncated (``"truncated": true``).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str
    code: str
    reason: str
    payload: bytes
    time: datetime


class DeadLetterFile:
    def __init__(
        self, path: Path | str, *, max_bytes: int = 256 * 1024 * 1024, max_payload_bytes: int = 1 << 20
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.max_payload_bytes = max_payload_bytes
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, letters: list[DeadLetter]) -> None:
        """Append and fsync ``letters`` (called from a worker thread, before acknowledging)."""
        if not letters:
            return
        lines = []
        for d in letters:
            kept = d.payload[: self.max_payload_bytes]
            record = {
                "time": d.time.astimezone(UTC).isoformat(),
                "topic": d.topic[:512],
                "code": d.code,
                "reason": d.reason[:1000],
                "size": len(d.payload),
                "payload_b64": base64.b64encode(kept).decode("ascii"),
            }
            if len(kept) < len(d.payload):
                record["truncated"] = True
            lines.append(json.dumps(record, ensure_ascii=True))
        data = ("\n".join(lines) + "\n").encode("ascii")
        with self._lock:
            self._rotate_if_needed()
            with self.path.open("ab") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())

    def _rotate_if_needed(self) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size >= self.max_bytes:
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))
            log.warning("dead-letter file reached %d bytes; rotated to %s.1", size, self.path.name)


def read_dead_letters(path: Path | str) -> list[dict[str, object]]:
    """All records of a dead-letter file (for operators and tests); payloads decoded to ``bytes``."""
    p = Path(path)
    if not p.exists():
        return []
    out: list[dict[str, object]] = []
    for line in p.read_text(encoding="ascii").splitlines():
        if line.strip():
            record: dict[str, object] = json.loads(line)
            record["payload"] = base64.b64decode(str(record.pop("payload_b64")))
            out.append(record)
    return out


def purge_member(path: Path | str, member: str) -> int:
    """Remove every dead letter whose topic names ``member`` from the file and its rotated copy; return how many.

    The file is rewritten atomically. Run it once the broker refuses the member's logins (suspended or removed):
    a message of a refused member that still reaches the ingestor becomes a dead letter too."""
    base = Path(path)
    removed = 0
    for p in (base, base.with_name(base.name + ".1")):
        if not p.exists():
            continue
        kept: list[str] = []
        for line in p.read_text(encoding="ascii").splitlines():
            if not line.strip():
                continue
            try:
                topic = str(json.loads(line).get("topic", ""))
            except ValueError:
                kept.append(line)
                continue
            if topic.split("/")[2:3] == [member]:
                removed += 1
            else:
                kept.append(line)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text("".join(k + "\n" for k in kept), encoding="ascii")
        os.replace(tmp, p)
    return removed
