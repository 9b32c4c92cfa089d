"""Pieces every part of the hub shares: configuration files, the member register, the error root,
back-off and the paho→asyncio MQTT bridge. Imports nothing of ours except the wire contract."""

from .backoff import Backoff
from .configfile import ConfigError, FileSettings, load_settings, settings_from_dict
from .consent import CATEGORIES, STANDARD_PURPOSES, Category, Permission, odrl_policy
from .errors import MdhError
from .mqtt import Message, MqttClient, MqttEndpoint, MqttError
from .register import DEFAULT_EMISSION_FACTOR, Member, Register, RegisterFile, dump_register, load_register

__all__ = [
    "CATEGORIES",
    "DEFAULT_EMISSION_FACTOR",
    "STANDARD_PURPOSES",
    "Backoff",
    "Category",
    "ConfigError",
    "FileSettings",
    "MdhError",
    "Member",
    "Message",
    "MqttClient",
    "MqttEndpoint",
    "MqttError",
    "Permission",
    "Register",
    "RegisterFile",
    "dump_register",
    "load_register",
    "load_settings",
    "odrl_policy",
    "settings_from_dict",
]
