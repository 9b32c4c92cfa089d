"""OPC UA source plugin: ``[[opcua]]`` settings, the asyncua client runner and its security set-up."""

from .config import OpcuaGroup, OpcuaNode, OpcuaSource, SecurityMode, SecurityPolicy
from .source import Binding, OpcuaSourceRunner

__all__ = ["Binding", "OpcuaGroup", "OpcuaNode", "OpcuaSource", "OpcuaSourceRunner", "SecurityMode", "SecurityPolicy"]
