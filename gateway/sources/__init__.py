"""Source plugins: one folder per kind (``opcua/``, ``mqtt/``) with its settings, runner, sample and README,
and :func:`build_sources`, the one place that builds them from the gateway's settings."""

from .base import Sink, SourceContext, SourceRunner, SourceView
from .factory import KINDS, build_sources

__all__ = ["KINDS", "Sink", "SourceContext", "SourceRunner", "SourceView", "build_sources"]
