"""The event mapping: which rule an event matches, the readings it becomes, and what a wrong mapping says."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.configfile import ConfigError, settings_from_dict
from gateway.normalise import Normaliser
from gateway.policy import PolicySettings, compile_policy
from gateway.pseudonymise import MemberKey, Pseudonymiser
from gateway.sources.opcua.events import EventFacts, EventNotifier, EventRule, EventSettings, match, readings
from wire import DOWNTIME_REASONS, MACHINE_STATES, sample_problem

RULES = [
    EventRule(event_type="ToolBreakEventType", min_severity=500, state="down", reason="tooling"),
    EventRule(event_type="MaterialShortageEventType", state="idle", reason="material"),
    EventRule(event_type="OffNormalAlarmType", active=True, min_severity=700, state="down", reason="breakdown"),
    EventRule(event_type="OffNormalAlarmType", active=False, state="running", reason="none"),
    EventRule(min_severity=900, reason="other"),
]
CFG = EventSettings(notifiers=[EventNotifier(asset="Presse-7")], rules=RULES)


def facts(event_type: str, severity: int = 500, active: bool | None = None, source: str | None = None) -> EventFacts:
    return EventFacts(event_type, severity, active, 1_767_000_000_000_000_000, source)


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (facts("ToolBreakEventType", 800), RULES[0]),
        (facts("ToolBreakEventType", 499), None),  # below the rule's severity, and below 900
        (facts("ToolBreakEventType", 950), RULES[0]),  # the first match decides, not the most specific
        (facts("MaterialShortageEventType", 1), RULES[1]),
        (facts("OffNormalAlarmType", 800, active=True), RULES[2]),
        (facts("OffNormalAlarmType", 600, active=True), None),
        (facts("OffNormalAlarmType", 600, active=False), RULES[3]),
        (facts("OffNormalAlarmType", 800, active=None), None),  # a rule on 'active' needs a condition
        (facts("SomeOtherEventType", 901), RULES[4]),
        (facts("SomeOtherEventType", 899), None),
    ],
)
def test_first_matching_rule(event: EventFacts, expected: EventRule | None) -> None:
    assert match(RULES, event) is expected


def test_readings_of_a_matched_event() -> None:
    out = readings(CFG, CFG.notifiers[0], facts("ToolBreakEventType", 800), 5)
    assert isinstance(out, list)
    assert [(r.asset, r.signal, r.value, r.source_ns, r.recv_ns) for r in out] == [
        ("Presse-7", "EventState", "down", 1_767_000_000_000_000_000, 5),
        ("Presse-7", "EventReason", "tooling", 1_767_000_000_000_000_000, 5),
    ]


def test_assets_by_source_name_and_unassigned_events() -> None:
    notifier = EventNotifier(assets_by_source={"Press7": "Presse-7 SN 4711"})
    cfg = EventSettings(notifiers=[notifier], rules=RULES)
    out = readings(cfg, notifier, facts("MaterialShortageEventType", source="Press7"), 1)
    assert isinstance(out, list) and {r.asset for r in out} == {"Presse-7 SN 4711"}
    assert readings(cfg, notifier, facts("MaterialShortageEventType", source="Laser2"), 1) == "unassigned"
    assert readings(cfg, notifier, facts("Unknown", 10), 1) == "unmatched"


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"event_type": "X"}, "needs 'state', 'reason' or both"),
        ({"state": "sleeping"}, "'running', 'idle', 'setup', 'down' or 'off'"),
        ({"reason": "Hr. Maier krank"}, "'none', 'breakdown'"),
        ({"reason": "other", "min_severity": 900, "max_severity": 100}, "must not exceed"),
        ({"reason": "other", "min_severity": 0}, "greater than or equal to 1"),
    ],
)
def test_a_wrong_rule_names_the_key(rule: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings_from_dict(EventSettings, {"notifiers": [{"asset": "A"}], "rules": [rule]}, source="gateway.toml")
    assert message in str(err.value) and "rules" in str(err.value)


def test_a_notifier_needs_an_asset_and_a_namespace_uri() -> None:
    with pytest.raises(ValueError, match="'asset' or 'assets_by_source'"):
        EventNotifier()
    with pytest.raises(ValueError, match="namespace by URI"):
        EventNotifier(node="ns=3;s=Press7", asset="A")


_rules = st.lists(
    st.builds(
        EventRule,
        event_type=st.one_of(st.none(), st.sampled_from(["A", "B", "C"])),
        min_severity=st.integers(1, 500),
        max_severity=st.integers(500, 1000),
        active=st.one_of(st.none(), st.booleans()),
        state=st.sampled_from(MACHINE_STATES),
        reason=st.one_of(st.none(), st.sampled_from(DOWNTIME_REASONS)),
    ),
    min_size=1,
    max_size=6,
)
_facts = st.builds(
    EventFacts,
    event_type=st.sampled_from(["A", "B", "C", "D"]),
    severity=st.integers(1, 1000),
    active=st.one_of(st.none(), st.booleans()),
    time_ns=st.just(1_767_000_000_000_000_000),
    source=st.one_of(st.none(), st.text(max_size=20)),
)


@given(_rules, _facts)
def test_mapped_events_become_valid_wire_samples_only(rules: list[EventRule], event: EventFacts) -> None:
    """Whatever the mapping and the event, what leaves is a valid sample of a catalogue state signal whose
    value is a fixed word; the asset is a pseudonym; the source name never appears."""
    cfg = EventSettings(notifiers=[EventNotifier(asset="Presse-7")], rules=rules)
    policy = compile_policy(
        PolicySettings.model_validate(
            {"signals": {"EventState": {"canonical": "state"}, "EventReason": {"canonical": "downtime_reason"}}}
        )
    )
    n = Normaliser(policy, Pseudonymiser(MemberKey("k-test", b"k" * 32)))
    out = readings(cfg, cfg.notifiers[0], event, 1_767_000_000_000_000_000)
    rule = match(rules, event)
    assert (rule is None) == (out == "unmatched")
    for r in out if isinstance(out, list) else []:
        s = n.normalise(r)
        assert not isinstance(s, str), s
        assert sample_problem(s) is None
        assert s.asset.startswith("a-") and "Presse" not in s.asset
        assert s.value in (MACHINE_STATES if s.signal == "state" else DOWNTIME_REASONS)
