"""Percent deadband (``deadband_pct``) against a real asyncua server whose variable has an EURange.

asyncua 2.1.0's server accepts a percent DataChangeFilter but does not apply it: it logs
"DeadbandType Percent is not implemented" and reports every change. The test therefore checks
what the gateway controls, the filter on the server's monitored item (type Percent, the configured
value, trigger StatusValue), and then lets the test server apply that filter as OPC UA Part 8
defines it (a change is reported when it exceeds deadband/100 x the EURange span) to show the
values that leave the gateway end to end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from asyncua import ua
from asyncua.server.monitored_item_service import MonitoredItemService, MonitoredItemValues

from testkit.machines import MachineServer
from testkit.servers import MosquittoServer, free_port

from .conftest import gateway_settings
from .hub import values_forwarded

pytestmark = pytest.mark.integration


def _filters(server: MachineServer) -> list[Any]:
    assert server.server is not None
    subs = server.server.iserver.subscription_service.subscriptions.values()
    return [m.filter for s in subs for m in s.monitored_item_srv._monitored_items.values()]


async def test_group_percent_deadband(
    tmp_path: Path, mosquitto: MosquittoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = MachineServer(free_port(), {"Ofen": ["Temp"]}, initial=20.0)
    await server.start()
    eu_range = ua.Range(Low=0.0, High=200.0)  # 10 % of this span is 20
    await server.nodes[("Ofen", "Temp")].add_property(
        ua.NodeId("Ofen.Temp.EURange", server.ns_index),
        ua.QualifiedName("EURange", 0),
        eu_range,
        datatype=ua.NodeId(ua.ObjectIds.Range),
    )

    def percent_deadband(self: MonitoredItemService, values: MonitoredItemValues, flt: ua.DataChangeFilter) -> bool:
        cur, old = values.get_current_datavalue(), values.get_old_datavalue()
        if flt.DeadbandType != ua.DeadbandType.Percent or old is None or cur is None:
            return True
        assert cur.Value is not None and old.Value is not None
        return abs(cur.Value.Value - old.Value.Value) > flt.DeadbandValue / 100 * (eu_range.High - eu_range.Low)

    monkeypatch.setattr(MonitoredItemService, "_is_deadband_exceeded", percent_deadband)
    source: dict[str, Any] = {
        "name": "halle",
        "url": server.url,
        "backoff_min_s": 0.1,
        "backoff_max_s": 1.0,
        "groups": [
            {"name": "slow_changes", "publishing_interval_ms": 50, "sampling_interval_ms": 0, "deadband_pct": 10.0}
        ],
        "nodes": [{"asset": "Ofen", "signal": "Temp", "node": server.node_id("Ofen", "Temp"), "group": "slow_changes"}],
    }
    settings = gateway_settings(tmp_path, uplink_port=mosquitto.port, opcua=[source])

    def filter_is_percent() -> None:
        [flt] = _filters(server)
        assert type(flt).__name__ == "DataChangeFilter"
        assert flt.DeadbandType == ua.DeadbandType.Percent
        assert flt.DeadbandValue == 10.0
        assert flt.Trigger == ua.DataChangeTrigger.StatusValue

    # steps of 15 pass an absolute deadband of 10 but stay inside 10 % of 0..200
    forwarded = await values_forwarded(
        settings, server, mosquitto.port, [35.0, 60.0, 75.0, 100.0], inspect=filter_is_percent
    )
    assert forwarded == [20.0, 60.0, 100.0]
