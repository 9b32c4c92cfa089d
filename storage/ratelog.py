"""Rate-limited log lines about refused input: :class:`core.ratelog.RateLimitedLog`, shared with the gateway."""

from core.ratelog import RateLimitedLog

__all__ = ["RateLimitedLog"]
