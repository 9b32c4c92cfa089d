"""Files the trustee keeps for the broker: the Mosquitto password file, the rendered configuration, and the
gateway connection settings handed to a member. Pure text building plus thin wrappers around ``mosquitto_passwd``."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

#: The templates shipped in broker_config/ (next to the metalldaten package in a source checkout).
TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "broker_config"
_IMAGE_CONFIG = "/mosquitto/config"
_IMAGE_DATA = "/mosquitto/data"


class BrokerToolError(RuntimeError):
    """``mosquitto_passwd`` is missing or failed."""


def _mosquitto_passwd() -> str:
    path = shutil.which("mosquitto_passwd") or (
        "/usr/bin/mosquitto_passwd" if os.path.exists("/usr/bin/mosquitto_passwd") else None
    )
    if path is None:
        raise BrokerToolError("mosquitto_passwd is not installed (Debian: apt-get install mosquitto)")
    return path


def set_password(passwd_file: Path, login: str, password: str) -> None:
    """Add or replace ``login`` in the Mosquitto password file (hashed by ``mosquitto_passwd -b``)."""
    passwd_file.parent.mkdir(parents=True, exist_ok=True)
    args = [_mosquitto_passwd()]
    if not passwd_file.exists():
        args.append("-c")
    # The password is on mosquitto_passwd's command line for a moment: run this on the trustee's machine only.
    result = subprocess.run(
        [*args, "-b", str(passwd_file), login, password], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise BrokerToolError(f"mosquitto_passwd failed for {login}: {result.stderr.strip() or result.stdout.strip()}")
    os.chmod(passwd_file, 0o600)


def delete_login(passwd_file: Path, login: str) -> bool:
    """Remove ``login`` from the password file; ``False`` if it was not there."""
    if not passwd_file.exists() or login not in logins(passwd_file):
        return False
    result = subprocess.run(
        [_mosquitto_passwd(), "-D", str(passwd_file), login], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise BrokerToolError(f"mosquitto_passwd -D failed for {login}: {result.stderr.strip()}")
    return True


def logins(passwd_file: Path) -> list[str]:
    if not passwd_file.exists():
        return []
    return [line.split(":", 1)[0] for line in passwd_file.read_text(encoding="utf-8").splitlines() if ":" in line]


def render_config(
    template: str,
    *,
    config_dir: Path,
    data_dir: Path,
    port: int = 8883,
    mtls_port: int | None = 8884,
    bind: str | None = None,
    run_as_current_user: bool = False,
) -> str:
    """The shipped mosquitto.conf with its paths, ports and (optionally) bind address replaced."""
    text = template.replace(_IMAGE_CONFIG, str(config_dir).rstrip("/")).replace(_IMAGE_DATA, str(data_dir).rstrip("/"))
    host = f" {bind}" if bind else ""
    text = text.replace("\nlistener 8883\n", f"\nlistener {port}{host}\n")
    if mtls_port is None:
        start = text.index("\nlistener 8884\n")
        end = text.index("use_identity_as_username true\n", start) + len("use_identity_as_username true\n")
        text = text[:start] + "\n" + text[end:]
    else:
        text = text.replace("\nlistener 8884\n", f"\nlistener {mtls_port}{host}\n")
    if run_as_current_user and os.geteuid() == 0:
        # As root Mosquitto drops to the "mosquitto" user, which may not read these directories.
        text = "user root\n" + text
    return text


@dataclass(frozen=True)
class GatewayConnection:
    member: str
    host: str
    port: int
    ca_file: str
    client_cert: str | None = None
    client_key: str | None = None


def gateway_snippet(c: GatewayConnection) -> str:
    """The ``[identity]`` member and ``[uplink]`` keys of a gateway configuration (gateway/gateway.example.toml)."""
    lines = [
        f"# Connection settings for member {c.member}, issued by the hub's trustee.",
        "# Merge into the gateway configuration; the password goes into the environment (gateway.env).",
        "[identity]",
        f'member = "{c.member}"',
        "",
        "[uplink]",
        f'host = "{c.host}"',
        f"port = {c.port}",
        'protocol = "5"',
        "tls = true",
        f'ca_file = "{c.ca_file}"',
    ]
    if c.client_cert and c.client_key:
        lines += [f'client_cert = "{c.client_cert}"', f'client_key = "{c.client_key}"']
    return "\n".join(lines) + "\n"


def write_secret_file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(path, 0o600)
