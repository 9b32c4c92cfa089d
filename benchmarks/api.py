"""Benchmark of the analytics API: benchmark endpoint p95 and Arrow export throughput.

Generates 100 assets x 30 days of minute data (state, energy, parts, scrap: 17.3M samples) into an
embedded DuckDB store, lets the store build its hourly rollups through its own rollup keeper, starts
the API on a loopback port (uvicorn), and measures, each beside a direct polars/DuckDB query of the
same data in the same run:

* ``GET /v1/benchmarks/{kpi}`` p95 latency (target < 300 ms) against computing the same cells with
  DuckDB + polars in process;
* ``GET /v1/series?format=arrow`` rows/s, read into polars by the client (target >= 1M rows/s), against
  DuckDB's own ``.pl()`` of the same rows.

Run: ``.venv/bin/python benchmarks/api.py``. The last line of output is JSON with the figures.
"""

from __future__ import annotations

import io
import json
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import _common  # first: the import path (this file is api.py; ``api`` must be the package)
import httpx
import polars as pl
import uvicorn

from api.core.cells import contributions, period_starts, release
from api.core.disclosure import Rules
from api.http.app import create_app, tune_interpreter
from api.settings import ApiSettings
from api.tokens import TokenStore
from core.register import DEFAULT_EMISSION_FACTOR, Member, Register
from storage import DuckDBStore, RollupQuery

ASSETS = 100
DAYS = 30
MINUTES = DAYS * 24 * 60
CLASSES = ("cnc_milling", "press", "laser_cutting")
MEMBERS = 25  # four assets each
KPI_NAMES = ("energy_per_good_part_kwh", "utilisation", "scrap_rate", "good_parts_per_hour", "co2e_per_good_part_kg")


def log(message: str) -> None:
    print(message, flush=True)


