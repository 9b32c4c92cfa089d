"""Queries under live ingest: ``/v1/kpis`` and ``/v1/benchmarks`` latency while 2,400 assets send 12.6k samples/s.

For each store (InfluxDB 1.x started from the Debian package, and the embedded DuckDB store):

1. preload: rollup rows of the 23 hours before the open hour for every asset (written as rollups, as if
   kept), and ``--preload-min`` minutes of raw samples up to now through the store's ``write`` (the open
   hour's data so far), then one refresh (no carries yet: every asset's open hour recomputed from raw,
   as after a restart);
2. live: a feeder thread writes every second the samples of every member's assets for that second, in one
   ``write_many`` (the call the ingestor's flush makes; no MQTT in between), 2,400 assets x
   5.25 samples/s; the real housekeeping task refreshes the rollups every 5 s; a client in its own process
   (``remote_client.py``: a client does not share the hub's interpreter lock) queries the real
   FastAPI app under uvicorn on a loopback port, in rounds of ``--member-per-round`` (5) requests for
   ``/v1/kpis`` of one member (2 assets, hourly, the last 24 hours), then one ``/v1/kpis`` of all assets
   (hourly, 24 hours, analyst) and one ``/v1/benchmarks`` (member), for ``--live-s`` seconds and until at
   least ``--min-member-requests`` (20) member requests were made (at most 3x the window); the first
   benchmark request releases its daily cells into the ledger, and the first all-assets request fills
   the InfluxDB store's rollup cache: both are reported apart (``*_first_ms``), the p95 is of the others;
3. in-run comparison (InfluxDB), still under ingest: ``--uncached-requests`` rounds with the rollup cache
   off (``uncached_*``);
4. baseline, in the same run: the old behaviour, every request first recomputing every pending asset's
   open hour from raw (the keeper's carries dropped before each request), for a few member requests.

Last line: ``{"influxdb": {"member_p95_ms", "all_p95_ms", "all_first_ms", "benchmark_p95_ms",
"member_requests", "all_requests", "samples_per_s", "uncached_all_p95_ms", "cache_hit_hours",
"baseline_member_p95_ms", ...}, "embedded": {...}}``.
Run: ``.venv/bin/python benchmarks/live_queries.py [--live-s 20] [--preload-min 1]`` (about 2 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import _common
import polars as pl
import uvicorn
from remote_client import RemoteClient

from api.http.app import create_app, tune_interpreter
from api.settings import ApiSettings
from api.tokens import TokenStore
from core.register import Member, Register
from storage import ROLLUP_SCHEMA, DuckDBStore, InfluxStore, IngestSettings, Store, StoreSettings, open_store
from storage.duckdb.written import WrittenBatches
from storage.housekeeping import housekeep
from storage.influx.lineprotocol import encode_lines, encode_point
from testkit.servers import start_influxdb
from wire import Sample

ASSETS = 2400
MEMBERS = 60  # member 0 has two assets, the others share the rest
CLASSES = ("cnc_milling", "press", "laser_cutting", "grinding")
#: signal -> every how many seconds an asset sends it: 5.25 samples/s per asset, 12,600/s over 2,400 assets
EVERY = {
    "power_kw": 1,
    "spindle_speed_rpm": 1,
    "energy_kwh": 1,
    "temperature_c": 1,
    "parts_total": 2,
    "parts_scrap_total": 4,
    "state": 4,
    "downtime_reason": 4,
}
S = 10**9
H = 3600 * S


def log(message: str) -> None:
    print(message, flush=True)


def plan() -> tuple[Register, dict[str, list[tuple[int, str, str]]]]:
    members = [f"m-{0xC00000 + i:06x}" for i in range(MEMBERS)]
    register = Register(
        member=[
            Member(pseudonym=m, group=f"grp-{i:02d}", emission_factor_kg_per_kwh=0.38) for i, m in enumerate(members)
        ]
    )
    assets: dict[str, list[tuple[int, str, str]]] = {m: [] for m in members}
    for i in range(ASSETS):
        member = members[0] if i < 2 else members[1 + (i - 2) % (MEMBERS - 1)]
        assets[member].append((i, f"a-{0xD0000000 + i:08x}", CLASSES[i % len(CLASSES)]))
    return register, assets


def second_of(assets: list[tuple[int, str, str]], t: int) -> list[Sample]:
    """The samples the assets send in second ``t`` (seconds since the epoch)."""
    out: list[Sample] = []
    ts = t * S
    for i, asset, cls in assets:
        running = (t // 300 + i) % 6 != 0
        for signal, every in EVERY.items():
            if (t + i) % every:
                continue
            value: float | str
            if signal == "energy_kwh":
                value = round(t * 0.004 * (1 + i % 5), 3)
            elif signal == "parts_total":
                value = float(t // (20 + i % 7))
            elif signal == "parts_scrap_total":
                value = float(t // (20 + i % 7) // 30)
            elif signal == "state":
                value = "running" if running else "idle"
            elif signal == "downtime_reason":
                value = "none" if running else "maintenance"
            elif signal == "power_kw":
                value = 10.0 + (t * 7 + i) % 97 / 4
            elif signal == "spindle_speed_rpm":
                value = 8000.0 + (t + i) % 400
            else:
                value = 35.0 + (i % 13) / 2
            out.append(Sample(ts=ts, asset=asset, asset_class=cls, signal=signal, value=value))
    return out


def history_rows(assets: dict[str, list[tuple[int, str, str]]], open_hour: int) -> pl.DataFrame:
    """Plausible kept rollup rows for the 23 hours before the open hour."""
    rows = []
    for member, owned in assets.items():
        for i, asset, cls in owned:
            for k in range(1, 24):
                row = {c: 0.0 for c in ROLLUP_SCHEMA if ROLLUP_SCHEMA[c] == pl.Float64()}
                row.update(
                    member=member,
                    asset=asset,
                    asset_class=cls,
                    hour=open_hour - k * H,
                    energy_kwh=14.4 * (1 + i % 5),
                    parts_total=3600 / (20 + i % 7),
                    parts_scrap=3600 / (20 + i % 7) / 30,
                    seconds_running=3000.0,
                    seconds_idle=600.0,
                    seconds_down_maintenance=600.0,
                    power_kw_mean=22.0,
                    power_kw_min=10.0,
                    power_kw_max=34.0,
                    samples=18000,
                )
                rows.append(row)
    return pl.DataFrame(rows, schema={**ROLLUP_SCHEMA, "hour": pl.Int64()})


def preload_history(store: Store, frame: pl.DataFrame) -> None:
    if isinstance(store, DuckDBStore):
        with store.connection.exclusive() as con:
            con.register("history", frame)
            con.execute("INSERT OR REPLACE INTO rollups BY NAME SELECT * FROM history")
            con.unregister("history")
        return
    assert isinstance(store, InfluxStore)
    store.refresh_rollups()  # creates the database and its retention policies
    fields = [c for c in ROLLUP_SCHEMA if c not in ("member", "asset", "asset_class", "hour")]
    lines = [
        encode_point(
            "rollups",
            {"member": r["member"], "asset": r["asset"], "asset_class": r["asset_class"]},
            {f: r[f] for f in fields},
            r["hour"],
        )
        for r in frame.iter_rows(named=True)
    ]
    for i in range(0, len(lines), 10_000):
        store.write_lines(encode_lines(lines[i : i + 10_000]), rp=store.rollup_rp)


class Feeder(threading.Thread):
    """Writes each second's samples of every member through ``store.write``, once a second, from ``start``."""

    def __init__(self, store: Store, assets: dict[str, list[tuple[int, str, str]]], start: int) -> None:
        super().__init__(daemon=True)
        self.store, self.assets, self.next = store, assets, start
        self.stop = threading.Event()
        self.written = 0
        self.batches = 0
        self.behind_s = 0.0
        self.error: BaseException | None = None

    def run(self) -> None:
        """Like the ingestor's flush: one ``write_many`` of every member's samples due, so batches grow when
        writes are slow (the ingestor writes what arrived since its last flush, per member)."""
        try:
            while not self.stop.is_set():
                now = time.time()
                if self.next >= now:
                    self.stop.wait(self.next - now + 0.001)
                    continue
                due = range(self.next, int(now))
                if not due:
                    continue
                self.behind_s = max(self.behind_s, now - self.next - 1)
                flush = {member: [s for t in due for s in second_of(owned, t)] for member, owned in self.assets.items()}
                self.written += self.store.write_many(flush)
                self.batches += len(flush)
                self.next = int(now)
        except BaseException as exc:  # reported by the main thread
            self.error = exc


