"""Settings of the MQTT source: ``[[mqtt]]`` with its ``[[mqtt.topics]]``.

The sample ``sample.toml`` beside this module shows every key; the plugin's README explains them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from core.mqtt import MqttEndpoint
from wire.catalog import ASSET_CLASSES


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttTopic(_Section):
    filter: str = Field(min_length=1, description="Topic filter with + and # wildcards")
    format: Literal["number", "json", "sparkplug"] = "number"
    asset_level: int | None = Field(default=None, ge=0, description="Topic level (0-based) holding the asset id")
    signal_level: int | None = Field(default=None, ge=0, description="Topic level holding the local signal name")
    asset: str | None = Field(default=None, description="Fixed asset id when no level holds it")
    signal: str | None = Field(default=None, description="Fixed local signal name when no level holds it")
    value_path: str = Field(default="value", description="JSON: dotted path of the value")
    ts_path: str | None = Field(default=None, description="JSON: dotted path of the timestamp")
    ts_unit: Literal["s", "ms", "us", "ns", "iso"] = "ms"
    asset_class: str | None = None

    @model_validator(mode="after")
    def _mapping(self) -> MqttTopic:
        if self.format != "sparkplug":
            if self.asset_level is None and self.asset is None:
                raise ValueError("give 'asset_level' or 'asset'")
            if self.signal_level is None and self.signal is None:
                raise ValueError("give 'signal_level' or 'signal'")
        if self.asset_class is not None and self.asset_class not in ASSET_CLASSES:
            raise ValueError(f"asset_class must be one of {', '.join(ASSET_CLASSES)}")
        return self


class MqttSource(_Section):
    name: str = Field(min_length=1)
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    client_id: str | None = Field(default=None, description="Fixed client id (persistent session); derived if unset")
    ca_file: Path | None = None
    keepalive_s: int = Field(default=30, ge=5)
    backoff_min_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=30.0, gt=0)
    topics: list[MqttTopic] = Field(min_length=1)

    def endpoint(self, client_id: str) -> MqttEndpoint:
        """The local broker: TLS when a CA is given; a persistent session (fixed client id, clean session off)
        and manual acknowledgements, so that a message the gateway has not buffered yet is delivered again."""
        return MqttEndpoint(
            name=f"source {self.name}",
            host=self.host,
            port=self.port,
            client_id=client_id,
            username=self.username,
            password=self.password.get_secret_value() if self.password else None,
            tls=self.ca_file is not None,
            ca_file=self.ca_file,
            clean_session=False,
            keepalive_s=self.keepalive_s,
            backoff_min_s=self.backoff_min_s,
            backoff_max_s=self.backoff_max_s,
            manual_ack=True,
        )
