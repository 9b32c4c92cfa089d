"""The heartbeat repeats current values only: a last value that is history is never stamped "now".

But a value a source holds as current is repeated however old its timestamp: the first value of a series
(a machine whose state has not changed for hours) and a value delivered again after a restart.
"""

from __future__ import annotations

from gateway.normalise import Reading

from .test_core import NOW
from .test_normalise import _n

S = 10**9


def test_a_replayed_past_is_not_repeated_as_current() -> None:
    n = _n()
    day = 86_400 * S
    # a counter replayed from yesterday (its first value is the source's current one, so it may be repeated)
    n.normalise(Reading("m1", "E", 90_000.0, recv_ns=NOW, source_ns=NOW - day))
    # ... then its history goes on: a change that arrives a day after its timestamp is catching up
    n.normalise(Reading("m1", "E", 100_000.0, recv_ns=NOW + S, source_ns=NOW - day + 60 * S))
    assert n.repeat_stale(NOW + 5 * S, 55 * S) == []  # history: no repeat at "now" below the newer readings
    n.normalise(Reading("m1", "E", 140_000.0, recv_ns=NOW + 6 * S, source_ns=NOW + 6 * S))
    repeated = n.repeat_stale(NOW + 70 * S, 55 * S)  # a current value gone quiet: repeated
    assert [(s.signal, s.value, s.ts) for s in repeated] == [("energy_kwh", 140.0, NOW + 70 * S)]


def test_an_old_current_value_is_repeated() -> None:
    n = _n()
    hours = 5 * 3600 * S
    # the initial value of a quiet series: unchanged for five hours, and current
    n.normalise(Reading("m1", "E", 90_000.0, recv_ns=NOW, source_ns=NOW - hours))
    repeated = n.repeat_stale(NOW + 60 * S, 55 * S)
    assert [(s.value, s.ts) for s in repeated] == [(90.0, NOW + 60 * S)]


def test_a_series_caught_up_by_a_backfill_is_repeated_once_the_source_delivers_it_again() -> None:
    n = _n()
    n.normalise(Reading("m1", "E", 90_000.0, recv_ns=NOW, source_ns=NOW - 3600 * S))
    # a backfill: the gap read from history, arriving long after its timestamps
    n.normalise(Reading("m1", "E", 95_000.0, recv_ns=NOW + S, source_ns=NOW - 1800 * S))
    assert n.repeat_stale(NOW + 60 * S, 55 * S) == []
    # the live subscription then delivers the current value, which the backfill already sent: replayed
    assert n.normalise(Reading("m1", "E", 95_000.0, recv_ns=NOW + 61 * S, source_ns=NOW - 1800 * S)) == "replayed"
    assert [s.value for s in n.repeat_stale(NOW + 120 * S, 55 * S)] == [95.0]
