"""Bounded waiting for a condition (never a fixed sleep where a condition can be awaited)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def wait_until(predicate: Callable[[], bool], within: float = 15.0, what: str = "condition") -> None:
    """Poll ``predicate`` every 50 ms; fail after ``within`` seconds naming ``what``."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.05)
