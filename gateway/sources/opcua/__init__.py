"""OPC UA source plugin: ``[[opcua]]`` settings, the asyncua client runner and its security set-up."""

from .config import OpcuaGroup, OpcuaNode, OpcuaSource, SecurityMode, SecurityPolicy
from .resolve import Binding
from .source import OpcuaSourceRunner

__all__ = ["Binding", "OpcuaGroup", "OpcuaNode", "OpcuaSource", "OpcuaSourceRunner", "SecurityMode", "SecurityPolicy"]
