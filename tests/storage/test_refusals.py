"""The refusals of the last minutes (pure): what keeps the ingest role degraded, and for how long."""

from __future__ import annotations

from storage.refusals import RecentRefusals


def test_a_refusal_degrades_for_the_window_with_its_count_age_and_last_reason() -> None:
    now = [1000.0]
    r = RecentRefusals(window_s=300.0, clock=lambda: now[0])
    assert r.active() == []
    r.note("future", "sample 3: timestamp is 86400 s later than the newest this receiver accepts")
    now[0] += 10
    r.note("quota", "")
    r.note("future", "sample 0: timestamp is 700 s later")
    now[0] += 5
    assert r.active() == [
        "2 message(s) refused as future since start, the last 5 s ago: sample 0: timestamp is 700 s later",
        "1 message(s) refused as quota since start, the last 5 s ago",
    ]
    now[0] += 294.9
    assert len(r.active()) == 2
    now[0] += 0.1  # the window has passed since the last of each
    assert r.active() == []
    r.note("quota", "x" * 500)
    [line] = r.active()
    assert line.endswith(": " + "x" * 200) and line.startswith("2 message(s) refused as quota")  # counted since start
