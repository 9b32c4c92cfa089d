"""The non-Docker steps of broker_config/README.md, run as written, in a fresh directory, with the real Mosquitto.

The commands are taken from the README's code block and run unchanged, except that ``write-config`` is given
free loopback ports (``--port/--mtls-port/--ingest-port/--bind``) so that the test never listens on a public
address. Run as root (as CI does), Mosquitto drops to the ``mosquitto`` user and must still read its files.
Then: the member's kit logs in and publishes, an ingestor login receives it through the shared group, the
client certificate works, and after ``remove-member`` and a restart both the password and the certificate are
refused (the certificate by the revocation list).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from core.register import load_register
from testkit.servers import free_port, require_binary, wait_for_port

pytestmark = pytest.mark.integration
README = Path(__file__).resolve().parents[2] / "broker_config" / "README.md"
TIMEOUT = 10.0


def readme_commands() -> list[list[str]]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Setting up a hub without Docker", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, f"{README}: no ```bash block under 'Setting up a hub without Docker'"
    joined = block.group(1).replace("\\\n", " ")
    return [shlex.split(line) for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Not pytest's tmp_path: its parent is private to the user, and the broker runs as "mosquitto" under root.
    path = Path(tempfile.mkdtemp(prefix="mdh-readme-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _client(port: int, ca: Path, user: str | None, password: str | None, cert: tuple[Path, Path] | None = None):  # type: ignore[no-untyped-def]
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = False  # the certificate names hub.metalldaten.example; the chain is still verified
    if cert:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="readme", protocol=mqtt.MQTTv5)
    c.tls_set_context(ctx)
    if user:
        c.username_pw_set(user, password)
    result: dict[str, object] = {}
    answered = threading.Event()

    def on_connect(_c: object, _u: object, _f: object, rc: mqtt.ReasonCode, _p: object) -> None:
        result["rc"] = rc.value
        answered.set()

    c.on_connect = on_connect
    c.on_disconnect = lambda *_a: answered.set()
    c.on_connect_fail = lambda *_a: answered.set()
    try:
        c.connect("127.0.0.1", port)
    except (OSError, ssl.SSLError):
        return c, None
    c.loop_start()
    answered.wait(TIMEOUT)
    return c, result.get("rc")


def test_documented_steps_work_as_written(workdir: Path) -> None:
    require_binary("mosquitto")
    require_binary("mosquitto_passwd")
    commands = readme_commands()
    assert [c[0] for c in commands] == ["metalldaten"] * 4 + ["mosquitto"], commands
    assert commands[3][:2] == ["metalldaten", "broker"] and commands[3][2] == "write-config"
    port, mtls, ingest = free_port(), free_port(), free_port()
    commands[3] += ["--port", str(port), "--mtls-port", str(mtls), "--ingest-port", str(ingest), "--bind", "127.0.0.1"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    outputs = []
    for cmd in commands[:-1]:
        done = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, f"README step {shlex.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
        outputs.append(done.stdout)
    ingest_password = next(
        line.split("=", 1)[1] for line in outputs[1].splitlines() if line.startswith("MDH_HUB__INGEST__PASSWORD=")
    )
    member = load_register(workdir / "var/members.toml").member[0].pseudonym
    kit = workdir / "var/kits" / member
    member_password = (kit / "gateway.env").read_text().split("=", 1)[1].strip()
    assert tomllib.loads((kit / "gateway-uplink.toml").read_text())["identity"]["member"] == member
    ca = workdir / "var/broker/certs/ca.pem"

    def start() -> subprocess.Popen[bytes]:
        log = (workdir / "mosquitto.log").open("ab")
        proc = subprocess.Popen(commands[-1], cwd=workdir, stdout=log, stderr=log)
        try:
            for p in (port, mtls, ingest):
                wait_for_port(p, proc=proc)
        except RuntimeError as exc:
            raise AssertionError(f"{exc}\n{(workdir / 'mosquitto.log').read_text()}") from exc
        return proc

    def stop(proc: subprocess.Popen[bytes]) -> None:
        proc.terminate()
        proc.wait(TIMEOUT)

    proc = start()
    clients: list[mqtt.Client] = []
    try:
        got = threading.Event()
        ing, rc = _client(ingest, ca, "ingestor", ingest_password)
        clients.append(ing)
        assert rc == 0, f"ingestor login refused: {rc}\n{(workdir / 'mosquitto.log').read_text()}"
        ing.on_message = lambda *_a: got.set()
        subscribed = threading.Event()
        ing.on_subscribe = lambda *_a: subscribed.set()
        ing.subscribe("$share/ingest/mdh/v1/+/+/samples", qos=1)
        assert subscribed.wait(TIMEOUT)
        gw, rc = _client(port, ca, member, member_password)
        clients.append(gw)
        assert rc == 0, f"member kit login refused: {rc}"
        gw.publish(f"mdh/v1/{member}/g-0000000a/samples", b"x", qos=1)
        assert got.wait(TIMEOUT), "the ingestor login did not receive the member's message"
        cert = (kit / f"{member}.pem", kit / f"{member}.key")
        c, rc = _client(mtls, ca, None, None, cert)
        clients.append(c)
        assert rc == 0, f"client certificate refused before removal: {rc}"
    finally:
        for c in clients:
            c.disconnect()
            c.loop_stop()
        stop(proc)

    removed = subprocess.run(
        shlex.split(
            "metalldaten broker remove-member --register var/members.toml --passwd var/broker/passwd "
            f"--audit-log var/audit.log {member}"
        ),
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert removed.returncode == 0 and "client certificates revoked: 1" in removed.stdout, (
        removed.stdout + removed.stderr
    )
    audit = [json.loads(line) for line in (workdir / "var/audit.log").read_text().splitlines()]
    assert [(e["action"], e["member"]) for e in audit] == [("member.remove", member)], "the removal left no audit line"
    proc = start()
    try:
        c, rc = _client(port, ca, member, member_password)
        c.loop_stop()
        assert rc != 0, "a removed member's password still works"
        c, rc = _client(mtls, ca, None, None, cert)
        c.loop_stop()
        assert rc != 0, "a removed member's client certificate still works (revocation list not read)"
    finally:
        stop(proc)
