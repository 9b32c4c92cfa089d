"""Pieces every part of the hub shares: configuration files, the member register, the error root,
back-off and the paho→asyncio MQTT bridge. Imports nothing of ours except the wire contract."""

from .backoff import Backoff
from .configfile import ConfigError, FileSettings, load_settings, settings_from_dict
from .errors import MdhError
from .mqtt import Message, MqttClient, MqttEndpoint, MqttError
from .register import DEFAULT_EMISSION_FACTOR, Member, Register, RegisterFile, dump_register, load_register

__all__ = [
    "DEFAULT_EMISSION_FACTOR",
    "Backoff",
    "ConfigError",
    "FileSettings",
    "MdhError",
    "Member",
    "Message",
    "MqttClient",
    "MqttEndpoint",
    "MqttError",
    "Register",
    "RegisterFile",
    "dump_register",
    "load_register",
    "load_settings",
    "settings_from_dict",
]
