"""Events and alarms on a machine server, as a machine controller reports why it stopped.

:class:`MachineEvents` adds event types to a running :class:`~testkit.machines.MachineServer`
(``ToolBreakEventType``, ``MaterialShortageEventType`` below BaseEventType, each with an
``OperatorName`` property, and alarms of the standard ``OffNormalAlarmType``), makes every machine
object an event notifier, and emits events with a message text and an operator name, which a
gateway must never pass on. :meth:`emit` reports an event through the machine object, or through
the Server object with the machine as its source (``via_server=True``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from asyncua import ua
from asyncua.common.events import Event

from .machines import MachineServer

EVENT_TYPES = ("ToolBreakEventType", "MaterialShortageEventType")
ALARM_TYPE = "OffNormalAlarmType"


@dataclass
class MachineEvents:
    machines: MachineServer
    types: dict[str, ua.NodeId] = field(default_factory=dict)
    emitted: int = 0

    async def install(self) -> MachineEvents:
        """Add the event types and make every machine object a notifier (after each server start)."""
        server = self.machines.server
        assert server is not None
        idx = self.machines.ns_index
        for name in EVENT_TYPES:
            node = await server.create_custom_event_type(
                idx, name, ua.ObjectIds.BaseEventType, [("OperatorName", ua.VariantType.String)]
            )
            self.types[name] = node.nodeid
        self.types[ALARM_TYPE] = ua.NodeId(ua.ObjectIds.OffNormalAlarmType)
        notifier = ua.DataValue(ua.Variant(1, ua.VariantType.Byte))  # SubscribeToEvents
        for machine in self.machines.machines:
            await self._object(machine).write_attribute(ua.AttributeIds.EventNotifier, notifier)
        return self

    def _object(self, machine: str) -> Any:
        server = self.machines.server
        assert server is not None
        return server.get_node(ua.NodeId(ua.String(machine), ua.Int16(self.machines.ns_index)))

    async def emit(
        self,
        machine: str,
        event_type: str,
        *,
        severity: int,
        message: str = "",
        operator: str = "",
        active: bool | None = None,
        via_server: bool = False,
        time: datetime | None = None,
    ) -> datetime:
        """Report one event (an alarm when ``event_type`` is :data:`ALARM_TYPE`, with ``active``)."""
        server = self.machines.server
        assert server is not None
        source = self._object(machine)
        emitting = ua.NodeId(ua.ObjectIds.Server) if via_server else source.nodeid
        gen = await server.get_event_generator(self.types[event_type], emitting)
        ev = cast(Event, gen.event)
        ts = time or datetime.now(UTC)
        ev.Severity = severity
        ev.Message = ua.LocalizedText(message)
        ev.SourceNode = source.nodeid
        ev.SourceName = machine
        if event_type == ALARM_TYPE:
            setattr(ev, "ActiveState/Id", bool(active))
            ev.ActiveState = ua.LocalizedText("Active" if active else "Inactive")
            ev.ConditionName = f"{machine} {message}"
        else:
            ev.OperatorName = operator
        await gen.trigger(time_attr=cast(ua.DateTime, ts))
        self.emitted += 1
        return ts
