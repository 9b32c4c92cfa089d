"""A notification normalised as a whole (gateway.normalise_batch) gives what normalise_value gives change by change.

The reference is the OPC UA source's loop as it was: for every change of a bound handle, freshness, then the
overflow bits, then ``normalise_value``. Both run side by side over generated notifications, with the policy
reloaded, an asset classified and handles bound anew in between; samples, drops, counters, watermarks, the
heartbeat's records and the freshness items must be equal after every notification.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.normalise import Normaliser
from gateway.normalise_batch import HandleRoutes, normalise_changes
from gateway.policy import compile_policy
from gateway.pseudonymise import Pseudonymiser
from gateway.sources.opcua.freshness import Freshness
from gateway.sources.opcua.source import OVERFLOW_BITS
from wire import Sample

from .test_core import KEY, NOW
from .test_normalise import PLAIN_POLICY, POLICY


@dataclass(slots=True)
class _Bound:
    asset: str
    signal: str


def _adjust(counted: list[int]) -> Any:
    def adjust(status: int) -> int:
        if status & OVERFLOW_BITS == OVERFLOW_BITS:
            counted.append(status)
            return status & ~0xFFFF
        return status

    return adjust


class _Side:
    """One way of normalising, with everything it changes."""

    def __init__(self, policy: Any) -> None:
        self.normaliser = Normaliser(compile_policy(policy), Pseudonymiser(KEY))
        self.freshness = Freshness()
        self.overflows: list[int] = []
        self.samples: list[Sample] = []
        self.bound = 0

    def state(self) -> tuple[Any, ...]:
        n = self.normaliser
        series = {k: (s.last, s.rule, s.confirmed_ns, s.lag_ns) for k, s in n._series.items()}
        return (
            self.samples,
            [type(s.value) for s in self.samples],
            self.bound,
            n.accepted,
            dict(n.dropped),
            n.watermarks.ts,
            n.watermarks.dirty,
            series,
            self.freshness._items,
            self.overflows,
        )


def _one_by_one(side: _Side, bindings: dict[int, _Bound], changes: list[Any], recv_ns: int) -> None:
    adjust = _adjust(side.overflows)
    for handle, value, status, source_ns, _server_ns in changes:
        b = bindings.get(handle)
        if b is None:
            continue
        side.bound += 1
        side.freshness.arrived(handle, source_ns)
        s = side.normaliser.normalise_value(b.asset, b.signal, value, adjust(status), source_ns, recv_ns)
        if not isinstance(s, str):
            side.samples.append(s)


#: Mostly what a machine sends (finite numbers, good, newer than before), so that series reach the inline path
#: again and again; and everything else the contract must refuse or treat apart.
values = st.one_of(
    st.floats(-1e6, 1e6),
    st.integers(-5, 10**6),
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**20), 10**20),
        st.floats(),
        st.sampled_from([-0.0, 3.0, -2.0, 1e300, 2.0**53, 7, -1, 0.125, 2.675, 1e30]),
        st.sampled_from([2**64, 2**64 - 1, -(2**63), -(2**63) - 1, 10**20]),  # the wire's integer range
        st.text(max_size=8),
        st.sampled_from(["1", "0", "true"]),
    ),
)
statuses = st.one_of(
    st.just(0), st.sampled_from([0, 0x40000000, 0x80000000, OVERFLOW_BITS, 0x40000000 | OVERFLOW_BITS])
)
times = st.one_of(
    st.integers(NOW, NOW + 10**12),
    st.one_of(st.none(), st.integers(NOW - 10**12, NOW), st.sampled_from([NOW, NOW + 1, 0, 5 * 10**18])),
)
changes = st.lists(st.tuples(st.integers(0, 7), values, statuses, times, st.none()), max_size=25)  # 0, 7: unbound
steps = st.lists(
    st.one_of(
        st.tuples(st.just("changes"), changes),
        st.tuples(st.just("policy"), st.sampled_from([POLICY, PLAIN_POLICY])),
        st.tuples(st.just("classify"), st.sampled_from(["m1", "DMU 50"])),
        st.tuples(
            st.just("bind"),
            st.tuples(st.integers(1, 6), st.sampled_from(["m1", "m2", "DMU 50"]), st.sampled_from(["P", "E", "S"])),
        ),
    ),
    max_size=12,
)
LOCALS = ["P", "T", "E", "N", "S", "X"]


@settings(max_examples=300, deadline=None)
@given(policy=st.sampled_from([POLICY, PLAIN_POLICY]), steps=steps)
def test_a_notification_as_a_whole_normalises_as_change_by_change(policy: Any, steps: list[Any]) -> None:
    reference, batch = _Side(policy), _Side(policy)
    routes = HandleRoutes()
    bindings = {h: _Bound(["m1", "m2"][h % 2], LOCALS[h - 1]) for h in range(1, 7)}
    for i, (kind, arg) in enumerate(steps):
        recv_ns = NOW + i * 10**6
        if kind == "changes":
            _one_by_one(reference, bindings, arg, recv_ns)
            batch.freshness.arrived_all(bindings, arg)
            n, out = normalise_changes(batch.normaliser, routes, bindings, arg, recv_ns, _adjust(batch.overflows))
            batch.bound += n
            batch.samples += out
        elif kind == "policy":
            for side in (reference, batch):
                side.normaliser.set_policy(compile_policy(arg), {"DMU 50": "cnc_milling"})
        elif kind == "classify":
            for side in (reference, batch):
                side.normaliser.classify(arg, "laser_cutting")
        else:
            handle, asset, local = arg
            bindings[handle] = _Bound(asset, local)  # a new binding object for the handle
        assert batch.state() == reference.state()


def test_plain_good_numbers_take_the_inline_path() -> None:
    """The common change never calls normalise_value: a hot path that silently fell back would pass the test
    above and cost the whole gain."""
    normaliser = Normaliser(compile_policy(PLAIN_POLICY), Pseudonymiser(KEY))
    calls: list[tuple[Any, ...]] = []
    general = normaliser.normalise_value

    def counted(*args: Any) -> Sample | str:
        calls.append(args)
        return general(*args)

    normaliser.normalise_value = counted  # type: ignore[method-assign]
    bindings = {1: _Bound("m1", "P"), 2: _Bound("m1", "E"), 3: _Bound("m2", "N"), 4: _Bound("m1", "S")}
    routes = HandleRoutes()
    notification = [(1, 1.5, 0, NOW, None), (2, 10, 0, NOW, None), (3, 4.0, 0, None, None), (9, 1.0, 0, NOW, None)]
    n, out = normalise_changes(normaliser, routes, bindings, notification, NOW + 5, _adjust([]))
    assert n == 3 and [s.value for s in out] == [1.5, 10, 4.0] and calls == []
    # a state, a bad status and a replayed value take the general way, and it decides as it always did
    later = [(4, "1", 0, NOW + 1, None), (1, 2.0, 0x80000000, NOW + 1, None), (2, 11, 0, NOW, None)]
    n, out = normalise_changes(normaliser, routes, bindings, later, NOW + 6, _adjust([]))
    assert n == 3 and [s.value for s in out] == ["running"] and len(calls) == 3
    assert normaliser.dropped["replayed"] == 1 and normaliser.accepted == 4


@pytest.mark.parametrize(
    ("local", "value", "status", "source_ns"),
    [
        ("P", 2**64, 0, NOW),  # beyond the wire's integers
        ("P", 2**64 - 1, 0, NOW),  # the largest it carries
        ("P", -(2**63) - 1, 0, NOW),
        ("N", 1e30, 0, NOW),  # made an integer by the counter's rule, then beyond the wire's integers
        ("N", 17.0, 0, NOW),
        ("N", -1, 0, NOW),  # a negative counter
        ("P", float("nan"), 0, NOW),
        ("P", float("-inf"), 0, NOW),
        ("P", 1.5, 0, 5),  # a timestamp outside 2000..2100
        ("P", 1.5, 0, None),  # no source timestamp: the receive time
        ("P", 1.5, 0, NOW + 600 * 10**9),  # at the allowance ahead of the gateway's clock (the default)
        ("P", 1.5, 0, NOW + 600 * 10**9 + 2),  # beyond it: dropped as future (the replay is one ns later, too)
        ("P", 1.5, OVERFLOW_BITS, NOW),  # good after the overflow bits are cleared
        ("P", True, 0, NOW),
    ],
)
def test_edge_values_take_the_same_decisions_both_ways(local: str, value: Any, status: int, source_ns: Any) -> None:
    reference, batch = _Side(PLAIN_POLICY), _Side(PLAIN_POLICY)
    bindings = {1: _Bound("m1", local)}
    routes = HandleRoutes()
    for i, ts in enumerate((source_ns, source_ns)):  # the second time a replay of the first
        change = [(1, value, status, ts, None)]
        _one_by_one(reference, bindings, change, NOW + i)
        batch.freshness.arrived_all(bindings, change)
        n, out = normalise_changes(batch.normaliser, routes, bindings, change, NOW + i, _adjust(batch.overflows))
        batch.bound += n
        batch.samples += out
        assert batch.state() == reference.state()
