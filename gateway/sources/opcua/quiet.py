"""asyncua's own log lines about a connection that is gone, folded into the source's one line.

When a server stops, asyncua's session logs ``ERROR Publish iteration crashed`` with a traceback of the
``ConnectionError``, then warnings that the session and channel cannot be closed. The source already
reports the lost session (one rate-limited line, a metric, health), so these records say nothing new and
make a routine server restart look like a crash. The filter drops exactly those records and nothing else.
"""

from __future__ import annotations

import logging

_LOGGERS = ("asyncua.client.ua_session.UaSession", "asyncua.client.ua_client.UaClient", "asyncua.client.client")
_CLOSED = ("close_session was called but connection is closed", "close_secure_channel was called but connection")


class LostConnectionFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, (ConnectionError, OSError, TimeoutError)):
            return False
        msg = str(record.msg)
        return not msg.startswith(_CLOSED)


_FILTER = LostConnectionFilter()


def quiet_asyncua_on_lost_connections() -> None:
    """Install the filter on asyncua's client loggers (idempotent)."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
