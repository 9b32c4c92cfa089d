"""The wheel, installed into a fresh virtual environment with the gateway extra only, as an edge
device or the trustee would: the broker templates come with it (package data) and the gateway's
commands run without the hub's libraries."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from testkit.machines import MachineServer
from testkit.servers import MosquittoServer, free_port, require_binary

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[1]
MEMBER = "m-0a1b2c"
HUB_ONLY = ("polars", "duckdb", "fastapi", "uvicorn", "influxdb_client", "pyarrow", "httpx", "amqtt")


def _run(*args: str | Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def gateway_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel and its gateway extra; returns its bin directory."""
    tmp = tmp_path_factory.mktemp("wheel")
    built = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp / "dist", ROOT, cwd=tmp)
    assert built.returncode == 0, built.stderr
    wheel = next((tmp / "dist").glob("metalldaten_hub-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "broker_config/mosquitto.conf" in names and "broker_config/dynamic-security.json" in names
    assert not any(n.startswith(("testkit/", "tests/", "benchmarks/")) for n in names)
    venv.create(tmp / "venv", with_pip=True)
    bin_dir = tmp / "venv" / "bin"
    installed = _run(bin_dir / "python", "-m", "pip", "install", "-q", f"{wheel}[gateway]", cwd=tmp)
    assert installed.returncode == 0, installed.stderr
    return bin_dir


def test_the_gateway_extra_leaves_out_the_hub_libraries(gateway_venv: Path, tmp_path: Path) -> None:
    for module in HUB_ONLY:
        probe = _run(gateway_venv / "python", "-c", f"import {module}", cwd=tmp_path)
        assert probe.returncode != 0, f"{module} is installed with the gateway extra"
    hub = _run(gateway_venv / "metalldaten", "hub", "--help", cwd=tmp_path)
    assert hub.returncode == 2 and "metalldaten-hub[hub]" in hub.stderr


def test_broker_write_config_from_the_installed_wheel(gateway_venv: Path, tmp_path: Path) -> None:
    require_binary("mosquitto")
    cli = gateway_venv / "metalldaten"
    conf, data = tmp_path / "conf", tmp_path / "data"
    ca = _run(cli, "broker", "init-ca", "--out", conf / "certs", "--hostname", "127.0.0.1", cwd=tmp_path)
    assert ca.returncode == 0, ca.stdout + ca.stderr
    port = free_port()
    written = _run(
        cli, "broker", "write-config", "--config-dir", conf, "--data-dir", data,
        "--port", str(port), "--mtls-port", "0", "--ingest-port", "0", "--bind", "127.0.0.1",
        cwd=tmp_path,
    )  # fmt: skip
    assert written.returncode == 0, written.stdout + written.stderr
    assert f"wrote {conf / 'mosquitto.conf'}" in written.stdout
    text = (conf / "mosquitto.conf").read_text(encoding="utf-8")
    assert f"listener {port} 127.0.0.1" in text
    assert (conf / "dynamic-security.json").exists()


async def test_gateway_check_from_the_installed_wheel(
    gateway_venv: Path, tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    cli = str(gateway_venv / "metalldaten")
    server = MachineServer(free_port(), {"L": ["Power"]}, initial=1500.0)
    await server.start()
    try:
        keygen = await asyncio.to_thread(_run, cli, "gateway", "keygen", "--out", "member.key", cwd=tmp_path)
        assert keygen.returncode == 0, keygen.stdout + keygen.stderr
        config = tmp_path / "gw.toml"
        config.write_text(
            f"""
[identity]
member = "{MEMBER}"
gateway_name = "Edge"
key_file = "member.key"
journal_file = "journal.jsonl"

[[assets]]
id = "Press-1"
model = "P-100"

[policy.asset_classes]
"P-100" = "press"

[policy.signals.Power]
canonical = "power_kw"

[[opcua]]
name = "halle"
url = "{server.url}"
nodes = [{{ asset = "Press-1", signal = "Power", node = "{server.node_id("L", "Power")}" }}]

[uplink]
host = "127.0.0.1"
port = {mosquitto.port}
tls = false

[health]
port = 0
""",
            encoding="utf-8",
        )
        check = await asyncio.to_thread(_run, cli, "gateway", "check", "--config", str(config), cwd=tmp_path)
        assert check.returncode == 0, check.stdout + check.stderr
        assert "ok    opcua halle: 1 of 1 nodes exist on the server" in check.stdout and "ok    uplink" in check.stdout
    finally:
        await server.stop()
