"""The one place errors become HTTP: RFC 9457 `application/problem+json` documents."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from qiantang.domain.errors import (
    AuthenticationFailed,
    Conflict,
    FieldError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    QiantangError,
    Unavailable,
)

__all__ = ["PROBLEM_JSON", "install_problem_handlers", "problem"]

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger(__name__)


def problem(
    status: int,
    title: str,
    detail: str,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A problem document response."""
    body: dict[str, Any] = {
        "type": f"/problems/{title.lower().replace(' ', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = [e.as_dict() for e in errors]
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field_of(loc: tuple[Any, ...]) -> str:
    parts = list(loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc)
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or str(loc[0] if loc else "body")


def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        FieldError(_field_of(tuple(e.get("loc", ()))), str(e.get("type", "invalid")), e["msg"])
        for e in exc.errors()
    ]
    if any(e.rule == "json_invalid" for e in errors):
        bad = [FieldError("body", "json_invalid", "the body is not valid JSON")]
        return problem(400, "Malformed JSON", "the request body is not valid JSON", bad)
    return problem(422, "Invalid input", "the request broke the rules listed in errors", errors)


def _qiantang(_: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, Conflict):
        return problem(409, "Conflict", str(exc), exc.errors)
    if isinstance(exc, InvalidInput):
        return problem(422, "Invalid input", str(exc), exc.errors)
    if isinstance(exc, NotFound):
        return problem(404, "Not found", f"no {exc.kind} {exc.key} here")
    if isinstance(exc, AuthenticationFailed):
        return problem(
            401,
            "Unauthorized",
            "sign in or send a valid API key",
            None,
            {"WWW-Authenticate": "Bearer"},
        )
    if isinstance(exc, PermissionDenied):
        return problem(403, "Forbidden", str(exc))
    if isinstance(exc, Unavailable):
        return problem(503, "Unavailable", str(exc))
    log.error("unmapped Qiantang error: %r", exc)
    return problem(500, "Internal error", "an unexpected error occurred")


def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    titles = {404: "Not found", 405: "Method not allowed", 413: "Payload too large"}
    title = titles.get(exc.status_code, "HTTP error")
    return problem(exc.status_code, title, str(exc.detail), None, dict(exc.headers or {}))


def install_problem_handlers(app: FastAPI) -> None:
    """Route every error through the problem mapping."""
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(QiantangError, _qiantang)
    app.add_exception_handler(StarletteHTTPException, _http)
