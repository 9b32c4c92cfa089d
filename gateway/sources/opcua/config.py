"""Settings of the OPC UA source: ``[[opcua]]`` with its ``[[opcua.groups]]`` and ``[[opcua.nodes]]``.

The sample ``sample.toml`` beside this module shows every key; the plugin's README explains them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from .events import EventSettings


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


SecurityPolicy = Literal["None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"]
SecurityMode = Literal["None", "Sign", "SignAndEncrypt"]


class OpcuaGroup(_Section):
    name: str
    mode: Literal["subscription", "poll"] = "subscription"
    publishing_interval_ms: float = Field(default=500, gt=0)
    sampling_interval_ms: float = Field(default=250, ge=0)
    queue_size: int | None = Field(
        default=None, ge=1, description="Monitored item queue; at least what one publishing interval samples"
    )
    #: OPC UA DataChangeTrigger: "status_value_timestamp" also reports a value written again with a new source
    #: timestamp (a controller that re-stamps an unchanged state, or replays its past).
    trigger: Literal["status_value", "status_value_timestamp"] = "status_value"
    deadband_abs: float | None = Field(default=None, ge=0)
    deadband_pct: float | None = Field(default=None, ge=0, le=100)
    poll_interval_s: float = Field(default=1.0, gt=0)

    def effective_queue_size(self) -> int:
        """The queue each monitored item asks for: enough for every sample of one publishing interval, twice
        (a publish response that comes late must not overflow it), at least the configured size, at most 1000."""
        sampling = self.sampling_interval_ms or 50.0  # 0 = the server's fastest rate; assume 50 ms
        needed = 2 * math.ceil(self.publishing_interval_ms / sampling) + 1
        return min(1000, max(self.queue_size or 0, needed))

    @model_validator(mode="after")
    def _one_deadband(self) -> OpcuaGroup:
        if self.deadband_abs is not None and self.deadband_pct is not None:
            raise ValueError("set deadband_abs or deadband_pct, not both")
        return self


class BackfillSettings(_Section):
    """``[opcua.backfill]``: read gaps from the server's history on (re)connect (see ``backfill.py``)."""

    enabled: bool = Field(default=False, description="Read gaps from the server's history on (re)connect")
    max_gap_s: float = Field(default=3600.0, gt=0, le=31 * 86400, description="Read at most this far back")
    values_per_request: int = Field(default=1000, ge=1, le=100_000, description="NumValuesPerNode per request")
    nodes_per_request: int = Field(default=50, ge=1, le=1000, description="Nodes per HistoryRead request")
    max_requests_per_s: float = Field(default=20.0, gt=0, le=1000, description="HistoryRead requests per second")


class OpcuaNode(_Section):
    asset: str = Field(min_length=1, description="Clear machine id (an [[assets]] id or any id)")
    signal: str = Field(min_length=1, description="Local signal name; the policy decides if and how it leaves")
    node: str | None = Field(default=None, description="NodeId with namespace URI: 'nsu=URI;s=Name' (or i=, g=, b=)")
    path: str | None = Field(default=None, description="Browse path below Objects: 'Machines/Press7/Power'")
    path_nsu: str | None = Field(default=None, description="Namespace URI of the browse path's names")
    group: str = "default"

    @model_validator(mode="after")
    def _one_address(self) -> OpcuaNode:
        if (self.node is None) == (self.path is None):
            raise ValueError("give exactly one of 'node' (nsu=...;s=...) or 'path'")
        if self.node is not None and not self.node.startswith("nsu=") and not self.node.startswith("ns=0;"):
            raise ValueError("node ids must name their namespace by URI ('nsu=URI;s=...'): indexes change")
        if self.path is not None and self.path_nsu is None:
            raise ValueError("'path' needs 'path_nsu', the namespace URI of its browse names")
        return self


class OpcuaSource(_Section):
    name: str = Field(min_length=1)
    url: str = Field(pattern=r"^opc\.tcp://")
    security_policy: SecurityPolicy = "None"
    security_mode: SecurityMode = "None"
    username: str | None = None
    password: SecretStr | None = None
    client_cert: Path | None = Field(default=None, description="Client certificate (PEM/DER); made once if missing")
    client_key: Path | None = None
    user_cert: Path | None = Field(default=None, description="Certificate for certificate login")
    user_key: Path | None = None
    server_cert: Path | None = Field(default=None, description="Trusted server certificate (pinned)")
    server_fingerprint: str | None = Field(default=None, description="SHA-256 fingerprint of the server certificate")
    timeout_s: float = Field(default=4.0, gt=0)
    #: How often the client probes the server's state; a probe unanswered for this long counts as a lost
    #: connection (raise it on a busy device whose event loop may stall for a second).
    watchdog_s: float = Field(default=1.0, gt=0)
    batch_size: int = Field(default=500, ge=1, le=5000, description="Monitored items created per request")
    audit_interval_s: float = Field(
        default=15.0,
        ge=0,
        description="Read the subscribed nodes this often and compare with what arrived (0: off)",
    )
    backoff_min_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=30.0, gt=0)
    groups: list[OpcuaGroup] = Field(default_factory=list)
    nodes: list[OpcuaNode] = Field(default_factory=list)
    backfill: BackfillSettings = Field(default_factory=BackfillSettings)
    events: EventSettings | None = Field(default=None, description="Events and alarms -> states and reasons")

    @model_validator(mode="after")
    def _security(self) -> OpcuaSource:
        if (self.security_policy == "None") != (self.security_mode == "None"):
            raise ValueError("security_policy and security_mode must both be 'None' or both be set")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if (self.user_cert is None) != (self.user_key is None):
            raise ValueError("user_cert and user_key go together (the key signs the certificate login)")
        names = {g.name for g in self.groups} | {"default"}
        missing = sorted({n.group for n in self.nodes} - names)
        if missing:
            raise ValueError(f"nodes name groups that are not defined: {missing}")
        return self

    def group(self, name: str) -> OpcuaGroup:
        for g in self.groups:
            if g.name == name:
                return g
        return OpcuaGroup(name="default")
