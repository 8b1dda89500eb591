"""The FastAPI application: routers under `/api/v1`, problem+json errors, OpenAPI at /docs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from qiantang import __version__
from qiantang.api.deps import Runtime
from qiantang.api.limits import BodySizeLimit
from qiantang.api.problems import install_problem_handlers, problem
from qiantang.api.routers import (
    alarms,
    catalog,
    commands,
    devices,
    enterprises,
    grants,
    ingest,
    live,
    ota,
    platforms,
    principals,
    rules,
    shadow,
    telemetry,
)
from qiantang.api.routers import resolve as resolve_router
from qiantang.web.console import install_console

__all__ = ["Lifespan", "create_app"]

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]

log = logging.getLogger(__name__)


def create_app(runtime: Runtime, lifespan: Lifespan | None = None) -> FastAPI:
    """An app bound to `runtime` (made by `qiantang.bootstrap`); `lifespan` starts and stops
    what runs beside the API (broker, store)."""
    app = FastAPI(
        title="Qiantang 钱塘",
        version=__version__,
        description="The 1+N industrial internet platform system: REST API v1.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    api = APIRouter(prefix="/api/v1")
    routers = (platforms, enterprises, grants, catalog, devices, principals, resolve_router)
    for module in (*routers, telemetry, ingest, commands, shadow, ota, live, rules, alarms):
        api.include_router(module.router)
    app.include_router(api)
    install_problem_handlers(app)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem(500, "Internal error", "an unexpected error occurred")

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """Liveness."""
        return {"status": "ok", "version": __version__}

    install_console(app)

    app.add_middleware(
        BodySizeLimit,
        max_bytes=runtime.settings.max_body_bytes,
        upload_bytes=runtime.settings.max_firmware_bytes,
        upload_suffixes=("/firmware",),
    )
    return app
