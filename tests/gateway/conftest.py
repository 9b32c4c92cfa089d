"""Fixtures for gateway tests: a member key and settings built from the example's shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.configfile import settings_from_dict
from gateway.config import GatewaySettings
from gateway.pseudonymise import MemberKey, generate_key

MEMBER = "m-0a1b2c"

POLICY: dict[str, Any] = {
    "min_quality": "bad",
    "asset_classes": {"DMU 50": "cnc_milling"},
    "signals": {
        "Power": {"canonical": "power_kw", "unit": "W", "round": 3},
        "Parts": {"canonical": "parts_total"},
        "State": {"canonical": "state", "states": {"0": "off", "1": "idle", "2": "running"}},
        "Temp": {"canonical": "temperature_c"},
    },
}

#: POLICY with the local signals that mapped OPC UA events become (see gateway/sources/opcua/events.py).
EVENT_POLICY: dict[str, Any] = {
    **POLICY,
    "signals": {
        **POLICY["signals"],
        "EventState": {"canonical": "state"},
        "EventReason": {"canonical": "downtime_reason"},
    },
}


def gateway_settings(
    tmp: Path,
    *,
    uplink_port: int,
    opcua: list[dict[str, Any]] | None = None,
    mqtt: list[dict[str, Any]] | None = None,
    name: str = "test-gw",
    batch_size: int = 500,
    batch_time_s: float = 0.2,
    extra: dict[str, Any] | None = None,
) -> GatewaySettings:
    key_file = tmp / "member.key"
    if not key_file.exists():
        generate_key(key_file, key_id="k-test")
    data: dict[str, Any] = {
        "identity": {
            "member": MEMBER,
            "gateway_name": name,
            "key_file": str(key_file),
            "journal_file": str(tmp / "journal.jsonl"),
        },
        "policy": POLICY,
        "opcua": opcua or [],
        "mqtt": mqtt or [],
        "buffer": {"path": str(tmp / "buffer.sqlite"), "flush_interval_s": 0.1},
        "uplink": {
            "host": "127.0.0.1",
            "port": uplink_port,
            "tls": False,
            "batch_size": batch_size,
            "batch_time_s": batch_time_s,
            "backoff_min_s": 0.1,
            "backoff_max_s": 1.0,
            "drain_timeout_s": 5,
        },
        "health": {"port": 0},
    }
    for k, v in (extra or {}).items():
        data[k] = {**data.get(k, {}), **v} if isinstance(v, dict) else v
    return settings_from_dict(GatewaySettings, data)


@pytest.fixture
def member_key(tmp_path: Path) -> MemberKey:
    return generate_key(tmp_path / "member.key", key_id="k-test")
