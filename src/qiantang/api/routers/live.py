"""`GET /api/v1/live`: the live feed over a WebSocket.

The protocol (the console uses it; see `docs/live.md`):

1. Connect. Authenticate with the same bearer tokens the REST API takes (an API key or a login
   token): either the ``Authorization: Bearer ...`` header (scripts), or - because browsers
   cannot set headers on a WebSocket - a ``"token"`` member in the first message. Tokens in the
   URL are not accepted: they end up in access logs. Without a valid token within 10 s the
   server closes with **4401**.
2. Subscribe: ``{"type": "subscribe", "scope": "device", "id": 42}`` (scope ``device``,
   ``product``, ``enterprise`` or ``platform``; optional ``"streams": ["telemetry", "state",
   "event", "alarm"]``, default all). The first message may carry both: ``{"token": "...",
   "scope": "device", "id": 42}``. The server answers ``{"type": "subscribed", ...}`` and then
   streams frames (`qiantang.services.live_feed`). A later subscribe replaces the scope.
   A scope that does not exist or that the caller may not read closes with **4404** and a
   reason like ``device 42 not found`` (the same answer for both, as on REST).
3. A malformed message gets ``{"type": "error", "errors": [{"field", "rule", "message"}]}`` and
   the connection stays open; ``{"type": "ping"}`` gets ``{"type": "pong"}``.

Access is re-checked every minute: a revoked token closes with 4401, a revoked grant with 4404.
A client too slow to keep up is sampled, then closed with **1013** (try again later) and the
reason; a server shutting down closes with 1001.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnected

from qiantang.api.deps import Runtime
from qiantang.domain.access import Principal
from qiantang.domain.errors import (
    AuthenticationFailed,
    FieldError,
    InvalidInput,
    NotFound,
    QiantangError,
)
from qiantang.services.auth import authenticate
from qiantang.services.live_feed import LiveFeed
from qiantang.services.live_feed_client import ClientDropped, LiveClient
from qiantang.services.live_feed_scope import STREAMS, LiveScope, ScopeKind, open_scope

__all__ = ["Subscribe", "parse_subscribe", "router"]

router = APIRouter(tags=["live"])
log = logging.getLogger(__name__)

AUTH_TIMEOUT_S = 10.0
RECHECK_S = 60.0
CLOSE_TIMEOUT_S = 5.0
UNAUTHENTICATED, NOT_FOUND, TRY_LATER, GOING_AWAY = 4401, 4404, 1013, 1001


class Subscribe:
    """A checked subscribe message."""

    __slots__ = ("kind", "scope_id", "streams")

    def __init__(self, kind: ScopeKind, scope_id: int, streams: frozenset[str]) -> None:
        self.kind, self.scope_id, self.streams = kind, scope_id, streams


def parse_subscribe(message: dict[str, Any]) -> Subscribe:
    """The subscription a message asks for; `InvalidInput` naming the field otherwise."""
    errors: list[FieldError] = []
    kinds = ", ".join(k.value for k in ScopeKind)
    raw_kind = message.get("scope")
    if raw_kind not in {k.value for k in ScopeKind}:
        errors.append(FieldError("scope", "enum", f"one of {kinds}"))
    raw_id = message.get("id")
    if not isinstance(raw_id, int) or isinstance(raw_id, bool) or raw_id < 1:
        errors.append(FieldError("id", "type", "a positive integer id of the scope"))
    raw_streams = message.get("streams", sorted(STREAMS))
    if not isinstance(raw_streams, list) or not raw_streams or not set(raw_streams) <= STREAMS:
        allowed = ", ".join(sorted(STREAMS))
        errors.append(FieldError("streams", "enum", f"a non-empty list of {allowed}"))
    if errors:
        raise InvalidInput(errors)
    return Subscribe(ScopeKind(raw_kind), int(raw_id), frozenset(raw_streams))  # type: ignore[arg-type]


def _decode(text: str) -> dict[str, Any]:
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError as err:
        raise InvalidInput.of("message", "json", "a JSON object") from err
    if not isinstance(message, dict):
        raise InvalidInput.of("message", "type", "a JSON object")
    return message


def _bearer(websocket: WebSocket) -> str | None:
    scheme, _, token = websocket.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class _Closed(Exception):
    """End the session with a close code and reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


