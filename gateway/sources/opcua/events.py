"""OPC UA events and alarms -> machine states and downtime reasons, by a configured mapping. Pure.

An OPC UA server reports why a machine stopped as events (a tool break, a material shortage) and as
alarm conditions that become active and inactive again. The gateway subscribes to the events of the
configured notifiers (by default the Server object) with a select clause of only what the mapping
needs: the event type, severity, time, source name and, for conditions, ``ActiveState/Id``. The
message text, the user ids of audit events and any other field are never requested, so they never
enter the gateway, let alone leave it.

The first matching rule decides (``[[opcua.events.rules]]``, in order)::

    [[opcua.events.rules]]
    event_type = "ToolBreakEventType"   # browse name of the event type; unset: any type
    min_severity = 500                   # 1..1000, inclusive
    active = true                        # conditions only: ActiveState/Id; unset: any event
    state = "down"                       # machine state to send (signal state_signal)
    reason = "tooling"                   # downtime reason to send (signal reason_signal)

A matching event becomes readings of the local signals ``state_signal`` / ``reason_signal`` of the
event's asset, which go through the policy like every other reading (allow-list, pseudonymised asset).
The asset is the notifier's ``asset``, or looked up by the event's ``SourceName`` in
``assets_by_source``. An event that matches no rule, or whose asset is unknown, is counted and dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from wire.catalog import DOWNTIME_REASONS, MACHINE_STATES

from ...normalise import Reading

#: The Server object: every event of the server is reported through it.
SERVER_OBJECT = "ns=0;i=2253"

#: Why an event did not become readings (counter labels).
EVENT_DROP_REASONS = ("unmatched", "unassigned")

MachineState = Literal[MACHINE_STATES]  # type: ignore[valid-type]
DowntimeReason = Literal[DOWNTIME_REASONS]  # type: ignore[valid-type]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EventRule(_Section):
    event_type: str | None = Field(default=None, description="Browse name of the event type; unset: any")
    min_severity: int = Field(default=1, ge=1, le=1000)
    max_severity: int = Field(default=1000, ge=1, le=1000)
    active: bool | None = Field(default=None, description="Conditions: their ActiveState; unset: any event")
    state: MachineState | None = None
    reason: DowntimeReason | None = None

    @model_validator(mode="after")
    def _effect(self) -> EventRule:
        if self.state is None and self.reason is None:
            raise ValueError("a rule needs 'state', 'reason' or both")
        if self.min_severity > self.max_severity:
            raise ValueError("min_severity must not exceed max_severity")
        return self


class EventNotifier(_Section):
    node: str = Field(default=SERVER_OBJECT, description="Notifier node (nsu=...;s=... or the Server object)")
    asset: str | None = Field(default=None, description="Clear asset id of every event of this notifier")
    assets_by_source: dict[str, str] = Field(
        default_factory=dict, description="SourceName of an event -> clear asset id (for the Server object)"
    )

    @model_validator(mode="after")
    def _asset(self) -> EventNotifier:
        if self.asset is None and not self.assets_by_source:
            raise ValueError("give 'asset' or 'assets_by_source': events must belong to an asset")
        if not self.node.startswith(("nsu=", "ns=0;")):
            raise ValueError("notifier node ids must name their namespace by URI ('nsu=URI;s=...')")
        return self


class EventSettings(_Section):
    notifiers: list[EventNotifier] = Field(min_length=1)
    rules: list[EventRule] = Field(min_length=1)
    state_signal: str = Field(default="EventState", description="Local signal of the mapped machine state")
    reason_signal: str = Field(default="EventReason", description="Local signal of the mapped downtime reason")
    queue_size: int = Field(default=1000, ge=1, le=100_000, description="Events the server queues per notifier")
    publishing_interval_ms: float = Field(default=250, gt=0, description="Publishing interval of the events")


@dataclass(frozen=True, slots=True)
class EventFacts:
    """What the gateway selects of one event. ``source`` (the SourceName) stays in the gateway."""

    event_type: str
    severity: int
    active: bool | None
    time_ns: int | None
    source: str | None


def match(rules: list[EventRule], facts: EventFacts) -> EventRule | None:
    """The first rule that ``facts`` satisfies, or ``None``."""
    for r in rules:
        if r.event_type is not None and r.event_type != facts.event_type:
            continue
        if not r.min_severity <= facts.severity <= r.max_severity:
            continue
        if r.active is not None and facts.active is not r.active:
            continue
        return r
    return None


def asset_of(notifier: EventNotifier, facts: EventFacts) -> str | None:
    if facts.source is not None and facts.source in notifier.assets_by_source:
        return notifier.assets_by_source[facts.source]
    return notifier.asset


def readings(cfg: EventSettings, notifier: EventNotifier, facts: EventFacts, recv_ns: int) -> list[Reading] | str:
    """The readings one event becomes, or why it became none (one of :data:`EVENT_DROP_REASONS`)."""
    rule = match(cfg.rules, facts)
    if rule is None:
        return "unmatched"
    asset = asset_of(notifier, facts)
    if asset is None:
        return "unassigned"
    out: list[Reading] = []
    if rule.state is not None:
        out.append(Reading(asset, cfg.state_signal, rule.state, recv_ns, facts.time_ns))
    if rule.reason is not None:
        out.append(Reading(asset, cfg.reason_signal, rule.reason, recv_ns, facts.time_ns))
    return out
