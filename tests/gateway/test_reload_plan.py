"""What a reload does, decided from the old and the new configuration (pure): table of cases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.configfile import settings_from_dict
from gateway.config import GatewaySettings
from gateway.errors import ReloadRefused
from gateway.reload import pid_file, plan_reload

OPC_A = {
    "name": "a",
    "url": "opc.tcp://127.0.0.1:4840/",
    "nodes": [{"asset": "P1", "signal": "Power", "node": "nsu=urn:x;s=P1"}],
}
OPC_B = {"name": "b", "url": "opc.tcp://127.0.0.1:4841/"}
MQTT_C = {"name": "c", "topics": [{"filter": "f/+", "asset_level": 1, "signal": "Power"}]}


def settings(tmp: Path, **sections: Any) -> GatewaySettings:
    data: dict[str, Any] = {
        "identity": {"member": "m-0a1b2c", "gateway_name": "gw", "key_file": str(tmp / "k")},
        "buffer": {"path": str(tmp / "buffer.sqlite")},
        **sections,
    }
    return settings_from_dict(GatewaySettings, data)


@pytest.mark.parametrize(
    ("old", "new", "start", "stop", "keep", "policy"),
    [
        ({"opcua": [OPC_A]}, {"opcua": [OPC_A]}, [], [], [("opcua", "a")], False),
        ({"opcua": [OPC_A]}, {"opcua": [OPC_A, OPC_B]}, [("opcua", "b")], [], [("opcua", "a")], False),
        ({"opcua": [OPC_A, OPC_B]}, {"opcua": [OPC_B]}, [], [("opcua", "a")], [("opcua", "b")], False),
        # a node added to a: a restarts, b stays
        (
            {"opcua": [OPC_A, OPC_B]},
            {
                "opcua": [
                    {**OPC_A, "nodes": [*OPC_A["nodes"], {"asset": "P2", "signal": "Power", "node": "nsu=urn:x;s=P2"}]},
                    OPC_B,
                ]
            },
            [("opcua", "a")],
            [("opcua", "a")],
            [("opcua", "b")],
            False,
        ),
        ({"opcua": [OPC_A]}, {"opcua": [OPC_A], "mqtt": [MQTT_C]}, [("mqtt", "c")], [], [("opcua", "a")], False),
        (
            {"opcua": [OPC_A]},
            {"opcua": [OPC_A], "policy": {"signals": {"Power": {"canonical": "power_kw"}}}},
            [],
            [],
            [("opcua", "a")],
            True,
        ),
        (
            {"opcua": [OPC_A]},
            {"opcua": [OPC_A], "assets": [{"id": "P1", "asset_class": "press"}]},
            [],
            [],
            [("opcua", "a")],
            True,
        ),
    ],
)
def test_plan(
    tmp_path: Path,
    old: dict[str, Any],
    new: dict[str, Any],
    start: list[Any],
    stop: list[Any],
    keep: list[Any],
    policy: bool,
) -> None:
    plan = plan_reload(settings(tmp_path, **old), settings(tmp_path, **new))
    assert (list(plan.start), list(plan.stop), list(plan.keep), plan.policy_changed) == (start, stop, keep, policy)
    assert plan.changes == bool(start or stop or policy)


@pytest.mark.parametrize(
    ("change", "section"),
    [
        ({"uplink": {"port": 1884}}, "[uplink]"),
        ({"buffer": {"path": "other.sqlite"}}, "[buffer]"),
        ({"health": {"port": 0}}, "[health]"),
    ],
)
def test_fixed_sections_are_refused_by_name(tmp_path: Path, change: dict[str, Any], section: str) -> None:
    old = settings(tmp_path, opcua=[OPC_A])
    new = settings(tmp_path, opcua=[OPC_A], **change)
    with pytest.raises(ReloadRefused, match=r"cannot change while the gateway runs") as err:
        plan_reload(old, new)
    assert section in str(err.value)


def test_pid_file_beside_the_buffer(tmp_path: Path) -> None:
    assert pid_file(settings(tmp_path)) == tmp_path / "buffer.sqlite.pid"
