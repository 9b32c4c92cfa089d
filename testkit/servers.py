"""Real servers for tests and benchmarks, started on free loopback ports with temporary data directories.

A missing server binary raises :class:`ServerMissing`. The test suite turns it into
a skip on a developer machine and a failure when ``CI=true`` (CI must never pass by
skipping the real thing); a benchmark reports it and stops.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ServerMissing(RuntimeError):
    """A server binary the caller needs is not installed."""


def require_binary(name: str) -> str:
    """Path of ``name``; raise :class:`ServerMissing` when it is not installed."""
    path = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None)
    if path is None:
        raise ServerMissing(f"{name} is not installed (apt-get install the package; the test command does this)")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_pair() -> int:
    """A free port whose next port is free too (a hub's second ingest worker listens on the next port)."""
    for _ in range(100):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("found no two consecutive free ports")


def wait_for_port(
    port: int, *, host: str = "127.0.0.1", timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {host}:{port}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout} s")


@dataclass
class MosquittoServer:
    """A real Mosquitto process. ``stop()`` / ``start()`` simulate an outage on the same port and data dir."""

    workdir: Path
    port: int
    conf: str
    binary: str
    host: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def conf_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    def start(self) -> None:
        self.conf_path.write_text(self.conf, encoding="utf-8")
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf_path)], stdout=log, stderr=log)
        wait_for_port(self.port, proc=self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""


def start_mosquitto(
    workdir: Path, *, extra_conf: str = "", listener: str | None = None, port: int | None = None
) -> MosquittoServer:
    """Start Mosquitto with an anonymous plain listener on a free loopback port, tuned as in broker_config/.

    ``listener`` replaces the default listener block entirely (for TLS / password tests);
    it must contain ``{port}`` where the port goes.
    """
    binary = require_binary("mosquitto")
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    block = (listener or "listener {port} 127.0.0.1\nallow_anonymous true\n").format(port=port)
    # Run as the current user: as root, Mosquitto would drop to "mosquitto", which cannot write tmp dirs.
    user = "user root\n" if os.geteuid() == 0 else ""
    conf = (
        user + "per_listener_settings false\n"
        f"persistence true\npersistence_location {workdir}/\n"
        "set_tcp_nodelay true\nmax_inflight_messages 1000\nmax_queued_messages 100000\n"
        "log_type error\nlog_type warning\nlog_type notice\n"
        f"{block}{extra_conf}\n"
    )
    server = MosquittoServer(workdir=workdir, port=port, conf=conf, binary=binary)
    server.start()
    return server


# -- InfluxDB 1.x --------------------------------------------------------------------------------------

INFLUX_USER = "mdh-admin"
INFLUX_PASSWORD = "test-password-not-secret"


@dataclass
class InfluxServer:
    """A real InfluxDB 1.x (``influxd``) with auth enabled and one admin user.

    Every listener is on a free loopback port or disabled, so parallel runs do not
    collide. ``stop()`` / ``start()`` restart it on the same ports and directories.
    """

    workdir: Path
    port: int
    rpc_port: int
    binary: str
    username: str = INFLUX_USER
    password: str = INFLUX_PASSWORD
    host: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _admin_created: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def conf_path(self) -> Path:
        return self.workdir / "influxdb.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "influxd.log"

    def conf(self) -> str:
        d = self.workdir
        return f"""reporting-enabled = false
bind-address = "127.0.0.1:{self.rpc_port}"
[meta]
  dir = "{d}/meta"
  logging-enabled = false
[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
  trace-logging-enabled = false
[coordinator]
  log-queries-after = "0s"
[retention]
  enabled = true
  check-interval = "30m"
[shard-precreation]
  enabled = false
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{self.port}"
  auth-enabled = true
  log-enabled = false
  max-body-size = 0
[ifql]
  enabled = false
[continuous_queries]
  enabled = false
[subscriber]
  enabled = false
"""

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(self.conf(), encoding="utf-8")
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([self.binary, "-config", str(self.conf_path)], stdout=log, stderr=log)
        wait_for_port(self.port, proc=self.proc, timeout=30)
        self._wait_ready()
        # With auth enabled, InfluxDB accepts creating the first admin user without credentials.
        if not self._admin_created:
            self._admin_created = True
            self._query(f"CREATE USER \"{self.username}\" WITH PASSWORD '{self.password}' WITH ALL PRIVILEGES")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{self.url}/ping", timeout=1) as r:  # noqa: S310
                if r.status == 204:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"InfluxDB on {self.url} not ready after 30 s:\n{self.log()[-2000:]}")

    def _query(self, q: str) -> None:
        data = urllib.parse.urlencode({"q": q, "u": self.username, "p": self.password}).encode()
        with urllib.request.urlopen(f"{self.url}/query", data=data, timeout=10) as r:  # noqa: S310
            r.read()

    def stop(self) -> None:
        _terminate(self.proc)
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""


def start_influxdb(workdir: Path) -> InfluxServer:
    """Start ``influxd`` (InfluxDB 1.x) with its HTTP and RPC listeners on free loopback ports."""
    binary = require_binary("influxd")
    server = InfluxServer(workdir=workdir, port=free_port(), rpc_port=free_port(), binary=binary)
    server.start()
    return server


# -- VictoriaMetrics -----------------------------------------------------------------------------------


@dataclass
class VictoriaMetricsServer:
    """A real single-node VictoriaMetrics, accepting InfluxDB line protocol on ``/api/v2/write``.

    It keeps numbers only (string fields are dropped) at millisecond precision, and
    refuses timestamps outside its retention or more than two days ahead: write
    samples near the present.
    """

    workdir: Path
    port: int
    binary: str
    host: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "victoria-metrics.log"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                self.binary,
                f"-httpListenAddr=127.0.0.1:{self.port}",
                f"-storageDataPath={self.workdir}/data",
                "-retentionPeriod=100y",
                "-search.latencyOffset=0s",
                "-loggerLevel=ERROR",
            ],
            stdout=log,
            stderr=log,
        )
        wait_for_port(self.port, proc=self.proc, timeout=30)

    def flush(self) -> None:
        """Ask the server to make what it has ingested visible to queries (it does so within ~1 s anyway)."""
        with urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=10) as r:  # noqa: S310
            r.read()

    def export(self, match: str, *, expect_points: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Series matching ``match`` from ``/api/v1/export``, waiting until ``expect_points`` points are visible
        (or ``timeout`` passed; then whatever is visible is returned, for the caller to assert on)."""
        deadline = time.monotonic() + timeout
        while True:
            self.flush()
            query = urllib.parse.urlencode({"match[]": match})
            with urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=10) as r:  # noqa: S310
                series = [json.loads(line) for line in r.read().decode().splitlines() if line.strip()]
            if sum(len(s["values"]) for s in series) >= expect_points or time.monotonic() > deadline:
                return series
            time.sleep(0.2)

    def stop(self) -> None:
        _terminate(self.proc)
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""


def start_victoria_metrics(workdir: Path) -> VictoriaMetricsServer:
    binary = require_binary("victoria-metrics")
    server = VictoriaMetricsServer(workdir=workdir, port=free_port(), binary=binary)
    server.start()
    return server


def _terminate(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
