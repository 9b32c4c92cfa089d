"""The broker the broker tests share (see :mod:`tests.broker.brokerkit`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broker.brokerkit import Hub, start_hub


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    yield from start_hub(tmp_path)
