"""The composition root: the one place that names concrete adapters."""

from __future__ import annotations

from fastapi import FastAPI

from qiantang.api.app import create_app
from qiantang.api.deps import Runtime
from qiantang.registry.database import make_engine, make_sessionmaker, upgrade
from qiantang.services.security import DeviceSecrets, load_master_key
from qiantang.settings import Settings

__all__ = ["build_app", "build_runtime"]


def build_runtime(settings: Settings, *, migrate: bool = True) -> Runtime:
    """Open the registry (migrating it to head) and load the master key."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.registry_url())
    if migrate:
        upgrade(engine)
    master = load_master_key(settings.data_dir, settings.secret_key)
    return Runtime(settings, make_sessionmaker(engine), DeviceSecrets(master))


def build_app(settings: Settings | None = None) -> FastAPI:
    """The whole embedded platform as one ASGI app."""
    return create_app(build_runtime(settings or Settings()))
