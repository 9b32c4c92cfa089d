"""Real servers for integration tests, started on free loopback ports with temporary data directories.

When a server binary is missing the test is skipped on a developer machine, but
fails when ``CI=true``: CI must never pass by skipping the real thing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest


def require_binary(name: str) -> str:
    """Path of ``name``, or skip (fail under CI=true) when it is not installed."""
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None
    )
    if path is None:
        message = f"{name} is not installed (apt-get install the package; the test command does this)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, *, host: str = "127.0.0.1", timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None) -> None:
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


def start_mosquitto(workdir: Path, *, extra_conf: str = "", listener: str | None = None, port: int | None = None) -> MosquittoServer:
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


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoServer]:
    server = start_mosquitto(tmp_path / "mosquitto")
    try:
        yield server
    finally:
        server.stop()
