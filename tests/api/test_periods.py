"""Period arithmetic of the benchmark cells: the plain-Python end of a period equals polars' ``period_end``
(the expression the KPI tables use) for every period and any time, naive (UTC) or with an offset."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from api.core.cells import end_of, period_starts
from api.core.kpis import PERIODS, Period, period_end

times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 1))
offsets = st.one_of(
    st.none(), st.just(UTC), st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
)


def polars_end(start: datetime, period: Period) -> datetime:
    value = pl.select(period_end(pl.lit(start).cast(pl.Datetime("ns", "UTC")), period)).item()
    assert isinstance(value, datetime)
    return value


@settings(max_examples=400, deadline=None)
@given(t=times, tz=offsets, period=st.sampled_from(PERIODS))
def test_end_of_equals_polars_period_end(t: datetime, tz: timezone | None, period: Period) -> None:
    start = t.replace(tzinfo=tz)
    ours, theirs = end_of(start, period), polars_end(start, period)
    assert ours == theirs and ours.utcoffset() == timedelta(0), (start, period, ours, theirs)


def test_month_ends_are_clamped_and_cross_the_year() -> None:
    table = [
        (datetime(2026, 1, 31, 12, tzinfo=UTC), datetime(2026, 2, 28, 12, tzinfo=UTC)),
        (datetime(2028, 1, 31, tzinfo=UTC), datetime(2028, 2, 29, tzinfo=UTC)),
        (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        (datetime(2026, 3, 1), datetime(2026, 4, 1, tzinfo=UTC)),  # naive: UTC
    ]
    for start, end in table:
        assert end_of(start, "month") == end == polars_end(start, "month")


@settings(max_examples=100, deadline=None)
@given(t=times, period=st.sampled_from(PERIODS), n=st.integers(1, 40))
def test_each_period_ends_where_the_next_starts(t: datetime, period: Period, n: int) -> None:
    start = t.replace(tzinfo=UTC)
    starts = period_starts(start, start + timedelta(days=n), period)
    assert [end_of(s, period) for s in starts[:-1]] == starts[1:]
