"""The InfluxDB rollup cache of settled hours: attacks on its invalidation across processes, its member isolation
and its bounds, on a real InfluxDB 1.x; and the pure cache with tables of cases.

"Another process" is a second :class:`InfluxStore` on the same database: it writes and refreshes (as the ingest
process does), while the querying store never refreshes (``refresh_max_assets=0``), so what it answers comes
from its cache and InfluxDB only."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from pydantic import ValidationError

from api.http.app import create_app
from api.settings import ApiSettings
from core.register import Register
from storage import InfluxStore, RollupQuery, StoreSettings, open_store
from storage.base import ROLLUP_SCHEMA
from storage.influx.rollup_cache import SETTLE_NS, RollupCache, announced_hours, settled_range
from storage.influx.rollup_reader import CHANGES
from testkit.servers import InfluxServer
from tests.storage.conftest import influx_settings
from wire import Sample

S = 10**9
H = 3600 * S
M1, M2 = "m-c0ffee", "m-beef00"
A1, A2, A3 = "a-000001", "a-000002", "a-000003"
OWNED = {M1: ((A1, "press"), (A2, "laser_cutting")), M2: ((A3, "press"),)}


def _now_hour() -> int:
    return time.time_ns() // H * H


def _hour_samples(asset: str, cls: str, hour: int, *, seed: int) -> list[Sample]:
    """A few samples of every kind in ``hour``."""
    rnd = random.Random(seed)
    out = []
    for k in range(4):
        ts = hour + k * 600 * S + rnd.randrange(60) * S
        out += [
            Sample(ts=ts, asset=asset, asset_class=cls, signal="power_kw", value=rnd.uniform(1, 50)),
            Sample(ts=ts, asset=asset, asset_class=cls, signal="parts_total", value=float(k * 10 + rnd.randrange(5))),
            Sample(ts=ts, asset=asset, asset_class=cls, signal="state", value=rnd.choice(["running", "idle"])),
        ]
    return out


def _write_history(store: InfluxStore, hours: range) -> None:
    for member, owned in OWNED.items():
        samples = [
            s for asset, cls in owned for h in hours for s in _hour_samples(asset, cls, h, seed=h // H + int(asset[-1]))
        ]
        store.write(member, samples)
    store.refresh_rollups()


def _store(server: InfluxServer, database: str, **extra: object) -> InfluxStore:
    store = open_store(influx_settings(server, **extra).model_copy(update={"database": database}))
    assert isinstance(store, InfluxStore)
    return store


@pytest.fixture
def stores(influx_server: InfluxServer) -> Iterator[tuple[InfluxStore, InfluxStore, InfluxStore]]:
    """(ingest: writes and refreshes, api: queries with the cache, plain: queries without it), one database."""
    db = influx_settings(influx_server).database
    ingest = _store(influx_server, db)
    api = _store(influx_server, db)
    plain = _store(influx_server, db, rollup_cache_rows=0)
    try:
        yield ingest, api, plain
    finally:
        for s in (ingest, api, plain):
            s.close()


def _read(store: InfluxStore, **query: object) -> pl.DataFrame:
    return store.read_rollups(RollupQuery(refresh_max_assets=0, **query)).frame  # type: ignore[arg-type]


def _day(**extra: object) -> dict[str, object]:
    now = _now_hour()
    return {"start_ns": now - 24 * H, "end_ns": now + H, **extra}


@pytest.mark.integration
def test_a_late_sample_written_by_another_process_changes_the_next_cached_answer(
    stores: tuple[InfluxStore, InfluxStore, InfluxStore],
) -> None:
    ingest, api, plain = stores
    now = _now_hour()
    _write_history(ingest, range(now - 6 * H, now, H))
    first = _read(api, **_day())
    again = _read(api, **_day())
    stats = api.rollups.reader.cache.stats
    assert stats.hits >= 5, stats  # the second answer came from the cache
    assert_frame_equal(again, first)
    late_hour = now - 4 * H
    before = first.filter((pl.col("asset") == A1) & (pl.col("hour").dt.epoch("ns") == late_hour))
    ingest.write(M1, [Sample(ts=late_hour + 3590 * S, asset=A1, asset_class="press", signal="power_kw", value=9999.0)])
    assert ingest.refresh_rollups() == 1
    after = _read(api, **_day())
    changed = after.filter((pl.col("asset") == A1) & (pl.col("hour").dt.epoch("ns") == late_hour))
    assert changed["power_kw_max"][0] == 9999.0 != before["power_kw_max"][0]
    assert changed["samples"][0] == before["samples"][0] + 1
    assert_frame_equal(after, _read(plain, **_day()))


@pytest.mark.integration
def test_a_rewrite_by_the_querying_process_itself_changes_its_next_cached_answer(
    stores: tuple[InfluxStore, InfluxStore, InfluxStore],
) -> None:
    _, api, plain = stores  # the embedded hub: one process writes, refreshes and answers
    now = _now_hour()
    _write_history(api, range(now - 5 * H, now - 2 * H, H))
    first = _read(api, **_day())
    late_hour = now - 4 * H
    api.write(M2, [Sample(ts=late_hour + 10 * S, asset=A3, asset_class="press", signal="power_kw", value=-7.0)])
    assert api.refresh_rollups() == 1
    after = _read(api, **_day())
    assert not after.equals(first)
    assert after.filter(pl.col("asset") == A3)["power_kw_min"].min() == -7.0
    assert_frame_equal(after, _read(plain, **_day()))


@pytest.mark.integration
def test_a_member_deleted_by_another_process_disappears_from_cached_answers(
    stores: tuple[InfluxStore, InfluxStore, InfluxStore],
) -> None:
    ingest, api, plain = stores
    now = _now_hour()
    _write_history(ingest, range(now - 5 * H, now - 2 * H, H))
    assert set(_read(api, **_day())["member"]) == {M1, M2}
    assert _read(api, **_day(members=(M2,))).height == 3
    ingest.delete_member(M2)
    assert set(_read(api, **_day())["member"]) == {M1}
    assert _read(api, **_day(members=(M2,))).height == 0
    assert_frame_equal(_read(api, **_day()), _read(plain, **_day()))
    # the announcement names no member
    rows = ingest.execute(f'SELECT * FROM "raw"."{CHANGES}" WHERE time > 0').columns
    assert rows and "member" not in rows and M2 not in str(rows)


@pytest.mark.integration
def test_a_member_never_gets_another_members_cached_rows(stores: tuple[InfluxStore, InfluxStore, InfluxStore]) -> None:
    ingest, api, _ = stores
    now = _now_hour()
    _write_history(ingest, range(now - 5 * H, now - 2 * H, H))
    m1 = _read(api, **_day(members=(M1,)))  # the hours are now cached for M1 only
    assert set(m1["member"]) == {M1} and m1.height == 6
    m2 = _read(api, **_day(members=(M2,)))
    assert set(m2["member"]) == {M2} and m2.height == 3  # neither M1's rows nor an empty answer
    everyone = _read(api, **_day())  # cached for everyone
    assert everyone.height == 9
    assert set(_read(api, **_day(members=(M1,)))["member"]) == {M1}
    assert set(_read(api, **_day(members=(M2,)))["asset"]) == {A3}
    assert _read(api, **_day(members=(M1,), assets=(A3,))).height == 0


@pytest.mark.integration
def test_the_cached_answer_equals_the_uncached_one_over_random_writes(
    stores: tuple[InfluxStore, InfluxStore, InfluxStore],
) -> None:
    ingest, api, plain = stores
    now = _now_hour()
    _write_history(ingest, range(now - 8 * H, now, H))
    rnd = random.Random(20261202)
    queries: list[dict[str, object]] = [
        _day(),
        _day(members=(M1,)),
        _day(members=(M2,)),
        _day(members=(M1, M2)),
        _day(assets=(A2,)),
        _day(asset_classes=("press",)),
        {"start_ns": now - 5 * H + 1, "end_ns": now - 2 * H},
        {"start_ns": now - 3 * H, "end_ns": now + H, "members": (M1,), "asset_classes": ("laser_cutting",)},
    ]
    for _ in range(6):
        member = rnd.choice([M1, M2])
        asset, cls = rnd.choice(OWNED[member])
        hour = now - rnd.randrange(1, 8) * H
        ts = hour + rnd.randrange(3600) * S
        late = Sample(ts=ts, asset=asset, asset_class=cls, signal="power_kw", value=rnd.uniform(100, 200))
        ingest.write(member, [late])
        ingest.refresh_rollups()
        for q in rnd.sample(queries, 4):
            assert_frame_equal(_read(api, **q), _read(plain, **q))
    assert api.rollups.reader.cache.stats.hits > 0


@pytest.mark.integration
def test_the_cache_keeps_at_most_its_rows(influx_server: InfluxServer) -> None:
    db = influx_settings(influx_server).database
    ingest, small = _store(influx_server, db), _store(influx_server, db, rollup_cache_rows=4)
    try:
        now = _now_hour()
        _write_history(ingest, range(now - 5 * H, now - 2 * H, H))  # 3 rows per hour
        assert _read(small, **_day()).height == 9
        stats = small.rollups.reader.cache.stats
        assert 0 < stats.rows <= 4 and stats.evicted >= 2
    finally:
        ingest.close()
        small.close()


@pytest.mark.integration
def test_the_api_registry_counts_cache_hits_and_misses(
    stores: tuple[InfluxStore, InfluxStore, InfluxStore], tmp_path: Path
) -> None:
    ingest, api, _ = stores
    now = _now_hour()
    _write_history(ingest, range(now - 5 * H, now - 2 * H, H))
    settings = ApiSettings(
        tokens_file=tmp_path / "tokens.json", audit_log=tmp_path / "audit.log", cell_key_file=tmp_path / "cell_key"
    )
    registry = create_app(settings, api, Register).state.ctx.metrics.registry

    def hours(result: str) -> float | None:
        return registry.get_sample_value("mdh_rollup_cache_hours_total", {"result": result})

    assert (hours("hit"), hours("miss")) == (0, 0)
    _read(api, **_day())
    misses = hours("miss")
    assert misses is not None and misses >= 3 and hours("hit") == 0
    _read(api, **_day())
    assert hours("hit") == misses and hours("miss") == misses
    assert registry.get_sample_value("mdh_rollup_cache_rows") == 9


# -- the pure cache ---------------------------------------------------------------------------------------------
def _rows(hour: int, *members: str) -> pl.DataFrame:
    data = {c: [None] * len(members) for c in ROLLUP_SCHEMA}
    data.update(member=list(members), asset=[f"a-{m}" for m in members], asset_class=["press"] * len(members))
    data["hour"] = [hour] * len(members)
    frame = pl.DataFrame(data, schema={**ROLLUP_SCHEMA, "hour": pl.Int64()})
    return frame.with_columns(pl.col("hour").cast(pl.Datetime("ns", "UTC")))


@pytest.mark.parametrize(
    ("now", "hours"),
    [
        (10 * H + SETTLE_NS, range(8 * H, 10 * H, H)),  # hour 9 ended exactly SETTLE ago
        (10 * H + SETTLE_NS - 1, range(8 * H, 9 * H, H)),
        (10 * H + 30 * 60 * S, range(8 * H, 10 * H, H)),
    ],
)
def test_settled_hours(now: int, hours: range) -> None:
    lo, hi = settled_range(now, 3 * H)  # hours that start no earlier than 3 h before now
    assert list(range(lo, hi, H)) == list(hours)


@pytest.mark.parametrize(
    ("hours", "now", "expect"),
    [
        ([9 * H], 10 * H - SETTLE_NS - 1, None),  # the open hour, well before its end: no reader holds it
        ([9 * H], 10 * H - SETTLE_NS, (9 * H, 9 * H)),
        ([5 * H, 9 * H, 10 * H], 10 * H, (5 * H, 9 * H)),
    ],
)
def test_announced_hours(hours: list[int], now: int, expect: tuple[int, int] | None) -> None:
    assert announced_hours(hours, now) == expect
    if expect is not None:  # whatever a reader could hold at now or later is announced
        assert settled_range(now + SETTLE_NS, 10**6 * H)[1] <= expect[1] + H


def test_a_fill_that_raced_an_invalidation_is_not_kept() -> None:
    cache = RollupCache(max_rows=100, max_age_ns=10**6 * H)
    token = cache.token()
    cache.invalidate(3 * H, 3 * H)  # a rewrite announced while the fill was reading
    assert not cache.put(pl.concat([_rows(2 * H, M1), _rows(3 * H, M1)]), [2 * H, 3 * H], None, token)
    frame, missing = cache.get([2 * H, 3 * H], None)
    assert missing == [3 * H] and frame is not None and frame.height == 1


def test_member_coverage_is_per_member() -> None:
    cache = RollupCache(max_rows=100, max_age_ns=10**6 * H)
    cache.put(_rows(2 * H, M1), [2 * H], (M1,), cache.token())
    assert cache.get([2 * H], (M2,))[1] == [2 * H]
    assert cache.get([2 * H], None)[1] == [2 * H]
    frame, missing = cache.get([2 * H], (M1,))
    assert not missing and frame is not None and frame["member"].to_list() == [M1]
    cache.put(_rows(2 * H, M1, M2), [2 * H], None, cache.token())
    frame, _ = cache.get([2 * H], (M2,))
    assert frame is not None and frame["member"].to_list() == [M2]
    cache.clear()
    assert cache.get([2 * H], (M1,))[1] == [2 * H] and cache.stats.rows == 0


def test_a_cache_longer_than_the_rollup_retention_fails_naming_the_keys() -> None:
    with pytest.raises(ValidationError, match=r"rollup_cache_days.*rollup_retention_days"):
        StoreSettings(kind="influxdb1", rollup_retention_days=3, rollup_cache_days=7)
    with pytest.raises(ValidationError, match="rollup_cache_rows"):
        StoreSettings(kind="influxdb1", rollup_cache_rows=-1)


def test_the_metrics_say_how_often_the_cache_hits() -> None:
    from prometheus_client import CollectorRegistry

    from storage.influx.rollup_reader import RollupCacheCollector

    cache = RollupCache(max_rows=100, max_age_ns=10**6 * H)
    registry = CollectorRegistry()
    registry.register(RollupCacheCollector(cache))
    cache.put(_rows(2 * H, M1, M2), [2 * H], None, cache.token())
    cache.get([2 * H, 3 * H], None)
    cache.invalidate(2 * H, 2 * H)
    value = registry.get_sample_value
    assert value("mdh_rollup_cache_hours_total", {"result": "hit"}) == 1
    assert value("mdh_rollup_cache_hours_total", {"result": "miss"}) == 1
    assert value("mdh_rollup_cache_dropped_hours_total", {"reason": "changed"}) == 1
    assert value("mdh_rollup_cache_rows") == 0 and value("mdh_rollup_cache_max_rows") == 100
