"""The gateway as a real process for tests: started with the installed ``metalldaten`` command, its log to a
file, stopped for sure; and its ``/metrics`` and ``/health`` read over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

CLI = str(Path(sys.executable).parent / "metalldaten")


def spawn_gateway(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """``metalldaten gateway run --config CONFIG`` in the config's folder, output appended to ``log``."""
    out = log.open("ab")
    return subprocess.Popen(
        [CLI, "gateway", "run", "--config", str(config)],
        stdout=out,
        stderr=out,
        cwd=config.parent,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def kill_if_running(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(5)


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def scrape(port: int) -> dict[str, float]:
    """Every sample of ``/metrics`` by its name with labels (``name{a="b"}``); empty while nothing listens."""
    out: dict[str, float] = {}
    for line in _get(port, "/metrics")[1].splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def health(port: int) -> dict[str, Any]:
    code, body = _get(port, "/health")
    return json.loads(body) if code else {}


def opcua_toml(name: str, url: str, asset: str, node: str, *, extra: str = "") -> str:
    """One ``[[opcua]]`` section reading ``node`` as signal ``Power`` of ``asset`` in a fast group."""
    return f"""
[[opcua]]
name = "{name}"
url = "{url}"
backoff_min_s = 0.1
backoff_max_s = 1.0
groups = [{{ name = "fast", publishing_interval_ms = 50, sampling_interval_ms = 0, queue_size = 100 }}]
nodes = [{{ asset = "{asset}", signal = "Power", node = "{node}", group = "fast" }}]
{extra}"""


def write_gateway_toml(
    path: Path,
    *,
    member: str,
    name: str,
    broker_port: int,
    sources: str,
    health_port: int = 0,
    policy: str = '[policy.signals.Power]\ncanonical = "power_kw"\n',
    flush_interval_s: float = 0.25,
    batch_size: int = 40,
    batch_time_s: float = 0.3,
) -> Path:
    """A gateway configuration for a process test (key file ``member.key`` beside it; plain loopback uplink)."""
    path.write_text(
        f"""
[identity]
member = "{member}"
gateway_name = "{name}"
key_file = "member.key"

{policy}
[buffer]
path = "buffer.sqlite"
flush_interval_s = {flush_interval_s}

[uplink]
host = "127.0.0.1"
port = {broker_port}
tls = false
batch_size = {batch_size}
batch_time_s = {batch_time_s}
backoff_min_s = 0.2
backoff_max_s = 1.0

[health]
port = {health_port}
{sources}""",
        encoding="utf-8",
    )
    return path
