"""Periodic store maintenance run beside the ingestor: rollup refresh and retention."""

from __future__ import annotations

import asyncio
import logging
import time

from .base import Store
from .errors import StoreError
from .settings import IngestSettings

log = logging.getLogger(__name__)


async def housekeep(store: Store, settings: IngestSettings) -> None:
    """Refresh rollups every ``rollup_refresh_s`` (never if it is 0) and enforce retention every
    ``retention_check_s``. Runs until cancelled."""
    next_rollups = time.monotonic() + (settings.rollup_refresh_s or 0)
    next_retention = time.monotonic()
    while True:
        await asyncio.sleep(1.0)
        now = time.monotonic()
        try:
            if settings.rollup_refresh_s and now >= next_rollups:
                next_rollups = now + settings.rollup_refresh_s
                await asyncio.to_thread(store.refresh_rollups)
            if now >= next_retention:
                next_retention = now + settings.retention_check_s
                await asyncio.to_thread(store.enforce_retention)
        except StoreError as exc:
            log.warning("store housekeeping failed: %s", exc)