def serve(app: object) -> tuple[uvicorn.Server, threading.Thread, str]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, thread, f"http://127.0.0.1:{port}"


def leg(
    name: str, store: Store, keeper_reset: Callable[[], None], work: Path, args: argparse.Namespace
) -> dict[str, float]:
    register, assets = plan()
    now_s = int(time.time())
    open_hour = now_s * S // H * H
    t = time.perf_counter()
    preload_history(store, history_rows(assets, open_hour))
    first = now_s - args.preload_min * 60
    preloaded = 0
    for member, owned in assets.items():
        for lo in range(first, now_s, 30):  # 30 s of a member per write
            samples = [s for second in range(lo, min(lo + 30, now_s)) for s in second_of(owned, second)]
            preloaded += store.write(member, samples)
    log(
        f"{name}: preloaded 23 h of rollups and {preloaded:,} raw samples ({args.preload_min} min) in "
        f"{time.perf_counter() - t:.1f} s"
    )
    t = time.perf_counter()
    refreshed = store.refresh_rollups()
    initial_s = time.perf_counter() - t
    log(f"{name}: first refresh (every asset's open hour from raw) {refreshed} assets in {initial_s:.1f} s")

    settings = ApiSettings(
        tokens_file=work / f"{name}-tokens.json",
        audit_log=work / f"{name}-audit.log",
        cell_key_file=work / f"{name}-key",
    )
    tokens = TokenStore(settings.tokens_file)
    member0 = next(iter(assets))
    member_token, _ = tokens.create("member", member=member0)
    analyst_token, _ = tokens.create("analyst")
    tune_interpreter(settings)  # as the hub's API role does
    app = create_app(settings, store, lambda: register)
    server, thread, base = serve(app)
    start = datetime.fromtimestamp(open_hour // S, UTC) - timedelta(hours=23)
    end = datetime.fromtimestamp(open_hour // S, UTC) + timedelta(hours=1)
    window = f"start={start.isoformat()}&end={end.isoformat()}".replace("+", "%2B")
    member_url = f"/v1/kpis?period=hour&{window}"
    all_url = f"/v1/kpis?period=hour&{window}"
    bench_url = "/v1/benchmarks/utilisation?asset_class=cnc_milling&period=day"

    feeder = Feeder(store, assets, int(time.time()))  # the seconds spent on preload and first refresh: a pause
    loop = asyncio.new_event_loop()
    house = IngestSettings(rollup_refresh_s=args.refresh_s, retention_check_s=86_400.0)
    task = loop.create_task(housekeep(store, house))

    def housekeeping() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(task)

    house_thread = threading.Thread(target=housekeeping, daemon=True)
    times: dict[str, list[float]] = {k: [] for k in ("member", "all", "benchmark", "uncached_member", "uncached_all")}
    hits = misses = 0
    staleness: list[float] = []
    rows_all = 0
    feeder.start()
    house_thread.start()
    try:
        with RemoteClient(base) as client:  # a client is another process (see remote_client.py)
            started = time.perf_counter()
            written0, batches0 = feeder.written, feeder.batches

            def enough() -> bool:  # the window, and enough member requests for a p95 (within 3x the window)
                elapsed = time.perf_counter() - started
                return elapsed >= 3 * args.live_s or (
                    elapsed >= args.live_s and len(times["member"]) >= args.min_member_requests
                )

            while not enough():
                if feeder.error is not None:
                    raise RuntimeError(f"feeder failed: {feeder.error}") from feeder.error
                for _ in range(args.member_per_round):
                    dt, body = client.timed(member_url, member_token)
                    times["member"].append(dt)
                    as_of = body.get("as_of")
                    if isinstance(as_of, str):
                        staleness.append(time.time() - datetime.fromisoformat(as_of).timestamp())
                    assert body["assets"] == 2, body
                if enough():
                    break
                dt, body = client.timed(all_url, analyst_token)
                times["all"].append(dt)
                rows_all = body["rows"]
                dt, _ = client.timed(bench_url, member_token)
                times["benchmark"].append(dt)
            live_s = time.perf_counter() - started
            rate = (feeder.written - written0) / live_s
            per_write = (feeder.written - written0) / max(feeder.batches - batches0, 1)
            # -- in-run comparison: the same requests, still under ingest, with the rollup cache off -----------
            cache = store.rollups.reader.cache if isinstance(store, InfluxStore) else None
            if cache is not None and cache.enabled:
                hits, misses = cache.stats.hits, cache.stats.misses
                rows_cap, cache.max_rows = cache.max_rows, 0
                for _ in range(args.uncached_requests):
                    for _ in range(args.member_per_round):
                        times["uncached_member"].append(client.timed(member_url, member_token)[0])
                    times["uncached_all"].append(client.timed(all_url, analyst_token)[0])
                cache.max_rows = rows_cap
            # -- baseline: every request recomputes every pending asset's open hour from raw ------------------
            task.cancel()
            house_thread.join(timeout=60)
            baseline: list[float] = []
            for _ in range(args.baseline_requests):
                t = time.perf_counter()
                keeper_reset()
                store.refresh_rollups()
                client.timed(member_url, member_token)
                baseline.append(time.perf_counter() - t)
    finally:
        feeder.stop.set()
        feeder.join(timeout=30)
        if not task.done():
            loop.call_soon_threadsafe(task.cancel)
            house_thread.join(timeout=60)
        server.should_exit = True
        thread.join(timeout=10)
    out = {
        "member_p95_ms": round(_common.percentile(times["member"], 0.95) * 1000, 1),
        "member_p50_ms": round(_common.percentile(times["member"], 0.5) * 1000, 1),
        "all_p95_ms": round(_common.percentile(times["all"][1:] or times["all"], 0.95) * 1000, 1),
        "all_p50_ms": round(_common.percentile(times["all"][1:] or times["all"], 0.5) * 1000, 1),
        "all_first_ms": round(times["all"][0] * 1000, 1),
        "benchmark_p95_ms": round(_common.percentile(times["benchmark"][1:], 0.95) * 1000, 1),
        "benchmark_p50_ms": round(_common.percentile(times["benchmark"][1:], 0.5) * 1000, 1),
        "benchmark_first_ms": round(times["benchmark"][0] * 1000, 1),
        "member_requests": len(times["member"]),
        "all_requests": len(times["all"]),
        "benchmark_requests": len(times["benchmark"]),
        "all_rows": rows_all,
        "samples_per_s": round(rate),
        "samples_per_write": round(per_write),
        "feeder_max_behind_s": round(feeder.behind_s, 2),
        "as_of_age_p95_s": round(_common.percentile(staleness, 0.95), 2),
        "preloaded_samples": preloaded,
        "first_refresh_s": round(initial_s, 1),
        "baseline_member_p95_ms": round(_common.percentile(baseline, 0.95) * 1000, 1),
        "baseline_requests": len(baseline),
    }
    if times["uncached_all"]:
        out.update(
            uncached_member_p95_ms=round(_common.percentile(times["uncached_member"], 0.95) * 1000, 1),
            uncached_all_p95_ms=round(_common.percentile(times["uncached_all"], 0.95) * 1000, 1),
            uncached_all_requests=len(times["uncached_all"]),
            cache_hit_hours=hits,
            cache_miss_hours=misses,
        )
    log(f"{name}: {json.dumps(out)}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--live-s", type=float, default=20.0, help="seconds of queries under ingest per store")
    parser.add_argument("--preload-min", type=int, default=1, help="minutes of raw samples preloaded")
    parser.add_argument("--refresh-s", type=float, default=5.0, help="background rollup refresh period")
    parser.add_argument("--baseline-requests", type=int, default=1)
    parser.add_argument("--member-per-round", type=int, default=5, help="member requests per all-assets request")
    parser.add_argument("--min-member-requests", type=int, default=20, help="member requests at least")
    parser.add_argument("--uncached-requests", type=int, default=2, help="InfluxDB: rounds with the cache off")
    parser.add_argument("--only", choices=("influxdb", "embedded"), default=None)
    parser.add_argument(
        "--embedded-kept-samples",
        type=int,
        default=None,
        help="the embedded keeper's memory of written batches (0: read every asset back, as before the memory)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log InfluxDB rollup refreshes and queries, benchmark requests' phases",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.verbose:
        logging.getLogger("storage.influx.rollups").setLevel(logging.DEBUG)
        logging.getLogger("storage.influx.rollup_reader").setLevel(logging.DEBUG)
        logging.getLogger("api.http.routes.benchmarks").setLevel(logging.DEBUG)
    result: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="mdh-live-") as tmp:
        work = Path(tmp)
        if args.only in (None, "influxdb"):
            influx = start_influxdb(work / "influxdb")
            try:
                store = open_store(
                    StoreSettings(
                        kind="influxdb1",
                        url=influx.url,
                        database="live",
                        username=influx.username,
                        password=influx.password,  # type: ignore[arg-type]
                    )
                )
                assert isinstance(store, InfluxStore)
                try:
                    result["influxdb"] = leg("influxdb", store, store.rollups.reset, work, args)
                finally:
                    store.close()
            finally:
                influx.stop()
        if args.only in (None, "embedded"):
            duck = DuckDBStore(work / "hub.duckdb")
            if args.embedded_kept_samples is not None:
                duck.rollups.written = WrittenBatches(max_samples=args.embedded_kept_samples)
            try:
                result["embedded"] = leg("embedded", duck, duck.rollups.reset, work, args)
            finally:
                with contextlib.suppress(Exception):
                    duck.close()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
