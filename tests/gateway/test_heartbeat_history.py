"""The heartbeat repeats current values only: a last value that is history is never stamped "now"."""

from __future__ import annotations

from gateway.normalise import Reading

from .test_core import NOW, _n

S = 10**9


def test_a_replayed_past_is_not_repeated_as_current() -> None:
    n = _n()
    day = 86_400 * S
    # a counter replayed from yesterday, then the live value that continues it
    n.normalise(Reading("m1", "E", 100_000.0, recv_ns=NOW, source_ns=NOW - day))
    assert n.repeat_stale(NOW + 5 * S, 55 * S) == []  # history: no repeat at "now" below the newer readings
    n.normalise(Reading("m1", "E", 140_000.0, recv_ns=NOW + 6 * S, source_ns=NOW + 6 * S))
    repeated = n.repeat_stale(NOW + 70 * S, 55 * S)  # a current value gone quiet: repeated
    assert [(s.signal, s.value, s.ts) for s in repeated] == [("energy_kwh", 140.0, NOW + 70 * S)]
