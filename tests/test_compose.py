"""docker-compose.yml: it parses, names the services the README promises, and every file it mounts exists
(or is made by the trustee's commands, which the test runs)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from core.configfile import load_settings
from gateway.config import GatewaySettings
from metalldaten.cli import app
from metalldaten.hub import load_hub_settings
from testkit.servers import require_binary

ROOT = Path(__file__).resolve().parent.parent
#: Made before the first start by `metalldaten broker init-ca / add-ingestor / add-member` (see the README).
GENERATED = {
    "var/broker/passwd",
    "var/broker/dynamic-security.json",
    "var/broker/certs",
    "var/broker/certs/ca.pem",
    "var",
}


def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_services_and_profiles() -> None:
    services = compose()["services"]
    assert services["mosquitto"]["image"].startswith("eclipse-mosquitto:2")
    assert services["influxdb"]["image"] == "influxdb:2.7"
    assert services["hub"]["command"][:2] == ["hub", "run"]
    for name in ("simulator", "gateway", "factory-broker"):
        assert services[name]["profiles"] == ["simulator"]
    for name, svc in services.items():
        for dep in svc.get("depends_on", []):
            assert dep in services, f"{name} depends on unknown service {dep}"


def _host_paths() -> list[str]:
    out = []
    for svc in compose()["services"].values():
        for vol in svc.get("volumes", []):
            host = vol.split(":")[0]
            if host.startswith("./"):
                out.append(host[2:])
    return out


def test_every_mounted_file_exists_or_is_generated() -> None:
    paths = _host_paths()
    assert "broker_config/mosquitto.conf" in paths and "deploy/hub.toml" in paths
    for p in paths:
        assert (ROOT / p).exists() or p in GENERATED, f"docker-compose mounts ./{p}, which does not exist"
    assert (ROOT / "Dockerfile").exists()


def test_generated_broker_files_are_what_the_config_names(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    result = CliRunner().invoke(app, ["broker", "init-ca", "--out", str(certs), "--hostname", "mosquitto"])
    assert result.exit_code == 0, result.output
    conf = (ROOT / "broker_config/mosquitto.conf").read_text(encoding="utf-8")
    for name in set(re.findall(r"^(?:certfile|keyfile|cafile)\s+/mosquitto/config/certs/(\S+)", conf, re.M)):
        assert (certs / name).exists(), f"mosquitto.conf names certs/{name}, init-ca did not make it"


def test_configurations_mounted_into_the_containers_load() -> None:
    hub = load_hub_settings(ROOT / "deploy/hub.toml")
    assert hub.store.kind == "influxdb2"
    assert str(hub.ingest.ca_file) == "/etc/metalldaten/certs/ca.pem"
    gw = load_settings(GatewaySettings, ROOT / "deploy/gateway-sim.toml")
    assert gw.uplink.host == "mosquitto"
    assert load_hub_settings(ROOT / "metalldaten/hub.example.toml").store.kind == "duckdb"


def test_docker_compose_config_when_installed(tmp_path: Path) -> None:
    exe = require_binary("docker-compose")  # Debian package docker-compose; the test command installs it
    env = {**os.environ, "INFLUXDB_TOKEN": "t", "INGESTOR_PASSWORD": "p"}
    out = subprocess.run(
        [exe, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
