"""Late samples: what a rollup refresh costs after one sample a day old, over its window and recomputed up to now.

A member that sends one sample stamped a day back in every batch (a replay, a backfill, or an attack on the hub's
CPU) used to make the keeper recompute that asset from the late hour up to now. For each store (InfluxDB 1.x
started from the Debian package, and the embedded DuckDB store), the script writes one asset's day of five
signals every 2 s (216,000 samples) and refreshes, then measures in the same run, alternating, ``--rounds``
refreshes of each kind:

* ``live``: after a batch of live samples only (the fold; the floor);
* ``window``: after a batch of live samples and one energy sample a day old, each round another hour back (the
  keeper recomputes the sample's window, ``storage.late``);
* ``full``: the same, with the window refused (``window_end`` answering ``None``), so the keeper recomputes the
  asset from the late hour up to now, as before: the baseline.

At the end it checks that the rows equal ``compute_rollups`` over everything stored. Wall milliseconds of the
refresh (median and worst) and CPU milliseconds of this process (and of InfluxDB) per refresh.

Last line, JSON: ``{"influxdb": {"live_ms", "window_ms", "full_ms", "window_cpu_ms", "full_cpu_ms",
"influxdb_window_cpu_ms", "influxdb_full_cpu_ms", "rows_equal", ...}, "embedded": {...}}``.
Run: ``.venv/bin/python benchmarks/late_samples.py [--rounds N] [--store influxdb|embedded|both]``
(about 30-60 s on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import _common  # (also the import path)
import polars as pl
from _common import cpu_s
from polars.testing import assert_frame_equal

import storage.duckdb.rollups as duck_rollups
import storage.influx.rollups as influx_rollups
from storage import RollupQuery, SeriesQuery, Store, StoreSettings, compute_rollups, open_store
from testkit.servers import start_influxdb
from wire import MACHINE_STATES, Sample

S = 10**9
H = 3600 * S
MEMBER = "m-aaaaaa"
ASSET = "a-00000001"


def _day(end: int) -> list[Sample]:
    out: list[Sample] = []
    for i in range(24 * 1800):
        ts = end - 24 * H + i * 2 * S
        out += [
            Sample(ts, ASSET, "press", "energy_kwh", i * 0.01),
            Sample(ts, ASSET, "press", "parts_total", i // 10),
            Sample(ts, ASSET, "press", "state", MACHINE_STATES[(i // 300) % len(MACHINE_STATES)]),
            Sample(ts, ASSET, "press", "power_kw", float(i % 17)),
            Sample(ts, ASSET, "press", "temperature_c", 20.0 + i % 5),
        ]
    return out


@contextmanager
def _no_windows() -> Any:
    """The baseline: every late sample recomputed from its hour up to now (the window refused)."""
    saved = duck_rollups.window_end, influx_rollups.window_end
    duck_rollups.window_end = influx_rollups.window_end = lambda *a, **k: None  # type: ignore[assignment]
    try:
        yield
    finally:
        duck_rollups.window_end, influx_rollups.window_end = saved


def _timed(store: Store, batch: list[Sample], other_pid: int | None) -> tuple[float, float, float]:
    store.write(MEMBER, batch)
    c0, o0, t0 = time.process_time(), cpu_s(other_pid) if other_pid else 0.0, time.perf_counter()
    store.refresh_rollups()
    wall = time.perf_counter() - t0
    return wall * 1e3, (time.process_time() - c0) * 1e3, ((cpu_s(other_pid) - o0) * 1e3 if other_pid else 0.0)


def measure(store: Store, rounds: int, other_pid: int | None) -> dict[str, Any]:
    end = (time.time_ns() // H - 2) * H
    day = _day(end)
    for lo in range(0, len(day), 20_000):
        store.write(MEMBER, day[lo : lo + 20_000])
    store.refresh_rollups()
    seen: dict[str, list[tuple[float, float, float]]] = {"live": [], "window": [], "full": []}
    step = 0

    def live() -> list[Sample]:
        nonlocal step
        step += 1
        return [Sample(end + step * 2 * S, ASSET, "press", "power_kw", float(step % 7))]

    def late(k: int) -> Sample:
        old = end - 23 * H + (k % 20) * H + 610 * S + 4 * S * (k // 20)
        return Sample(old, ASSET, "press", "energy_kwh", 1e4 + k)

    kinds: list[tuple[str, Callable[[int], list[Sample]]]] = [
        ("live", lambda k: live()),
        ("window", lambda k: [*live(), late(2 * k)]),
        ("full", lambda k: [*live(), late(2 * k + 1)]),
    ]
    before = dict(store.rollups.recomputes)
    for k in range(rounds):
        for kind, batch in kinds:
            if kind == "full":
                with _no_windows():
                    seen[kind].append(_timed(store, batch(k), other_pid))
            else:
                seen[kind].append(_timed(store, batch(k), other_pid))
    after = dict(store.rollups.recomputes)
    stored = store.query_series(SeriesQuery()).with_columns(pl.col("ts").cast(pl.Int64))
    try:
        assert_frame_equal(store.query_rollups(RollupQuery()), compute_rollups(stored), check_exact=False, abs_tol=1e-6)
        equal = True
    except AssertionError:
        equal = False
    out: dict[str, Any] = {"samples": stored.height, "rounds": rounds, "rows_equal": equal}
    out["recomputes"] = {k: after.get(k, 0) - before.get(k, 0) for k in ("window", "full")}
    for kind, runs in seen.items():
        out[f"{kind}_ms"] = round(statistics.median(r[0] for r in runs), 1)
        out[f"{kind}_worst_ms"] = round(max(r[0] for r in runs), 1)
        out[f"{kind}_cpu_ms"] = round(statistics.median(r[1] for r in runs), 1)
        if other_pid:
            out[f"influxdb_{kind}_cpu_ms"] = round(statistics.median(r[2] for r in runs), 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--store", choices=("influxdb", "embedded", "both"), default="both")
    args = parser.parse_args()
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="mdh-late-") as tmp:
        work = Path(tmp)
        if args.store in ("influxdb", "both"):
            influx = start_influxdb(work / "influxdb")
            try:
                settings = StoreSettings.model_validate(
                    {
                        "kind": "influxdb1",
                        "url": influx.url,
                        "database": "late",
                        "username": influx.username,
                        "password": influx.password,
                    }
                )
                store = open_store(settings)
                try:
                    assert influx.proc is not None
                    result["influxdb"] = measure(store, args.rounds, influx.proc.pid)
                finally:
                    store.close()
            finally:
                influx.stop()
        if args.store in ("embedded", "both"):
            store = open_store(StoreSettings(kind="duckdb", path=work / "hub.duckdb"))
            try:
                result["embedded"] = measure(store, args.rounds, None)
            finally:
                store.close()
    for name, r in result.items():
        print(
            f"{name:9} refresh after: live {r['live_ms']} ms, a day-old sample over its window {r['window_ms']} ms "
            f"(cpu {r['window_cpu_ms']}), recomputed up to now {r['full_ms']} ms (cpu {r['full_cpu_ms']}); "
            f"recomputes {r['recomputes']}, rows equal {r['rows_equal']}"
        )
    print(json.dumps(result))


if __name__ == "__main__":
    _common.HERE  # noqa: B018 (imported for the path)
    main()
