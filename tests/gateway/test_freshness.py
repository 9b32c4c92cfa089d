"""The audit's verdicts (pure): which items are read, which are fresh by delivery, which stalled."""

from __future__ import annotations

from gateway.sources.opcua.freshness import Freshness


def test_an_item_that_delivered_since_the_last_audit_is_not_read() -> None:
    f = Freshness()
    f.arrived(1, 100)
    assert f.delivered(1)  # fresh by the subscription's word: no read
    assert not f.delivered(1)  # nothing new since: read it at the next audit
    assert f.audit(1, 100) == "fresh"


def test_an_item_that_never_delivered_is_read() -> None:
    f = Freshness()
    assert not f.delivered(7)
    assert f.audit(7, 100) == "pending"


def test_a_stall_right_after_a_delivery_is_found_one_audit_later() -> None:
    f = Freshness()
    f.arrived(1, 100)
    assert f.delivered(1)  # audit 1: delivered, skipped
    # the item stalls; the server moves on to 200
    assert not f.delivered(1)
    assert f.audit(1, 200) == "pending"  # audit 2
    assert not f.delivered(1)
    assert f.audit(1, 200) == "stalled"  # audit 3


def test_a_pending_value_is_settled_by_its_delivery_or_read_again() -> None:
    f = Freshness()
    f.arrived(1, 100)
    assert f.delivered(1)
    assert f.audit(1, 300) == "pending"  # the server has 300, the notification is on its way
    f.arrived(1, 200)  # a delivery, but older than the pending value
    assert not f.delivered(1)  # still owes 300: read
    assert f.audit(1, 300) == "stalled"
    f.forget(1)
    f.arrived(1, 300)
    assert f.delivered(1)


def test_a_pending_value_that_arrives_makes_the_item_fresh_without_a_read() -> None:
    f = Freshness()
    assert f.audit(1, 300) == "pending"
    f.arrived(1, 300)
    assert f.delivered(1)
    assert not f.delivered(1)
    assert f.audit(1, 300) == "fresh"  # the pending mark was cleared, so no stall is called


def test_an_older_or_missing_timestamp_is_not_a_delivery() -> None:
    f = Freshness()
    f.arrived(1, 100)
    assert f.delivered(1)
    f.arrived(1, 90)
    f.arrived(1, None)
    assert not f.delivered(1)