def plan() -> tuple[Register, list[tuple[str, str, str, int]]]:
    members = [f"m-{0xB00000 + i:06x}" for i in range(MEMBERS)]
    # 20 corporate groups: the first five groups own two members each
    register = Register(
        member=[
            Member(
                pseudonym=m, group=f"grp-{(i // 2) if i < 10 else i - 5:02d}", emission_factor_kg_per_kwh=0.3 + i / 100
            )
            for i, m in enumerate(members)
        ]
    )
    assets = [(members[i // 4], f"a-{0xA0000000 + i:08x}", CLASSES[i % len(CLASSES)], i) for i in range(ASSETS)]
    return register, assets


def generate(store: DuckDBStore, assets: list[tuple[str, str, str, int]], t0_ns: int) -> int:
    """Bulk-insert minute samples with SQL, then mark every asset's range for the store's rollup keeper."""
    with store.connection.exclusive() as con:  # bulk generation only; the API reads through the Store interface
        con.execute("CREATE TEMP TABLE plan (member VARCHAR, asset VARCHAR, asset_class VARCHAR, n INTEGER)")
        con.executemany("INSERT INTO plan VALUES (?, ?, ?, ?)", assets)
        minute = 60 * 10**9
        common = f"""
            FROM plan CROSS JOIN range({MINUTES}) AS r(i)
        """
        # energy: 0.05..0.15 kWh per minute while running; parts: one per 2..5 minutes; scrap: one in 20..50 parts;
        # every tenth asset restarts on day 12 (its counters count from zero again).
        running = "((i // 30 + n) % 5 <> 0)"
        restart = f"CASE WHEN n % 10 = 0 AND i >= {12 * 1440} THEN i - {12 * 1440} ELSE i END"
        selects = {
            "state": f"NULL, CASE WHEN {running} THEN 'running' ELSE 'idle' END",
            "energy_kwh": f"({restart}) * (0.05 + (n % 11) / 100.0), NULL",
            "parts_total": f"floor(({restart}) / (2 + n % 4))::DOUBLE, NULL",
            "parts_scrap_total": f"floor(({restart}) / (2 + n % 4) / (20 + n % 31))::DOUBLE, NULL",
        }
        for signal, value_text in selects.items():
            con.execute(
                "INSERT INTO samples (member, asset, asset_class, signal, ts, value, text, quality) "
                f"SELECT member, asset, asset_class, '{signal}', {t0_ns} + i * {minute}, {value_text}, 0 {common}"
            )
        con.execute(
            "INSERT INTO rollup_dirty SELECT member, asset, "
            f"{t0_ns}, {t0_ns + MINUTES * minute + 3600 * 10**9} FROM plan"
        )
        row = con.execute("SELECT count(*) FROM samples").fetchone()
    return int(row[0]) if row else 0


def direct_cells(
    store: DuckDBStore, register: Register, kpi: str, asset_class: str, start: datetime, end: datetime, now: datetime
) -> int:
    """The same cells computed in process: DuckDB reads the rollups, polars pools and the rules apply."""
    rollups = store.query_rollups(
        RollupQuery(
            asset_classes=(asset_class,), start_ns=int(start.timestamp()) * 10**9, end_ns=int(end.timestamp()) * 10**9
        )
    )
    by_period = contributions(
        rollups,
        kpi=kpi,
        period="day",
        groups={m.pseudonym: m.group for m in register.member},
        emission_factors={m.pseudonym: m.emission_factor_kg_per_kwh for m in register.member},
        default_factor=DEFAULT_EMISSION_FACTOR,
    )
    released = release(
        by_period,
        kpi=kpi,
        asset_class=asset_class,
        period="day",
        starts=period_starts(start, end, "day"),
        overlapping=[],
        rules=Rules(),
        key=b"benchmark-key-0123456789abcdef00",
        now=now,
    )
    return len(released.cells)


def main() -> int:
    started = time.perf_counter()
    register, assets = plan()
    now = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    t0 = now - timedelta(days=DAYS + 10)
    t0_ns = int(t0.timestamp()) * 10**9
    with tempfile.TemporaryDirectory(prefix="mdh-bench-") as tmp:
        store = DuckDBStore(Path(tmp) / "hub.duckdb")
        t = time.perf_counter()
        rows = generate(store, assets, t0_ns)
        gen_s = time.perf_counter() - t
        log(f"generated {rows:,} samples of {ASSETS} assets x {DAYS} days in {gen_s:.1f} s")
        t = time.perf_counter()
        rollup_rows = store.query_rollups(RollupQuery()).height  # the keeper recomputes every dirty range
        rollup_s = time.perf_counter() - t
        log(f"rollups: {rollup_rows:,} asset-hours in {rollup_s:.1f} s")

        settings = ApiSettings(
            tokens_file=Path(tmp) / "tokens.json",
            audit_log=Path(tmp) / "audit.log",
            cell_key_file=Path(tmp) / "cell_key",
            max_page_rows=5_000_000,
        )
        tokens = TokenStore(settings.tokens_file)
        member_token, _ = tokens.create("member", member=assets[0][0])
        analyst_token, _ = tokens.create("analyst")
        tune_interpreter(settings)  # as the hub's API role does
        app = create_app(settings, store, lambda: register)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        start, end = t0, t0 + timedelta(days=DAYS)
        window = f"start={start.isoformat()}&end={end.isoformat()}".replace("+", "%2B")

        with httpx.Client(base_url=base, timeout=120) as client:
            # -- benchmark endpoint ------------------------------------------------------------------
            api_times: list[float] = []
            release_times: list[float] = []  # round 0: each request releases and freezes its cells
            direct_times: list[float] = []
            published = 0
            for round_ in range(6):
                for kpi in KPI_NAMES:
                    for cls in CLASSES:
                        token = member_token if round_ % 2 else analyst_token
                        t = time.perf_counter()
                        r = client.get(
                            f"/v1/benchmarks/{kpi}?asset_class={cls}&period=day&{window}",
                            headers={"Authorization": f"Bearer {token}"},
                        )
                        api_times.append(time.perf_counter() - t)
                        if round_ == 0:
                            release_times.append(api_times[-1])
                        r.raise_for_status()
                        published += sum(c["status"] == "published" for c in r.json()["cells"])
                        t = time.perf_counter()
                        direct_cells(store, register, kpi, cls, start, end, now)
                        direct_times.append(time.perf_counter() - t)
            benchmark_p95 = _common.percentile(api_times, 0.95) * 1000
            direct_p95 = _common.percentile(direct_times, 0.95) * 1000
            benchmark_p50 = _common.percentile(api_times, 0.5) * 1000
            log(
                f"benchmark endpoint: {len(api_times)} requests, p50 {benchmark_p50:.0f} ms, "
                f"p95 {benchmark_p95:.0f} ms; direct DuckDB+polars p95 {direct_p95:.0f} ms; "
                f"{published} published cells; first requests (release into the ledger) p95 "
                f"{_common.percentile(release_times, 0.95) * 1000:.0f} ms"
            )

            # -- Arrow export --------------------------------------------------------------------------
            export_end = t0 + timedelta(days=15)
            query = f"signal=energy_kwh&signal=parts_total&start={t0.isoformat()}&end={export_end.isoformat()}".replace(
                "+", "%2B"
            )
            api_rates: list[float] = []
            direct_rates: list[float] = []
            exported = 0
            cur = store.cursor()
            try:
                for _ in range(3):
                    t = time.perf_counter()
                    r = client.get(
                        f"/v1/series?{query}&format=arrow&limit=5000000",
                        headers={"Authorization": f"Bearer {analyst_token}"},
                    )
                    r.raise_for_status()
                    frame = pl.read_ipc_stream(io.BytesIO(r.content))
                    api_rates.append(frame.height / (time.perf_counter() - t))
                    exported = frame.height
                    t = time.perf_counter()
                    direct = cur.sql(
                        "SELECT ts, member, asset, asset_class, signal, value, text, quality FROM samples "
                        "WHERE signal IN ('energy_kwh', 'parts_total') AND ts >= ? AND ts < ? "
                        "ORDER BY ts, member, asset, signal",
                        params=[t0_ns, int(export_end.timestamp()) * 10**9],
                    ).pl()
                    direct_rates.append(direct.height / (time.perf_counter() - t))
                    assert direct.height == frame.height, (direct.height, frame.height)
            finally:
                cur.close()
            arrow_rate = statistics.median(api_rates)
            direct_rate = statistics.median(direct_rates)
            log(
                f"arrow export: {exported:,} rows, median {arrow_rate:,.0f} rows/s through the API; "
                f"direct DuckDB .pl() {direct_rate:,.0f} rows/s"
            )
        server.should_exit = True
        thread.join(timeout=10)
        store.close()

    figures = {
        "assets": ASSETS,
        "days": DAYS,
        "samples": rows,
        "generate_s": round(gen_s, 1),
        "rollups_s": round(rollup_s, 1),
        "benchmark_requests": len(api_times),
        "benchmark_p95_ms": round(benchmark_p95, 1),
        "benchmark_release_p95_ms": round(_common.percentile(release_times, 0.95) * 1000, 1),
        "direct_benchmark_p95_ms": round(direct_p95, 1),
        "arrow_rows": exported,
        "arrow_rows_per_s": round(arrow_rate),
        "direct_rows_per_s": round(direct_rate),
        "benchmark_p95_target_met": benchmark_p95 < 300,
        "arrow_target_met": arrow_rate >= 1_000_000,
        "total_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
