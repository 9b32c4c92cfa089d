"""Gateway settings: one :class:`GatewaySettings` built from a TOML file with environment overrides.

Load with :func:`load_gateway_settings` (``MDH_GATEWAY__UPLINK__HOST=...`` overrides
``[uplink] host``). A wrong file fails at start with :class:`core.configfile.ConfigError`
naming the file, the key and what was expected. The example ``gateway/gateway.example.toml``
shows every section; each source plugin (``gateway/sources/<kind>/``) defines and documents its own section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from core.configfile import FileSettings, load_settings, with_paths_resolved
from core.mqtt import MqttEndpoint
from wire.catalog import ASSET_CLASSES
from wire.model import MEMBER_RE

from .policy import PolicySettings
from .sources.mqtt.config import MqttSource
from .sources.opcua.config import OpcuaSource


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IdentitySettings(_Section):
    member: str = Field(description="Member pseudonym assigned by the trustee (m-<hex>); the broker login")
    gateway_name: str = Field(min_length=1, description="Name of this gateway in clear; sent only as a g- pseudonym")
    key_file: Path = Field(description="Key file made by 'metalldaten gateway keygen'")
    journal_file: Path | None = Field(default=None, description="Local journal of identifiers seen (for reveal)")
    pseudonym_hex: int = Field(default=16, ge=8, le=32)

    @field_validator("member")
    @classmethod
    def _member(cls, v: str) -> str:
        if not MEMBER_RE.fullmatch(v):
            raise ValueError("must be a member pseudonym: 'm-' followed by 6-32 lowercase hex digits")
        return v


class AssetSettings(_Section):
    id: str = Field(min_length=1, description="Machine id in clear (serial number, inventory number)")
    model: str | None = None
    asset_class: str | None = None

    @field_validator("asset_class")
    @classmethod
    def _cls(cls, v: str | None) -> str | None:
        if v is not None and v not in ASSET_CLASSES:
            raise ValueError(f"must be one of {', '.join(ASSET_CLASSES)}")
        return v


class BufferSettings(_Section):
    path: Path = Path("buffer.sqlite")
    max_bytes: int = Field(default=512 * 1024 * 1024, ge=64 * 1024)
    overflow: Literal["drop_oldest", "drop_newest"] = "drop_oldest"
    flush_interval_s: float = Field(default=0.1, gt=0, le=5)
    live_window_s: float = Field(default=10.0, gt=0, description="Chunks younger than this count as live data")


class UplinkSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8883, ge=1, le=65535)
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    tls: bool = True
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    #: Broker login; default the member pseudonym. A member's further gateways have their own logins
    #: (``<member>.<label>``, from the trustee's ``add-gateway``): the broker binds each login to one connection.
    username: str | None = None
    password: SecretStr | None = None
    qos: Literal[1] = 1
    batch_size: int = Field(default=1000, ge=1, le=100_000)
    batch_time_s: float = Field(default=0.25, gt=0, le=60)
    compression_level: int = Field(default=3, ge=1, le=19)
    max_inflight: int = Field(default=16, ge=1, le=1000)
    keepalive_s: int = Field(default=30, ge=5)
    backoff_min_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=30.0, gt=0)
    heartbeat_s: float = Field(default=60.0, gt=0, le=290, description="Repeat current values at least this often")
    drain_timeout_s: float = Field(default=10.0, ge=0, description="On SIGTERM, wait this long for PUBACKs")

    def endpoint(self, *, member: str, gateway: str) -> MqttEndpoint:
        """The hub broker: login the member pseudonym unless set, client id from pseudonyms only."""
        return MqttEndpoint(
            name="uplink",
            host=self.host,
            port=self.port,
            client_id=f"{member}-{gateway}",
            username=self.username or member,
            password=self.password.get_secret_value() if self.password else None,
            tls=self.tls,
            ca_file=self.ca_file,
            client_cert=self.client_cert,
            client_key=self.client_key,
            protocol=self.protocol,
            clean_session=True,
            keepalive_s=self.keepalive_s,
            backoff_min_s=self.backoff_min_s,
            backoff_max_s=self.backoff_max_s,
        )

    @model_validator(mode="after")
    def _cert_pair(self) -> UplinkSettings:
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("client_cert and client_key go together")
        return self


class HealthSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=9108, ge=0, le=65535, description="0 turns the endpoint off")


class GatewaySettings(FileSettings):
    """All settings of one gateway."""

    model_config = SettingsConfigDict(
        env_prefix="MDH_GATEWAY__", extra="forbid", env_nested_delimiter="__", validate_default=True
    )

    identity: IdentitySettings
    assets: list[AssetSettings] = Field(default_factory=list)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    opcua: list[OpcuaSource] = Field(default_factory=list)
    mqtt: list[MqttSource] = Field(default_factory=list)
    buffer: BufferSettings = Field(default_factory=BufferSettings)
    uplink: UplinkSettings = Field(default_factory=UplinkSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)

    @model_validator(mode="after")
    def _unique_names(self) -> GatewaySettings:
        names = [s.name for s in self.opcua] + [s.name for s in self.mqtt]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"source names must be unique; repeated: {dup}")
        slow = sorted(s.name for s in self.opcua if s.audit_interval_s >= self.uplink.heartbeat_s)
        if slow:
            raise ValueError(
                f"opcua sources {slow}: audit_interval_s must be shorter than uplink.heartbeat_s (or 0 to turn the"
                " audit off): the heartbeat repeats only values an audit confirmed within its period"
            )
        ids = [a.id for a in self.assets]
        dup = sorted({n for n in ids if ids.count(n) > 1})
        if dup:
            raise ValueError("asset ids must be unique (a repeated id is configured)")
        return self

    def resolve_paths(self, base: Path) -> GatewaySettings:
        """A copy whose relative paths are taken relative to the configuration file's folder."""
        opcua_paths = ("client_cert", "client_key", "user_cert", "user_key", "server_cert")
        return with_paths_resolved(
            self,
            base,
            identity=with_paths_resolved(self.identity, base, ("key_file", "journal_file")),
            buffer=with_paths_resolved(self.buffer, base, ("path",)),
            uplink=with_paths_resolved(self.uplink, base, ("ca_file", "client_cert", "client_key")),
            opcua=[with_paths_resolved(s, base, opcua_paths) for s in self.opcua],
            mqtt=[with_paths_resolved(s, base, ("ca_file",)) for s in self.mqtt],
        )

    def asset_classes(self) -> dict[str, str]:
        """Clear asset id -> asset class, from [[assets]] and the policy's model table."""
        out: dict[str, str] = {}
        for a in self.assets:
            if a.asset_class is not None:
                out[a.id] = a.asset_class
            elif a.model is not None:
                out[a.id] = self.policy.asset_classes.get(a.model, self.policy.default_asset_class)
        return out

    def known_identifiers(self) -> list[tuple[str, str]]:
        """Clear identifiers named by this configuration, as (kind, id), for reveal."""
        out = [("g", self.identity.gateway_name)]
        out += [("a", a.id) for a in self.assets]
        out += [("a", n.asset) for s in self.opcua for n in s.nodes]
        out += [("a", t.asset) for s in self.mqtt for t in s.topics if t.asset is not None]
        return out


def load_gateway_settings(path: Path | str) -> GatewaySettings:
    """Load and validate a gateway configuration file (environment variables override it)."""
    return load_settings(GatewaySettings, path)
