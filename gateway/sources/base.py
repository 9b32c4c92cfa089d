"""What every source plugin offers the gateway, and what the gateway hands a plugin to build one.

A plugin (``gateway/sources/<kind>/``) holds its settings section, its runner, a ``sample.toml`` and a
README whose configuration block is that sample. Its lifecycle is the runner's: ``run()`` connects, reads
and reconnects until it is cancelled; health and metrics read the attributes of :class:`SourceRunner`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from wire.model import Sample

from ..normalise import Normaliser
from .problems import SourceProblems


class Sink(Protocol):
    """Where a source delivers its samples; ``on_durable`` is called once they are in the disk buffer."""

    def __call__(self, samples: list[Sample], on_durable: Callable[[], None] | None = None, /) -> None: ...


class SourceView(Protocol):
    """What health and metrics read of a source (OPC UA or MQTT)."""

    name: str
    kind: str
    normaliser: Normaliser
    readings_in: int
    problems: SourceProblems

    @property
    def connected(self) -> bool: ...

    @property
    def reconnects(self) -> int: ...

    @property
    def last_error(self) -> str | None: ...


class SourceRunner(SourceView, Protocol):
    """A running source, as the gateway sees it: a view that runs until it is cancelled."""

    async def run(self) -> None: ...


@dataclass(frozen=True, slots=True)
class SourceContext:
    """What a plugin needs from the gateway to build its runner.

    ``normaliser`` makes one normaliser per source; ``client_id`` derives a stable, pseudonymous client
    id from a source name (for brokers that keep sessions); ``pki_dir`` holds generated certificates.
    """

    normaliser: Callable[[], Normaliser]
    sink: Sink
    pki_dir: Path
    client_id: Callable[[str], str]
