"""The normalise step (pure): policy rules, drops and their reasons, timestamps, the heartbeat's records and
watermarks, the short path for plain numbers against the general one, and what no rule lets through."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gateway.normalise import Normaliser, Reading, quality_of
from gateway.policy import PolicySettings, compile_policy
from gateway.pseudonymise import Pseudonymiser, pseudonym
from wire import Quality, Sample, decode_batch, encode_batch, sample_problem
from wire.model import SCHEMA_VERSION, Batch

from .test_core import KEY, NOW

POLICY = PolicySettings(
    asset_classes={"DMU 50": "cnc_milling"},
    min_quality="uncertain",
    signals={
        "P": {"canonical": "power_kw", "unit": "W", "round": 2},
        "T": {"canonical": "temperature_c", "unit": "K", "clip": (0.0, 100.0), "bin": 0.5},
        "E": {"canonical": "energy_kwh", "unit": "Wh"},
        "N": {"canonical": "parts_total", "coarsen_s": 60},
        "S": {"canonical": "state", "states": {"1": "running", "0": "off", "true": "running"}},
        "operator_badge": {"canonical": "state", "personal": True},
    },
)


def _n() -> Normaliser:
    return Normaliser(compile_policy(POLICY), Pseudonymiser(KEY), asset_classes={"m1": "cnc_milling"})


@pytest.mark.parametrize(
    ("signal", "value", "status", "expected"),
    [
        ("P", 1234.5678, 0, ("power_kw", 1.23, Quality.GOOD)),
        ("P", 1500, 0x40000000, ("power_kw", 1.5, Quality.UNCERTAIN)),
        ("P", 1500, 0x80000000, "quality"),
        ("P", None, 0, "no_value"),
        ("P", "12.5 kW", 0, "type"),
        ("P", "2500", 0, ("power_kw", 2.5, Quality.GOOD)),
        ("P", True, 0, "type"),
        ("P", float("nan"), 0, "invalid"),
        ("T", float("nan"), 0, "invalid"),  # a bin of NaN raised out of the normaliser
        ("T", float("inf"), 0, "invalid"),  # clipped to 100 °C and sent as good
        ("T", float("-inf"), 0, "invalid"),
        ("T", "inf", 0, "invalid"),
        ("P", "nan", 0, "invalid"),
        ("N", 2**64, 0, "invalid"),  # an integer MessagePack cannot carry stopped the gateway's buffer at sealing
        ("N", 1e30, 0, "invalid"),  # the same, made an integer by the counter's rule
        ("T", 300.0, 0, ("temperature_c", 26.5, Quality.GOOD)),  # 26.85 °C binned to 0.5
        ("T", 1000.0, 0, ("temperature_c", 100.0, Quality.GOOD)),  # clipped
        ("E", 12_000, 0, ("energy_kwh", 12.0, Quality.GOOD)),
        ("N", 17.0, 0, ("parts_total", 17, Quality.GOOD)),
        ("N", -1, 0, "invalid"),
        ("S", 1, 0, ("state", "running", Quality.GOOD)),
        ("S", True, 0, ("state", "running", Quality.GOOD)),
        ("S", 7, 0, "state_unmapped"),
        ("X", 1.0, 0, "not_allowed"),
        ("operator_name", "Hans Muster", 0, "personal"),
        ("operator_badge", "4711", 0, "contract"),  # pseudonymised, but no catalogue signal holds a person
    ],
)
def test_normalise_table(signal: str, value: object, status: int, expected: object) -> None:
    n = _n()
    result = n.normalise(Reading("m1", signal, value, NOW + 123, status=status))
    if isinstance(expected, str):
        assert result == expected
        assert n.dropped[expected] == 1
        return
    assert isinstance(result, Sample)
    canonical, v, q = expected  # type: ignore[misc]
    assert (result.signal, result.value, result.quality) == (canonical, v, q)
    assert type(result.value) is type(v)
    assert result.asset == pseudonym(KEY, "a", "m1") and result.asset_class == "cnc_milling"
    assert sample_problem(result) is None


def test_timestamps_source_first_then_receive_time_and_coarsening() -> None:
    n = _n()
    s = n.normalise(Reading("m1", "P", 1.0, recv_ns=NOW + 5, source_ns=NOW - 10**9))
    assert isinstance(s, Sample) and s.ts == NOW - 10**9
    s = n.normalise(Reading("m1", "P", 1.0, recv_ns=NOW + 5))
    assert isinstance(s, Sample) and s.ts == NOW + 5
    s = n.normalise(Reading("m1", "N", 3, recv_ns=NOW + 59 * 10**9 + 7))
    assert isinstance(s, Sample) and s.ts % (60 * 10**9) == 0
    assert n.normalise(Reading("m1", "P", 1.0, recv_ns=5)) == "invalid"


def test_a_reading_stamped_beyond_the_allowance_is_dropped_and_leaves_its_series_open() -> None:
    """A machine clock set a day ahead: its reading is dropped as ``future`` and reported, and it does not become its
    series' newest mark. As the mark it had every later reading stamped right dropped as replayed until that day came
    (the marks are kept across restarts), and the hub would have refused the whole batch holding it."""
    n = _n()
    ahead: list[int] = []
    n.on_future = ahead.append
    limit = 600 * 10**9  # the default allowance, policy.max_ahead_s
    assert n.normalise(Reading("m1", "P", 1000, recv_ns=NOW, source_ns=NOW + 86_400 * 10**9)) == "future"
    assert n.normalise(Reading("m1", "P", 1000, recv_ns=NOW, source_ns=NOW + limit + 1)) == "future"
    assert ahead == [86_400 * 10**9, limit + 1] and n.dropped == {"future": 2} and n.accepted == 0
    assert n.watermarks.take_dirty() == {}
    right = n.normalise(Reading("m1", "P", 2000, recv_ns=NOW + 10**9, source_ns=NOW))
    at_limit = n.normalise(Reading("m1", "P", 3000, recv_ns=NOW + 10**9, source_ns=NOW + 10**9 + limit))
    assert isinstance(right, Sample) and isinstance(at_limit, Sample) and ahead == [86_400 * 10**9, limit + 1]
    batch = Batch(SCHEMA_VERSION, "b" * 16, "m-0a1b2c", "g-0123456789abcdef", "k1", NOW, [right, at_limit])
    assert decode_batch(encode_batch(batch), latest_ns=NOW + 10**9 + limit).samples == [right, at_limit]
    # the allowance is the policy's
    strict = Normaliser(compile_policy(POLICY.model_copy(update={"max_ahead_s": 5.0})), Pseudonymiser(KEY))
    assert strict.normalise(Reading("m1", "P", 1000, recv_ns=NOW, source_ns=NOW + 6 * 10**9)) == "future"
    assert isinstance(strict.normalise(Reading("m1", "P", 1000, recv_ns=NOW, source_ns=NOW + 5 * 10**9)), Sample)


@pytest.mark.parametrize("value", [0, -1, 8 * 86_400, "soon"])
def test_an_allowance_that_is_no_positive_number_of_seconds_up_to_a_week_is_refused(value: object) -> None:
    with pytest.raises(ValidationError, match="max_ahead_s"):
        PolicySettings.model_validate({"max_ahead_s": value})


def test_quality_of_status_codes() -> None:
    assert quality_of(0) == Quality.GOOD
    assert quality_of(0x40920000) == Quality.UNCERTAIN
    assert quality_of(0x80340000) == Quality.BAD
    assert quality_of(0xC0000000) == Quality.BAD


def test_heartbeat_repeats_stale_values_only() -> None:
    n = _n()
    n.normalise(Reading("m1", "S", 1, recv_ns=NOW))
    n.normalise(Reading("m1", "P", 1000, recv_ns=NOW + 50 * 10**9))
    repeated = n.repeat_stale(NOW + 60 * 10**9, 55 * 10**9)
    assert [(s.signal, s.value, s.ts) for s in repeated] == [("state", "running", NOW + 60 * 10**9)]
    assert n.repeat_stale(NOW + 61 * 10**9, 55 * 10**9) == []


@settings(max_examples=200)
@given(
    asset=st.text(min_size=1, max_size=40),
    signal=st.sampled_from(["P", "T", "E", "N", "S", "X", "operator_name"]),
    value=st.one_of(st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.floats(), st.text(max_size=70)),
    status=st.sampled_from([0, 0x40000000, 0x80000000]),
    ts=st.integers(0, 5 * 10**18),
)
def test_normalise_yields_valid_samples_or_counted_drops(
    asset: str, signal: str, value: object, status: int, ts: int
) -> None:
    n = _n()
    result = n.normalise(Reading(asset, signal, value, ts, status=status))
    if isinstance(result, str):
        assert n.dropped[result] == 1 and n.accepted == 0
        return
    assert sample_problem(result) is None
    assert n.accepted == 1
    assert result.asset == pseudonym(KEY, "a", asset)
    if isinstance(result.value, str):  # only mapped machine states leave as text
        assert result.value in ("running", "off")
    if isinstance(result.value, float):
        assert math.isfinite(result.value)


def test_replayed_values_are_dropped_and_heartbeats_do_not_advance_the_mark() -> None:
    n = _n()
    assert isinstance(n.normalise(Reading("m1", "P", 1000, recv_ns=NOW, source_ns=NOW)), Sample)
    # the same value delivered again after a reconnect (same source timestamp)
    assert n.normalise(Reading("m1", "P", 1000, recv_ns=NOW + 5, source_ns=NOW)) == "replayed"
    assert n.watermarks.take_dirty() == {(pseudonym(KEY, "a", "m1"), "power_kw"): NOW}
    assert len(n.repeat_stale(NOW + 120 * 10**9, 55 * 10**9)) == 1
    # a change stamped by a machine clock behind the gateway's heartbeat still goes out
    s = n.normalise(Reading("m1", "P", 2000, recv_ns=NOW + 121 * 10**9, source_ns=NOW + 60 * 10**9))
    assert isinstance(s, Sample) and s.value == 2.0


def test_heartbeat_repeats_as_good_only_what_the_source_confirmed() -> None:
    n = _n()
    n.require_confirmation = True  # as an OPC UA source sets it: its reads confirm unchanged values
    n.normalise(Reading("m1", "S", 1, recv_ns=NOW))
    n.normalise(Reading("m1", "P", 1000, recv_ns=NOW))
    later = NOW + 120 * 10**9
    # nothing confirmed since the delivery two minutes ago (a stalled subscription): nothing is repeated
    assert n.repeat_stale(later, 55 * 10**9, confirmed_since_ns=later - 60 * 10**9) == []
    n.confirm("m1", "S", later - 10**9)  # an audit read found the state unchanged
    repeated = n.repeat_stale(later, 55 * 10**9, confirmed_since_ns=later - 60 * 10**9)
    assert [(s.signal, s.value, s.ts, s.quality) for s in repeated] == [("state", "running", later, Quality.GOOD)]
    n.confirm("m1", "unknown signal", later)  # never seen: ignored


def test_first_value_after_a_restart_is_kept_for_the_heartbeat_though_replayed() -> None:
    n = _n()
    n.watermarks.ts[(pseudonym(KEY, "a", "m1"), "parts_total")] = NOW  # loaded from the disk buffer
    assert n.normalise(Reading("m1", "N", 7, recv_ns=NOW + 10**12, source_ns=NOW)) == "replayed"
    repeated = n.repeat_stale(NOW + 10**12, 55 * 10**9)
    assert [(s.signal, s.value) for s in repeated] == [("parts_total", 7)]
    assert n.watermarks.take_dirty() == {}  # a repeat never advances the mark


class _GeneralOnly(Normaliser):
    """A normaliser that takes every value the general way (the one that converts and transforms numbers)."""

    def _prepare(self, asset: str, local: str):  # type: ignore[no-untyped-def]
        prepared = super()._prepare(asset, local)
        if isinstance(prepared, str):
            return prepared
        self._prepared[(asset, local)] = prepared = (*prepared[:4], False)
        return prepared


#: Plain rules of each kind (gauge, counter, integral counter) beside the transforming ones of POLICY.
PLAIN_POLICY = PolicySettings(
    min_quality="uncertain",
    signals={
        "P": {"canonical": "power_kw"},
        "E": {"canonical": "energy_kwh"},
        "N": {"canonical": "parts_total"},
        "T": {"canonical": "temperature_c", "unit": "K"},
        "S": {"canonical": "state", "states": {"1": "running", "0": "off"}},
    },
)


@settings(max_examples=300, deadline=None)
@given(
    policy=st.sampled_from([POLICY, PLAIN_POLICY]),
    readings=st.lists(
        st.tuples(
            st.sampled_from(["m1", "m2"]),
            st.sampled_from(["P", "T", "E", "N", "S", "X"]),
            st.one_of(
                st.none(),
                st.booleans(),
                st.integers(-(10**20), 10**20),
                st.floats(),
                st.sampled_from([-0.0, 3.0, -2.0, 1e300, 2.0**53]),
                st.text(max_size=8),
            ),
            st.sampled_from([0, 0x40000000, 0x80000000, 0x00000480]),
            st.one_of(st.none(), st.integers(NOW - 10**12, NOW + 10**12), st.integers(0, 5 * 10**18)),
        ),
        max_size=30,
    ),
)
def test_the_hot_path_for_plain_numbers_agrees_with_the_general_one(
    policy: PolicySettings, readings: list[tuple[str, str, object, int, int | None]]
) -> None:
    fast = Normaliser(compile_policy(policy), Pseudonymiser(KEY))
    general = _GeneralOnly(compile_policy(policy), Pseudonymiser(KEY))
    for i, (asset, signal, value, status, source_ns) in enumerate(readings):
        got = fast.normalise_value(asset, signal, value, status, source_ns, NOW + i)
        want = general.normalise_value(asset, signal, value, status, source_ns, NOW + i)
        assert got == want
        if isinstance(got, Sample):
            assert type(got.value) is type(want.value)  # type: ignore[union-attr]
    assert fast.dropped == general.dropped and fast.accepted == general.accepted
    assert fast.watermarks.ts == general.watermarks.ts and fast.watermarks.dirty == general.watermarks.dirty


@pytest.mark.parametrize("policy", [POLICY, PLAIN_POLICY], ids=["transforming", "plain"])
@pytest.mark.parametrize("local", ["P", "T", "E", "N"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), "nan", "inf", "-inf", "NaN", "1e999"])
def test_a_value_that_is_no_finite_number_is_dropped_as_invalid_by_every_rule(
    policy: PolicySettings, local: str, value: object
) -> None:
    """A sensor's NaN or overflow, as a number or as text (an MQTT source), never becomes a sample: as one, it made the
    hub refuse the whole batch it was in; through a bin it raised out of the normaliser; through a clip it left as
    the clip's bound, marked good."""
    n = Normaliser(compile_policy(policy), Pseudonymiser(KEY))
    assert n.normalise_value("m1", local, value, 0, NOW, NOW + 1) == "invalid"
    assert n.dropped == {"invalid": 1} and n.accepted == 0


