"""``metalldaten demo``."""

from __future__ import annotations


def demo() -> None:
    """Run the demo."""
    raise SystemExit("the demo is not built yet")
