"""Files the trustee keeps for the broker: the Mosquitto password file, the rendered configuration, and the
gateway connection settings handed to a member. Pure text building plus thin wrappers around ``mosquitto_passwd``."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from core.errors import MdhError
from wire.model import MEMBER_RE

from .broker_control import ADMIN_LOGIN

#: The templates of the package ``broker_config`` (package data: found the same way in a wheel and a checkout).
TEMPLATE_DIR = Path(str(resources.files("broker_config")))
_IMAGE_CONFIG = "/mosquitto/config"
_IMAGE_DATA = "/mosquitto/data"
_IMAGE_PLUGIN = "/usr/lib/mosquitto_dynamic_security.so"
#: The live access-control file, written next to the password file.
ACCESS_FILE = "dynamic-security.json"
#: Where Debian (and the container image) install the dynamic-security plugin.
PLUGIN_PATHS = (
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
    _IMAGE_PLUGIN,
)
#: A gateway login: the member pseudonym, optionally followed by ``.`` and a gateway label.
GATEWAY_LABEL_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
#: The user the Debian package (and the container image) run Mosquitto as once it has read its configuration.
BROKER_USER = "mosquitto"


class BrokerToolError(MdhError, RuntimeError):
    """``mosquitto_passwd`` is missing or failed."""

    exit_code = 2


def _mosquitto_passwd() -> str:
    path = shutil.which("mosquitto_passwd") or (
        "/usr/bin/mosquitto_passwd" if os.path.exists("/usr/bin/mosquitto_passwd") else None
    )
    if path is None:
        raise BrokerToolError("mosquitto_passwd is not installed (Debian: apt-get install mosquitto)")
    return path


def member_of_login(login: str) -> str | None:
    """The member a gateway login belongs to (``m-7f3a9c`` and ``m-7f3a9c.line-2`` both give ``m-7f3a9c``);
    ``None`` for a service login (ingestor)."""
    member, _, label = login.partition(".")
    if not MEMBER_RE.match(member):
        return None
    if label and not GATEWAY_LABEL_RE.match(label):
        return None
    return member


def gateway_login(member: str, label: str | None) -> str:
    if not MEMBER_RE.match(member):
        raise ValueError(f"{member!r} is not a member pseudonym (expected {MEMBER_RE.pattern})")
    if label is None:
        return member
    if not GATEWAY_LABEL_RE.match(label):
        raise ValueError(f"gateway label {label!r} must match {GATEWAY_LABEL_RE.pattern}")
    return f"{member}.{label}"


def render_access(template: str, logins: list[str]) -> str:
    """The dynamic-security plugin's file for ``logins``: every gateway login gets its member's role and is
    bound to the client id equal to the login; the trustee's admin login gets the admin role (the control topic
    only); every other service login gets the ingestor role (not bound)."""
    data: dict[str, Any] = json.loads(template)
    data.pop("//", None)
    roles: list[dict[str, Any]] = data.pop("roles")
    member_role = next(r for r in roles if r["rolename"] == "member-{member}")
    out_roles = [r for r in roles if r is not member_role]
    clients: list[dict[str, Any]] = []
    members: list[str] = []
    for login in sorted(set(logins)):
        member = member_of_login(login)
        if login == ADMIN_LOGIN:
            clients.append({"username": login, "roles": [{"rolename": "trustee-admin"}]})
            continue
        if member is None:
            if login.startswith("m-"):
                continue  # malformed gateway login: no access at all
            clients.append({"username": login, "roles": [{"rolename": "ingestor"}]})
            continue
        if member not in members:
            members.append(member)
        clients.append({"username": login, "clientid": login, "roles": [{"rolename": f"member-{member}"}]})
    for member in members:
        role = json.loads(json.dumps(member_role).replace("{member}", member))
        out_roles.append(role)
    data.update(clients=clients, groups=[], roles=out_roles)
    return json.dumps(data, indent=2) + "\n"


def write_access(passwd_file: Path) -> Path:
    """Regenerate the access-control file next to ``passwd_file`` from the logins in it."""
    template = (TEMPLATE_DIR / ACCESS_FILE).read_text(encoding="utf-8")
    target = passwd_file.parent / ACCESS_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(render_access(template, logins(passwd_file)), encoding="utf-8")
    os.chmod(tmp, 0o600)
    tmp.replace(target)
    share_with_broker(target)
    return target


def share_with_broker(path: Path, *, writable: bool = False) -> None:
    """Run as root, Mosquitto reads its files after dropping to the ``mosquitto`` user: give that user's group
    read access (and for ``writable`` directories, ownership) of a secret file. A no-op for other users, who
    run the broker as themselves."""
    if os.geteuid() != 0:
        return
    try:
        import pwd

        user = pwd.getpwnam(BROKER_USER)
    except KeyError:
        return
    if writable:
        os.chown(path, user.pw_uid, user.pw_gid)
        return
    os.chown(path, 0, user.pw_gid)
    os.chmod(path, 0o640 if path.is_file() else 0o750)


def find_plugin() -> str:
    """The installed dynamic-security plugin (Debian: package mosquitto)."""
    for path in PLUGIN_PATHS:
        if os.path.exists(path):
            return path
    raise BrokerToolError(
        "mosquitto_dynamic_security.so is not installed (Debian: apt-get install mosquitto); looked in "
        + ", ".join(PLUGIN_PATHS)
    )


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
    share_with_broker(passwd_file)
    write_access(passwd_file)


def delete_login(passwd_file: Path, login: str) -> bool:
    """Remove ``login`` from the password file; ``False`` if it was not there."""
    if not passwd_file.exists() or login not in logins(passwd_file):
        return False
    result = subprocess.run(
        [_mosquitto_passwd(), "-D", str(passwd_file), login], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise BrokerToolError(f"mosquitto_passwd -D failed for {login}: {result.stderr.strip()}")
    share_with_broker(passwd_file)
    write_access(passwd_file)
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
    ingest_port: int | None = 8885,
    bind: str | None = None,
    plugin: str | None = None,
) -> str:
    """The shipped mosquitto.conf with its paths, ports, plugin path and (optionally) bind address replaced.

    ``mtls_port`` / ``ingest_port`` ``None`` leave that listener out (ingestors then use ``port``, where their
    client id is their login)."""
    text = template.replace(_IMAGE_CONFIG, str(config_dir).rstrip("/")).replace(_IMAGE_DATA, str(data_dir).rstrip("/"))
    if plugin is not None:
        text = text.replace(f"plugin {_IMAGE_PLUGIN}\n", f"plugin {plugin}\n")
    host = f" {bind}" if bind else ""
    text = text.replace("\nlistener 8883\n", f"\nlistener {port}{host}\n")
    for default, chosen in ((8884, mtls_port), (8885, ingest_port)):
        if chosen is None:
            text = _drop_listener(text, default)
        else:
            text = text.replace(f"\nlistener {default}\n", f"\nlistener {chosen}{host}\n")
    return text


def _drop_listener(text: str, port: int) -> str:
    """Remove ``listener <port>`` and its settings, with the comment block right above it."""
    lines = text.split("\n")
    i = lines.index(f"listener {port}")
    start = i
    while start > 0 and lines[start - 1].startswith("#") and not lines[start - 1].startswith("# --"):
        start -= 1
    end = i + 1
    while end < len(lines) and lines[end].strip() and not lines[end].startswith("#"):
        end += 1
    return "\n".join(lines[:start] + lines[end:])


@dataclass(frozen=True)
class GatewayConnection:
    member: str
    host: str
    port: int
    ca_file: str
    client_cert: str | None = None
    client_key: str | None = None
    #: The gateway's login when it is not the member pseudonym (a further gateway, ``<member>.<label>``).
    username: str | None = None


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
        *([f'username = "{c.username}"'] if c.username else []),
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
