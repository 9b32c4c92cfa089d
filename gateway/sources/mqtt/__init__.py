"""MQTT source plugin: ``[[mqtt]]`` settings and the runner for a factory's local broker (number, JSON, Sparkplug B)."""

from .config import MqttSource, MqttTopic
from .source import MqttSourceRunner

__all__ = ["MqttSource", "MqttSourceRunner", "MqttTopic"]
