"""Settings, validated at start-up from `QIANTANG_*` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Everything a deployment can configure. Environment variables win over defaults."""

    model_config = SettingsConfigDict(env_prefix="QIANTANG_", extra="ignore")

    data_dir: Path = Field(default=Path("./qiantang-data"), description="where data is kept")
    database_url: str | None = Field(
        default=None, description="registry URL; default: SQLite in the data directory"
    )
    host: str = Field(default="127.0.0.1", description="HTTP listen address")
    port: int = Field(default=8000, ge=0, le=65535, description="HTTP port")
    secret_key: str | None = Field(
        default=None,
        min_length=32,
        description="master key deriving device secrets; default: generated into the data dir",
    )
    session_hours: int = Field(default=12, ge=1, le=24 * 30, description="login token lifetime")
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, description="HTTP body limit")
    max_firmware_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1024, description="firmware upload limit"
    )

    mqtt_enabled: bool = Field(default=True, description="start the embedded MQTT broker")
    mqtt_host: str = Field(default="127.0.0.1", description="MQTT listen address")
    mqtt_port: int = Field(default=1883, ge=0, le=65535, description="MQTT port")
    mqtt_tls_port: int = Field(default=8883, ge=0, le=65535, description="MQTT over TLS port")
    mqtt_tls_cert: Path | None = Field(default=None, description="TLS certificate (PEM)")
    mqtt_tls_key: Path | None = Field(default=None, description="TLS private key (PEM)")
    device_rate_per_s: float = Field(default=100.0, gt=0, description="messages/s per device")
    device_burst: float = Field(default=200.0, ge=1, description="burst per device")
    max_telemetry_age_days: int = Field(
        default=30, ge=1, description="older timestamps are refused on live posts"
    )
    retention_days: int = Field(default=365, ge=1, description="default telemetry retention")
    retention_interval_s: float = Field(default=3600.0, gt=0, description="retention job period")
    timezone: str = Field(default="Asia/Shanghai", description="where a 'day' starts")
    message_log_size: int = Field(default=100, ge=1, le=10_000, description="per device")
    live_queue_frames: int = Field(
        default=1000, ge=1, description="live-feed frames queued per client before sampling"
    )
    live_sample_keys: int = Field(
        default=10_000, ge=1, description="values a sampled live client may fall behind by"
    )
    live_stall_s: float = Field(
        default=30.0, gt=0, description="a live client sampled this long is dropped"
    )
    webhook_attempts: int = Field(default=5, ge=1, le=20, description="tries per webhook")
    webhook_backoff_s: float = Field(
        default=1.0, gt=0, le=600, description="first webhook retry delay, doubled per attempt"
    )
    webhook_queue: int = Field(
        default=1000, ge=1, description="webhook deliveries in flight at most (more dropped)"
    )
    sparkplug_host_id: str = Field(
        default="qiantang",
        pattern=r"^[^/+#\x00]{1,64}$",
        description="Sparkplug B host id (spBv1.0/STATE/{host_id})",
    )
    sparkplug_extend_models: bool = Field(
        default=True, description="Sparkplug births add missing metrics to thing models"
    )

    def registry_url(self) -> str:
        """The registry's SQLAlchemy URL."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'registry.db').resolve()}"
