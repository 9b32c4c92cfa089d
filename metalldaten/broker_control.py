"""The trustee's live line to the broker: the dynamic-security plugin's control topic.

Mosquitto 2.0 reads the plugin's file and the revocation list at start only, so editing
them changes nothing in a running broker. The plugin takes commands on
``$CONTROL/dynamic-security/v1`` and answers on ``$CONTROL/dynamic-security/v1/response``;
``disableClient`` refuses a login's password from its next CONNECT on and disconnects every
client connected with it at once; ``removeClientRole`` takes its rights, which is what stops a
client certificate's holder (asked for no password). ``deleteClient`` would not do: a deleted
login falls back to the password file, which the broker re-reads only on SIGHUP. Only the trustee's
admin login (:data:`ADMIN_LOGIN`, ``metalldaten broker add-admin``) may use the topic.

The plugin writes its file after every command; the caller regenerates the file from the
password file afterwards (:func:`metalldaten.broker_files.write_access`), so the files stay
the source of truth for the next start.
"""

from __future__ import annotations

import json
import os
import ssl
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from core.errors import MdhError

#: The trustee's admin login on the broker: the only one allowed on the control topic.
ADMIN_LOGIN = "trustee"
CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = CONTROL_TOPIC + "/response"
#: Where the trustee's commands find the admin login's password.
ADMIN_PASSWORD_ENV = "MDH_BROKER_ADMIN_PASSWORD"  # noqa: S105 -- the variable's name, not a secret


class BrokerControlError(MdhError, RuntimeError):
    """The broker's control topic could not be reached, or a command failed."""

    exit_code = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlEndpoint:
    host: str
    port: int
    password: str
    ca_file: Path | None = None
    username: str = ADMIN_LOGIN
    timeout_s: float = 10.0

    def __repr__(self) -> str:  # never show the password
        return f"ControlEndpoint(host={self.host!r}, port={self.port}, username={self.username!r})"


def send_commands(endpoint: ControlEndpoint, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Send ``commands`` in one control message and return the plugin's answers (one per command).

    Raises :class:`BrokerControlError` if the broker cannot be reached, refuses the login, or does not
    answer within the timeout. Each answer may carry an ``error`` (the caller decides what is fatal).
    """
    connected = threading.Event()
    subscribed = threading.Event()
    answered = threading.Event()
    state: dict[str, Any] = {}
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"{endpoint.username}-control-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5,
    )
    if endpoint.ca_file is not None:
        client.tls_set(ca_certs=str(endpoint.ca_file), cert_reqs=ssl.CERT_REQUIRED)
    client.username_pw_set(endpoint.username, endpoint.password)

    def on_connect(_c: object, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        state["connect_rc"] = rc.value
        connected.set()

    def on_subscribe(_c: object, _u: object, _mid: int, codes: list[ReasonCode], _p: object) -> None:
        state["suback"] = [c.value for c in codes]
        subscribed.set()

    def on_message(_c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        try:
            state["responses"] = json.loads(message.payload).get("responses", [])
        except ValueError:
            state["responses"] = [{"error": "the broker's answer is not JSON"}]
        answered.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    try:
        client.connect(endpoint.host, endpoint.port)
    except (OSError, ssl.SSLError) as exc:
        raise BrokerControlError(f"cannot reach the broker at {endpoint.host}:{endpoint.port}: {exc}") from exc
    client.loop_start()
    try:
        if not connected.wait(endpoint.timeout_s) or state.get("connect_rc") != 0:
            raise BrokerControlError(
                f"the broker at {endpoint.host}:{endpoint.port} refused the admin login {endpoint.username} "
                f"(CONNACK {state.get('connect_rc', 'none')}); is it made with `metalldaten broker add-admin` "
                "and the broker restarted since?"
            )
        client.subscribe(RESPONSE_TOPIC, qos=1)
        if not subscribed.wait(endpoint.timeout_s) or any(code >= 0x80 for code in state.get("suback", [0x80])):
            raise BrokerControlError(f"the broker refused {endpoint.username} the control topic's answers")
        client.publish(CONTROL_TOPIC, json.dumps({"commands": commands}), qos=1).wait_for_publish(endpoint.timeout_s)
        if not answered.wait(endpoint.timeout_s):
            raise BrokerControlError(f"the broker did not answer on {RESPONSE_TOPIC} within {endpoint.timeout_s:g} s")
    finally:
        client.disconnect()
        client.loop_stop()
    responses: list[dict[str, Any]] = state["responses"]
    return responses


def disable_logins(endpoint: ControlEndpoint, logins: list[str], role: str) -> dict[str, str | None]:
    """Disable ``logins`` in the running broker and take ``role`` from them.

    ``disableClient`` refuses the password from the next CONNECT on and disconnects every client connected
    with the login at once. A certificate's holder is not asked for a password (its CN is the login), so
    the plugin lets it connect again; without the role it may then publish and subscribe nothing. Returns
    per login ``None`` or the plugin's first error (``Client not found`` for a login added after the
    broker's last start, which the broker never let in either)."""
    commands = [
        command
        for login in logins
        for command in (
            {"command": "disableClient", "username": login},
            {"command": "removeClientRole", "username": login, "rolename": role},
        )
    ]
    return _per_login(logins, send_commands(endpoint, commands) if logins else [])


def enable_logins(endpoint: ControlEndpoint, logins: list[str], role: str) -> dict[str, str | None]:
    """Undo :func:`disable_logins`: the role back, then the login enabled."""
    commands = [
        command
        for login in logins
        for command in (
            {"command": "addClientRole", "username": login, "rolename": role},
            {"command": "enableClient", "username": login},
        )
    ]
    return _per_login(logins, send_commands(endpoint, commands) if logins else [])


def _per_login(logins: list[str], answers: list[dict[str, Any]]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for i, login in enumerate(logins):
        pair = answers[2 * i : 2 * i + 2]
        errors = [str(a.get("error")) for a in pair if isinstance(a, dict) and a.get("error")]
        out[login] = errors[0] if errors else (None if len(pair) == 2 else "no answer")
    return out


def control_endpoint(host: str, port: int | None, ca: Path | None) -> ControlEndpoint | None:
    """The broker's control topic at ``host:port`` (``None`` without a port), reached with the admin login's
    password from :data:`ADMIN_PASSWORD_ENV`."""
    if port is None:
        return None
    password = os.environ.get(ADMIN_PASSWORD_ENV)
    if not password:
        raise BrokerControlError(
            f"--broker-port needs the admin login's password in {ADMIN_PASSWORD_ENV} (from `broker add-admin`)"
        )
    return ControlEndpoint(host=host, port=port, password=password, ca_file=ca)
