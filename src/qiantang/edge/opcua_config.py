"""Configuration of the OPC UA connector: endpoint, security, identity, points, methods."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from qiantang.edge.config import (
    ConnectionConfig,
    DeviceConfig,
    Identifier,
    PointConfig,
    ServiceConfig,
    Strict,
)

__all__ = [
    "NodeRef",
    "OpcUaConnection",
    "OpcUaDevice",
    "OpcUaIdentity",
    "OpcUaPoint",
    "OpcUaSecurity",
    "OpcUaService",
]


class OpcUaSecurity(Strict):
    """Secure channel: `policy` and `mode` both None, or both set with the client's
    certificate and key (the server's certificate pins the server when given)."""

    policy: Literal["None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"] = (
        "None"
    )
    mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    certificate: Path | None = None
    private_key: Path | None = None
    server_certificate: Path | None = None

    @model_validator(mode="after")
    def _consistent(self) -> OpcUaSecurity:
        if (self.policy == "None") != (self.mode == "None"):
            raise ValueError("policy and mode are both None or both set")
        if self.policy != "None" and not (self.certificate and self.private_key):
            raise ValueError("a security policy needs certificate and private_key")
        return self


class OpcUaIdentity(Strict):
    """Who the session is: anonymous, a user name and password, or an X.509 certificate."""

    kind: Literal["anonymous", "username", "certificate"] = "anonymous"
    username: str | None = None
    password: SecretStr | None = None
    certificate: Path | None = None
    private_key: Path | None = None

    @model_validator(mode="after")
    def _complete(self) -> OpcUaIdentity:
        if self.kind == "username" and not self.username:
            raise ValueError("kind username needs username (and usually password)")
        if self.kind == "certificate" and not (self.certificate and self.private_key):
            raise ValueError("kind certificate needs certificate and private_key")
        return self


class NodeRef(Strict):
    """A node by id (``ns=2;s=Machine.Temperature``) or by browse path from the Objects
    folder (``["2:Machine", "2:Temperature"]``): exactly one of the two."""

    node: str | None = None
    browse_path: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _one_way(self) -> NodeRef:
        if (self.node is None) == (self.browse_path is None):
            raise ValueError("give exactly one of node and browse_path")
        return self


class OpcUaConnection(ConnectionConfig):
    """The server and how to talk to it."""

    type: Literal["opcua"]
    endpoint: str = Field(pattern=r"^opc\.tcp://")
    security: OpcUaSecurity = OpcUaSecurity()
    identity: OpcUaIdentity = OpcUaIdentity()
    publishing_interval_ms: float = Field(default=500, ge=10, le=600_000)
    timeout_s: float = Field(default=4.0, gt=0, le=120)
    watchdog_s: float = Field(default=2.0, gt=0, le=600)
    reconnect_min_s: float = Field(default=0.5, gt=0)
    reconnect_max_s: float = Field(default=30.0, gt=0)


class OpcUaPoint(PointConfig, NodeRef):
    """A variable: subscribed (sampling interval, optional deadband) or polled."""

    mode: Literal["subscribe", "poll"] = "subscribe"
    sampling_interval_ms: float = Field(default=250, ge=0, le=600_000)
    deadband: float | None = Field(default=None, ge=0)
    deadband_type: Literal["absolute", "percent"] = "absolute"
    poll_ms: int = Field(default=1000, ge=10, le=3_600_000)


class OpcUaService(ServiceConfig):
    """A thing-model service carried out by an OPC UA method: `object` owns `method`;
    `inputs` name the service's input parameters in the method's argument order, `outputs`
    name its output arguments."""

    object: NodeRef
    method: NodeRef
    inputs: tuple[Identifier, ...] = ()
    outputs: tuple[Identifier, ...] = ()


class OpcUaDevice(DeviceConfig):
    """A sub-device read over OPC UA."""

    connector: OpcUaConnection
    points: tuple[OpcUaPoint, ...]
    services: tuple[OpcUaService, ...] = ()
