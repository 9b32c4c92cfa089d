"""The member quota (pure): distinct assets and gateways per member, refused whole beyond the limit."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from storage.quota import MemberQuota


def test_a_batch_that_would_pass_a_limit_is_refused_whole_and_known_ones_are_taken() -> None:
    q = MemberQuota(max_assets=3, max_gateways=2)
    assert q.admit("m-a", "g-1", {"a-1", "a-2"}) is None
    over = q.admit("m-a", "g-1", {"a-2", "a-3", "a-4"})  # would make four
    assert over is not None and "more than 3 distinct assets" in over and "adds 2 to the 2 known" in over
    assert q.counts("m-a") == (2, 1)  # nothing of the refused batch was recorded
    assert q.admit("m-a", "g-1", {"a-1", "a-3"}) is None  # a third asset fits
    assert q.admit("m-a", "g-2", {"a-1"}) is None
    over = q.admit("m-a", "g-3", {"a-1"})
    assert over is not None and "more than 2 gateways" in over
    assert q.admit("m-a", "g-3") is not None  # a status message of a third gateway, too
    assert q.admit("m-a", "g-2") is None and q.counts("m-a") == (3, 2)
    # every member has its own count
    assert q.admit("m-b", "g-9", {"a-1", "a-5", "a-6"}) is None and q.counts("m-b") == (3, 1)
    q.forget(lambda m: m != "m-a")
    assert q.counts("m-a") == (0, 0) and q.counts("m-b") == (3, 1)
    assert q.admit("m-a", "g-4", {"a-7", "a-8", "a-9"}) is None  # counted anew after a suspension


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 5),
    st.integers(1, 3),
    st.lists(
        st.tuples(st.sampled_from(["m-a", "m-b"]), st.integers(0, 5), st.frozensets(st.integers(0, 9), max_size=4))
    ),
)
def test_the_counts_never_pass_the_limits_and_every_admitted_message_fits(
    max_assets: int, max_gateways: int, messages: list[tuple[str, int, frozenset[int]]]
) -> None:
    q = MemberQuota(max_assets=max_assets, max_gateways=max_gateways)
    seen: dict[str, tuple[set[str], set[str]]] = {}
    for member, gateway, assets in messages:
        names = {f"a-{a}" for a in assets}
        known_assets, known_gateways = seen.setdefault(member, (set(), set()))
        fits = len(known_assets | names) <= max_assets and len(known_gateways | {f"g-{gateway}"}) <= max_gateways
        assert (q.admit(member, f"g-{gateway}", names) is None) == fits
        if fits:
            known_assets |= names
            known_gateways.add(f"g-{gateway}")
        assert q.counts(member) == (len(known_assets), len(known_gateways))
