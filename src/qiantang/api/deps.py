"""FastAPI dependencies: the registry session, the caller, the shared services."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from qiantang.domain.access import Principal
from qiantang.domain.errors import AuthenticationFailed, Unavailable
from qiantang.services.auth import authenticate
from qiantang.services.security import DeviceSecrets
from qiantang.services.telemetry_runtime import Telemetry
from qiantang.settings import Settings

__all__ = ["Caller", "Db", "Runtime", "RuntimeDep", "runtime"]


@dataclass(slots=True)
class Runtime:
    """What the API needs from the composition root; `telemetry` is set while running."""

    settings: Settings
    sessions: sessionmaker[Session]
    device_secrets: DeviceSecrets
    telemetry: Telemetry | None = None

    def live(self) -> Telemetry:
        """The running telemetry path (503 while it is not up)."""
        if self.telemetry is None:
            raise Unavailable("the telemetry path is not running")
        return self.telemetry


def runtime(request: Request) -> Runtime:
    """The runtime put on the app by `create_app`."""
    rt: Runtime = request.app.state.runtime
    return rt


RuntimeDep = Annotated[Runtime, Depends(runtime)]


def _db(rt: RuntimeDep) -> Iterator[Session]:
    with rt.sessions() as session:
        yield session


Db = Annotated[Session, Depends(_db)]


def _caller(request: Request, db: Db) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed("no bearer token")
    return authenticate(db, token.strip())


Caller = Annotated[Principal, Depends(_caller)]
