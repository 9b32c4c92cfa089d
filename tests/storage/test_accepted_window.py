"""The sample times the ingestor accepts (pure): the store's retention less an hour, up to the clock plus the
allowance."""

from __future__ import annotations

import pytest

from storage.validate import EXPIRY_MARGIN_NS, accepted_window

NOW = 1_790_000_000 * 10**9
DAY = 86_400 * 10**9


@pytest.mark.parametrize(
    ("retention_ns", "max_ahead_s", "expected"),
    [
        (None, 600.0, (None, NOW + 600 * 10**9)),  # kept for ever: no oldest
        (30 * DAY, 600.0, (NOW - 30 * DAY + 3600 * 10**9, NOW + 600 * 10**9)),
        (DAY, 0.5, (NOW - DAY + EXPIRY_MARGIN_NS, NOW + 5 * 10**8)),
    ],
)
def test_the_window_runs_from_the_retention_less_an_hour_to_the_clock_plus_the_allowance(
    retention_ns: int | None, max_ahead_s: float, expected: tuple[int | None, int]
) -> None:
    assert accepted_window(NOW, retention_ns=retention_ns, max_ahead_s=max_ahead_s) == expected
