"""Downlink: property sets and service calls from the platform, carried out on the machine.

Topics (``{d}`` is the sub-device's ``productKey/deviceName``):

- ``/sys/{d}/thing/service/property/set``: the converter maps each value to raw, the
  connector writes it; answered on ``..._reply``.
- ``/sys/{d}/thing/service/{id}`` (async services) and ``/sys/{d}/rrpc/request/{msgId}``
  (sync services, method ``thing.service.{id}``): the connector calls the method; the reply
  carries its outputs as ``data``, on ``..._reply`` or ``/sys/{d}/rrpc/response/{msgId}``.

Codes: 200 done; 460 the request makes no sense for this machine (unmapped property or
service, a value that does not fit); 9201 the machine cannot be reached or refused the
write, with the reason in ``message``. Requests run as their own tasks, at most
`MAX_CONCURRENT` at once; more are answered 429 at once rather than queued without bound.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from qiantang.edge.alink_messages import encode_reply
from qiantang.edge.convert import DeviceConverter
from qiantang.edge.errors import ConnectorError, UplinkError, WriteRefused
from qiantang.edge.model import Connector, Raw

__all__ = ["MAX_CONCURRENT", "Downlink", "Target"]

log = logging.getLogger(__name__)
MAX_CONCURRENT: Final = 16
Publish = Callable[[str, bytes], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Target:
    """A sub-device that can be written to: its converter and connector."""

    converter: DeviceConverter
    connector: Connector


class Downlink:
    """Routes downlink requests to connectors and answers them."""

    def __init__(self, targets: dict[str, Target], on_error: Callable[[str], None]) -> None:
        self.targets = targets
        self.on_error = on_error
        self.publish: Publish | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, topic: str, payload: bytes) -> None:
        """Take a request (from the uplink's message loop; never blocks)."""
        parts = topic.split("/")
        if len(parts) < 6 or parts[1] != "sys":
            return
        if len(self._tasks) >= MAX_CONCURRENT:
            self._soon(self._answer_busy(topic, payload))
            return
        self._soon(self._handle(topic, parts, payload))

    def _soon(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer_busy(self, topic: str, payload: bytes) -> None:
        msg_id, _ = _request(payload)
        if msg_id is not None:
            await self._send(topic + "_reply", encode_reply(msg_id, 429, message="gateway busy"))

    async def _handle(self, topic: str, parts: list[str], payload: bytes) -> None:
        msg_id, body = _request(payload)
        if msg_id is None:
            return
        device = f"{parts[2]}/{parts[3]}"
        rest = "/".join(parts[4:])
        reply_topic = topic + "_reply"
        if rest.startswith("rrpc/request/"):
            reply_topic = f"/sys/{device}/rrpc/response/{parts[-1]}"
            method = str(body.get("method", ""))
            service = method.removeprefix("thing.service.")
        else:
            service = rest.removeprefix("thing/service/")
        params = body.get("params") or {}
        code, data, message = await self._carry_out(device, service, params)
        await self._send(reply_topic, encode_reply(msg_id, code, data, message))

    async def _carry_out(
        self, device: str, service: str, params: Any
    ) -> tuple[int, dict[str, Raw], str]:
        target = self.targets.get(device)
        if target is None or not isinstance(params, dict):
            return 460, {}, "unknown device or params not an object"
        try:
            if service == "property/set":
                await target.connector.write(target.converter.downlink(params))
                return 200, {}, ""
            return 200, await target.connector.call(service, params), ""
        except WriteRefused as err:
            return 460, {}, str(err)
        except ConnectorError as err:
            self.on_error(str(err))
            log.warning("downlink %s to %s failed: %s", service, device, err)
            return 9201, {}, str(err)
        except Exception as err:  # a bug must still get an answer, not a platform timeout
            log.exception("downlink %s to %s failed unexpectedly", service, device)
            return 500, {}, f"gateway error: {err!r}"

    async def _send(self, topic: str, payload: bytes) -> None:
        if self.publish is None:
            return  # the session is gone; the platform times the request out
        try:
            await self.publish(topic, payload)
        except UplinkError as err:  # the reply is lost with its session
            log.info("reply on %s not sent: %s", topic, err)

    async def close(self) -> None:
        """Cancel requests still running."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _request(payload: bytes) -> tuple[str | None, dict[str, Any]]:
    try:
        body = json.loads(payload)
    except ValueError:
        return None, {}
    if not isinstance(body, dict) or "id" not in body:
        return None, {}
    return str(body["id"]), body