@settings(max_examples=300)
@given(
    policy=st.sampled_from([POLICY, PLAIN_POLICY]),
    signal=st.sampled_from(["P", "T", "E", "N", "S"]),
    value=st.one_of(
        st.floats(),
        st.sampled_from(["nan", "inf", "-inf", "1e999", "-0", "2500", float("nan"), float("inf"), 1e308, -1e308]),
        st.integers(-(10**30), 10**30),
        st.sampled_from([2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 1e19, 1.8446744073709552e19, "1e25"]),
        st.text(max_size=12),
    ),
)
def test_any_value_under_any_rule_is_a_valid_sample_or_a_counted_drop(
    policy: PolicySettings, signal: str, value: object
) -> None:
    n = Normaliser(compile_policy(policy), Pseudonymiser(KEY))
    result = n.normalise_value("m1", signal, value, 0, NOW, NOW + 1)  # never raises
    if isinstance(result, str):
        assert n.dropped == {result: 1}
    else:
        assert sample_problem(result) is None and n.accepted == 1
        batch = Batch(SCHEMA_VERSION, "b" * 16, "m-0a1b2c", "g-0123456789abcdef", "k1", NOW, [result])
        assert decode_batch(encode_batch(batch)).samples == [result]  # it can be sealed, and the hub takes it
