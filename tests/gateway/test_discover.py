"""``metalldaten gateway discover`` against real asyncua servers (:mod:`testkit.plants`): more than 50,000
nodes behind a server that limits browse results (continuation points), a proposal that loads as a
configuration, personal-data exclusions with reasons, the difference after the server changed, and the
bounds on depth and node count."""

from __future__ import annotations

import asyncio
import sys
import time
import tomllib
from pathlib import Path

import pytest

from core.configfile import settings_from_dict
from gateway.config import GatewaySettings
from gateway.discovery import DiscoverLimits, browse_server, render
from gateway.discovery.suggest import suggest
from gateway.sources.opcua.config import OpcuaSource
from testkit.plants import MACHINE_SIGNALS, PlantServer
from testkit.servers import free_port

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "metalldaten")


@pytest.mark.parametrize(
    ("name", "data_type", "unit", "canonical", "conversion", "excluded"),
    [
        ("ActivePower", "Double", "W", "power_kw", "W -> kW", None),
        ("Wirkleistung", "Float", None, "power_kw", None, None),
        ("P_total", "Double", "MW", "power_kw", "MW -> kW", None),
        ("Energie", "Double", "kWh", "energy_kwh", None, None),
        ("Temp1", "Double", "K", "temperature_c", "K -> °C", None),
        ("Oil", "Double", "°F", "temperature_c", "°F -> °C", None),
        ("Drehzahl", "Double", "rpm", "spindle_speed_rpm", "rpm -> 1/min", None),
        ("Ausschuss", "UInt32", None, "parts_scrap_total", None, None),
        ("PartsCounter", "UInt32", None, "parts_total", None, None),
        ("Betriebsart", "Int32", None, "state", None, None),
        ("PartsCounter", "String", None, None, None, "free text"),
        ("OperatorName", "String", None, None, None, "personal data: the name contains 'operator'"),
        ("Badge", "UInt32", None, None, None, "personal data: the name contains 'badge'"),
        ("Humidity", "Double", "%", None, None, None),
    ],
)
def test_signal_suggestions(
    name: str, data_type: str, unit: str | None, canonical: str | None, conversion: str | None, excluded: str | None
) -> None:
    s = suggest(name, data_type, unit, parent="M1")
    assert (s.canonical, s.conversion) == (canonical, conversion)
    assert (s.excluded or "").startswith(excluded or "") and bool(s.excluded) == bool(excluded)


async def test_discover_fifty_thousand_nodes_behind_continuation_points() -> None:
    server = PlantServer(free_port(), halls=8, machines_per_hall=500, browse_limit=100)
    await server.start()
    assert server.node_count >= 50_000
    try:
        started = time.monotonic()
        cfg = OpcuaSource(name="werk", url=server.url, timeout_s=30)
        prop = await browse_server(cfg, DiscoverLimits(batch=1000))
        took = time.monotonic() - started
    finally:
        await server.stop()
    assert prop.truncated is None and prop.browsed == server.node_count
    assert server.browse_next_calls >= 1  # the halls' 500 machines came in pages of 100
    assert prop.requests < server.node_count / 200, "browsed in batches, not node by node"
    assert len(prop.machines) == 8 * 500
    nodes = prop.nodes()
    per_signal = {sig: sum(1 for n in nodes if n.signal == sig) for sig, *_ in MACHINE_SIGNALS}
    assert per_signal["ActivePower"] == 4000 and per_signal["OperatorName"] == 0
    assert {n.suggestion.excluded for n in prop.excluded if n.signal == "BadgeId"} == {
        "personal data: the name contains 'badge'"
    }
    assert len(prop.excluded) == 4 * 4000  # operator, badge, comment, program name
    assert prop.signals["ActivePower"].unit == "W" and prop.signals["SpindleTemperature"].unit == "K"
    text = render(prop)
    assert text.count("\n  { asset = ") == 7 * 4000  # one line per suggested node
    print(f"discover: {prop.browsed} nodes in {prop.requests} requests, {took:.1f} s")


