"""The gateway's configuration as validated models (the YAML file is read by
`qiantang.edge.config_file`).

The top level and the generic parts of a device block live here; each connector kind
subclasses `DeviceConfig` with its own ``connector`` and ``points`` types (see
`qiantang.edge.registry`). Every model refuses unknown keys, so a typo is an error, not a
silently ignored setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

__all__ = [
    "ConnectionConfig",
    "DeviceConfig",
    "DeviceName",
    "GatewayConfig",
    "HealthConfig",
    "Identifier",
    "OutboxConfig",
    "PointConfig",
    "ServiceConfig",
    "Strict",
    "TlsConfig",
    "UplinkConfig",
]

Identifier = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,49}$")]
"""A thing-model identifier (property, service, parameter)."""
DeviceName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-@.:]{1,64}$")]
"""A product key or device name as Alink allows them."""
ValueType = Literal["int", "float", "bool", "text"]


class Strict(BaseModel):
    """Frozen, and unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsConfig(Strict):
    """MQTT over TLS: `ca_file` verifies the platform (system CAs when unset); a client
    certificate is optional; `insecure` skips host-name checks (test benches only)."""

    enabled: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False


class UplinkConfig(Strict):
    """The platform: where its MQTT broker is and who the gateway is there."""

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    tls: TlsConfig = TlsConfig()
    product_key: DeviceName
    device_name: DeviceName
    device_secret: SecretStr
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    reply_timeout_s: float = Field(default=10.0, gt=0, le=300)
    reconnect_min_s: float = Field(default=0.5, gt=0, le=60)
    reconnect_max_s: float = Field(default=30.0, gt=0, le=3600)

    @property
    def key(self) -> str:
        """``productKey/deviceName``."""
        return f"{self.product_key}/{self.device_name}"


class OutboxConfig(Strict):
    """The store-and-forward queue. When full, the oldest samples are dropped first (and
    counted); samples older than `max_age_s` are dropped too. `drain_rate` is how many
    backlog messages per second go out after a reconnect, each carrying up to
    `history_batch` samples of one device, while live data goes out as it comes."""

    path: Path = Path("outbox.db")
    max_samples: int = Field(default=1_000_000, ge=1)
    max_age_s: float = Field(default=7 * 86_400.0, gt=0, le=29 * 86_400.0)
    drain_rate: float = Field(default=20.0, gt=0, le=10_000)
    history_batch: int = Field(default=500, ge=1, le=10_000)
    max_in_flight: int = Field(default=8, ge=1, le=256)
    linger_ms: int = Field(default=20, ge=0, le=5_000)
    synchronous: Literal["full", "normal"] = "full"


class HealthConfig(Strict):
    """The gateway's own health, posted as properties of the gateway device."""

    enabled: bool = True
    period_s: float = Field(default=10.0, gt=0, le=86_400)


class PointConfig(Strict):
    """One point: the property it feeds and the converter's mapping from the raw value:
    ``value = raw * scale + offset``, then cast to `type` (kept as read when unset)."""

    property: Identifier
    scale: float = 1.0
    offset: float = 0.0
    type: ValueType | None = None


class ServiceConfig(Strict):
    """A thing-model service the machine implements (connector kinds add how)."""

    service: Identifier


class ConnectionConfig(Strict):
    """How to reach the machine; `type` names the connector kind."""

    type: str


class DeviceConfig(Strict):
    """A sub-device: its platform identity, its connector and its point map."""

    product_key: DeviceName
    device_name: DeviceName
    device_secret: SecretStr
    connector: ConnectionConfig
    points: tuple[PointConfig, ...]
    services: tuple[ServiceConfig, ...] = ()

    @property
    def key(self) -> str:
        """``productKey/deviceName``."""
        return f"{self.product_key}/{self.device_name}"

    @model_validator(mode="after")
    def _unique_names(self) -> DeviceConfig:
        if not self.points:
            raise ValueError("at least one point is needed")
        for kind, names in (
            ("property", [p.property for p in self.points]),
            ("service", [s.service for s in self.services]),
        ):
            seen: set[str] = set()
            for name in names:
                if name in seen:
                    raise ValueError(f"{kind} {name!r} is mapped twice")
                seen.add(name)
        return self


class GatewayConfig(Strict):
    """The whole file once every device block is validated by its connector kind."""

    uplink: UplinkConfig
    outbox: OutboxConfig = OutboxConfig()
    health: HealthConfig = HealthConfig()
    devices: tuple[DeviceConfig, ...] = Field(min_length=1)

    def device(self, key: str) -> DeviceConfig | None:
        """The sub-device ``productKey/deviceName``, if configured."""
        return next((d for d in self.devices if d.key == key), None)


class RawGatewayConfig(Strict):
    """The first pass: device blocks stay raw until their connector kind is known."""

    uplink: UplinkConfig
    outbox: OutboxConfig = OutboxConfig()
    health: HealthConfig = HealthConfig()
    devices: list[dict[str, Any]] = Field(min_length=1, max_length=1000)
