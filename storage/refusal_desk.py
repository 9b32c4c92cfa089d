"""What the ingestor does with a refused message: count it, record it in the dead letters, log it.

Every refusal is counted (``mdh_ingest_refused_total{reason}``) and noted for the health answer
(:class:`~storage.refusals.RecentRefusals`); a refused message is written to the dead-letter file before it is
acknowledged (``mdh_ingest_dead_letters_total{code}``), and logged once per reason code per ten seconds, so that a
member flooding bad input cannot flood the log. When the dead letters cannot be written the messages are left
unacknowledged: the broker redelivers them, and nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from core.mqtt import Message

from .deadletter import DeadLetter, DeadLetterFile
from .ingest_metrics import IngestMetrics
from .ratelog import RateLimitedLog
from .refusals import RecentRefusals
from .validate import Refused

log = logging.getLogger("storage.ingestor")


class RefusalDesk:
    def __init__(self, metrics: IngestMetrics, dead_letters: DeadLetterFile, recent: RecentRefusals) -> None:
        self.metrics = metrics
        self.dead_letters = dead_letters
        self.recent = recent
        #: One line per refusal reason per ten seconds.
        self._log = RateLimitedLog(log, interval_s=10.0)

    def count(self, code: str, reason: str) -> None:
        """A message was refused as ``code`` (counted once per refusal, also when it is redelivered)."""
        self.metrics.inc_refused(code)
        self.recent.note(code, reason)

    async def record(self, refused: list[tuple[Message, Refused]]) -> bool:
        """Write refused messages to the dead letters; ``False`` if they could not be written (then do not
        acknowledge them)."""
        now = datetime.now(UTC)
        letters = [DeadLetter(m.topic, r.code, r.reason, m.payload, now) for m, r in refused]
        try:
            await asyncio.to_thread(self.dead_letters.append, letters)
        except OSError as exc:
            log.error(
                "cannot write %d dead letters to %s (%s); leaving them unacknowledged",
                len(letters),
                self.dead_letters.path,
                exc,
            )
            return False
        for m, r in refused:
            self._log.warning(r.code, "dead letter from %r: %s (%s)", m.topic[:120], r.reason, r.code)
            self.metrics.inc_dead(r.code)
        return True