async def _cli(*args: str, cwd: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        CLI, *args, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return int(proc.returncode or 0), out.decode()


async def test_discover_cli_proposal_loads_and_rerun_prints_the_difference(tmp_path: Path) -> None:
    port = free_port()
    server = PlantServer(port, halls=2, machines_per_hall=3)
    await server.start()
    try:
        code, out = await _cli("gateway", "discover", "--endpoint", server.url, "--out", "p.toml", cwd=tmp_path)
        assert code == 0, out
        assert "6 machines, 72 variables (42 with a suggested signal, 24 excluded as personal data)" in out
        text = (tmp_path / "p.toml").read_text(encoding="utf-8")
        assert "Erika" not in text and "B-4711" not in text  # values are never read into the proposal
        assert "# - Plant/Hall0/H0-M0000/OperatorName" in text and "the name contains 'operator'" in text
        doc = tomllib.loads(text)
        ident = {"member": "m-0a1b2c", "gateway_name": "gw", "key_file": str(tmp_path / "k")}
        settings = settings_from_dict(GatewaySettings, {"identity": ident, **doc})  # a usable configuration
        nodes = settings.opcua[0].nodes
        assert len(nodes) == 42 and all(n.path_nsu == server.uri for n in nodes)
        power = next(n for n in nodes if n.asset == "H1-M0002" and n.signal == "ActivePower")
        assert power.path == "Plant/Hall1/H1-M0002/ActivePower"
        assert settings.policy.signals["ActivePower"].unit == "W"  # converted to kW by the policy
        assert settings.policy.signals["SpindleSpeed"].canonical == "spindle_speed_rpm"
        assert "OperatorName" not in settings.policy.signals

        # the server changes: one more machine per hall; the scrap counter and the coolant level are gone
        await server.stop()
        server.machines_per_hall = 4
        server.signals = tuple(s for s in MACHINE_SIGNALS if s[0] not in ("CoolantLevel", "ScrapCounter"))
        await server.start()
        code, out = await _cli(
            "gateway", "discover", "--endpoint", server.url, "--out", "p2.toml", "--config", "p.toml", cwd=tmp_path
        )
        assert code == 0, out
        assert "+ Plant/Hall0/H0-M0003/ActivePower: Double, unit W -> power_kw (W -> kW)" in out
        assert "! Plant/Hall1/H1-M0003/OperatorName: new, excluded (personal data" in out
        gone = f"- {server.uri} Plant/Hall0/H0-M0001/ScrapCounter: configured as H0-M0001 / ScrapCounter, not on"
        assert gone in out
        assert "CoolantLevel" not in out  # it was not configured (no suggestion: commented out)
        assert "12 new, 6 no longer on the server, 32 excluded as personal data, 36 unchanged" in out

        code, out = await _cli(
            "gateway", "discover", "--endpoint", server.url, "--max-depth", "2", "--out", "p3.toml", cwd=tmp_path
        )
        assert code == 0 and "INCOMPLETE: the browse stopped at the maximum depth of 2 levels" in out
        code, out = await _cli(
            "gateway", "discover", "--endpoint", server.url, "--max-nodes", "20", "--out", "p4.toml", cwd=tmp_path
        )
        assert code == 0 and "INCOMPLETE: the browse stopped at the maximum of 20 nodes" in out
    finally:
        await server.stop()


async def test_discover_the_demo_machine_server() -> None:
    """The product's own simulated factory (built with asyncua's ordinary node API, with properties)."""
    from testkit.machines import MachineServer

    machines = {"Laser-SN-555": ["Power", "State", "operator_name", "Parts"], "Presse-7": ["Power", "Temp"]}
    server = MachineServer(free_port(), machines, properties={"Laser-SN-555": {"Model": "TruLaser 3030"}})
    await server.start()
    try:
        prop = await browse_server(OpcuaSource(name="halle", url=server.url, timeout_s=30), DiscoverLimits())
    finally:
        await server.stop()
    assert set(prop.machines) == {"Machines/Laser-SN-555", "Machines/Presse-7"}
    laser = {n.signal: n for n in prop.machines["Machines/Laser-SN-555"]}
    assert set(laser) == {"Power", "State", "Parts"}  # the Model property is metadata, not a signal
    assert laser["Power"].suggestion.canonical == "power_kw" and laser["Power"].data_type == "Double"
    assert laser["Power"].entry() == {
        "asset": "Laser-SN-555",
        "signal": "Power",
        "path": "Machines/Laser-SN-555/Power",
        "path_nsu": server.uri,
    }
    assert [(n.signal, n.suggestion.excluded) for n in prop.excluded] == [
        ("operator_name", "personal data: the name contains 'operator'")
    ]
