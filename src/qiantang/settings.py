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

    def registry_url(self) -> str:
        """The registry's SQLAlchemy URL."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'registry.db').resolve()}"