class LiveSession:
    """One WebSocket connection: authentication, subscription, sending, re-checks."""

    def __init__(self, websocket: WebSocket, runtime: Runtime, feed: LiveFeed) -> None:
        self.ws, self.runtime, self.feed = websocket, runtime, feed
        self.token: str | None = _bearer(websocket)
        self.who: Principal | None = None
        self.subscribe: Subscribe | None = None
        self.client: LiveClient | None = None

    async def run(self) -> None:
        """Serve the connection until either side ends it."""
        try:
            first = await self._first_message()
            await self._authenticate()
            await self._handle(first)
            while self.client is None:
                await self._handle(await self._receive())
            await self._stream()
        except _Closed as closed:
            await self._close(closed.code, closed.reason)
        except (WebSocketDisconnect, WebSocketDisconnected):
            pass
        finally:
            if self.client is not None:
                self.feed.disconnect(self.client)

    async def _first_message(self) -> dict[str, Any] | None:
        if self.token is not None:
            return None
        try:
            async with asyncio.timeout(AUTH_TIMEOUT_S):
                text = await self.ws.receive_text()
        except TimeoutError as err:
            raise _Closed(UNAUTHENTICATED, "authentication required: no token") from err
        try:
            message = _decode(text)
        except InvalidInput as err:
            raise _Closed(UNAUTHENTICATED, "authentication required: a JSON message") from err
        token = message.get("token")
        if not isinstance(token, str) or not token.strip():
            raise _Closed(UNAUTHENTICATED, "authentication required: no token")
        self.token = token.strip()
        return message

    async def _authenticate(self) -> None:
        def check() -> Principal:
            assert self.token is not None
            with self.runtime.sessions() as db:
                return authenticate(db, self.token)

        try:
            self.who = await run_in_threadpool(check)
        except AuthenticationFailed as err:
            raise _Closed(UNAUTHENTICATED, f"authentication failed: {err}") from err

    async def _receive(self) -> dict[str, Any] | None:
        try:
            return _decode(await self.ws.receive_text())
        except InvalidInput as err:
            await self._error(err)
            return None

    async def _handle(self, message: dict[str, Any] | None) -> None:
        """Act on one client message (None: nothing to do)."""
        if message is None:
            return
        kind = message.get("type", "subscribe" if "scope" in message else None)
        if kind == "ping":
            await self.ws.send_text('{"type":"pong"}')
        elif kind == "subscribe":
            try:
                wanted = parse_subscribe(message)
            except InvalidInput as err:
                await self._error(err)
                return
            await self._subscribe(wanted)
        elif not (kind is None and "token" in message):
            await self._error(InvalidInput.of("type", "enum", "subscribe or ping"))

    async def _scope(self, wanted: Subscribe) -> LiveScope:
        def check() -> LiveScope:
            assert self.who is not None
            with self.runtime.sessions() as db:
                scope = open_scope(db, self.who, wanted.kind, wanted.scope_id)
            return LiveScope(scope.kind, scope.id, scope.visibility, wanted.streams)

        try:
            return await run_in_threadpool(check)
        except NotFound as err:
            raise _Closed(NOT_FOUND, str(err)) from err

    async def _subscribe(self, wanted: Subscribe) -> None:
        scope = await self._scope(wanted)
        self.subscribe = wanted
        ack = {
            "type": "subscribed",
            "scope": scope.kind.value,
            "id": scope.id,
            "streams": sorted(scope.streams),
        }
        if self.client is None:
            self.client = self.feed.connect(scope)
        else:
            self.feed.rescope(self.client, scope, reset=True)
        self.client.offer_other(orjson.dumps(ack).decode())

    async def _stream(self) -> None:
        tasks = {
            asyncio.create_task(self._send_frames()),
            asyncio.create_task(self._read_messages()),
            asyncio.create_task(self._recheck()),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        for task in done:
            error = task.exception()
            if error is not None:
                raise error

    async def _send_frames(self) -> None:
        assert self.client is not None
        while True:
            try:
                frames = await self.client.take()
            except ClientDropped as err:
                code = GOING_AWAY if "shutting down" in str(err) else TRY_LATER
                raise _Closed(code, str(err)) from err
            for frame in frames:
                await self.ws.send_text(frame)

    async def _read_messages(self) -> None:
        while True:
            await self._handle(await self._receive())

    async def _recheck(self) -> None:
        """Take a fresh access snapshot every minute (revoked keys and grants end it)."""
        while True:
            await asyncio.sleep(RECHECK_S)
            await self._authenticate()
            if self.subscribe is not None and self.client is not None:
                scope = await self._scope(self.subscribe)
                self.feed.rescope(self.client, scope, reset=False)

    async def _error(self, err: InvalidInput) -> None:
        frame = {"type": "error", "errors": [e.as_dict() for e in err.errors]}
        await self.ws.send_text(orjson.dumps(frame).decode())

    async def _close(self, code: int, reason: str) -> None:
        # a close frame is at most 125 bytes: 2 for the code, the rest for the reason
        short = reason.encode()[:123].decode(errors="ignore")
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self.ws.close(code, short)


@router.websocket("/live")
async def live(websocket: WebSocket) -> None:
    """The live feed (WebSocket; the protocol is in this module's docstring)."""
    runtime: Runtime = websocket.app.state.runtime
    await websocket.accept()
    telemetry = runtime.telemetry
    feed = telemetry.live_feed if telemetry is not None else None
    if feed is None:
        with contextlib.suppress(Exception):
            await websocket.close(TRY_LATER, "the telemetry path is not running")
        return
    try:
        await LiveSession(websocket, runtime, feed).run()
    except QiantangError:
        log.exception("live session failed")
