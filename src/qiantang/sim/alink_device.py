"""A simulated machine speaking Alink over MQTT: it signs in with its device secret, posts its
properties (the slow-changing ones every `SLOW_EVERY` posts) and its events, and answers
property sets, async service calls and synchronous (RRPC) calls from the platform.

A device that loses its connection reconnects with back-off; it is logged once when it goes
down and once when it is back. Posts are QoS 0 with a reply requested; a post the platform
refuses is logged once per reply code.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from typing import Any

import orjson

from qiantang.protocols.alink_auth import make_credentials
from qiantang.sim.machine import SimEvent, SimMachine
from qiantang.sim.mqtt_client import MqttConnection, MqttRefused, open_connection

__all__ = ["SLOW_EVERY", "AlinkDevice"]

log = logging.getLogger(__name__)

SLOW_EVERY = 30
_RECONNECT_MIN_S, _RECONNECT_MAX_S = 1.0, 30.0


class AlinkDevice:
    """One machine on one MQTT connection to the platform's broker."""

    def __init__(
        self,
        machine: SimMachine,
        product_key: str,
        device_name: str,
        secret: str,
        host: str,
        port: int,
    ) -> None:
        self.machine = machine
        self.product_key, self.device_name = product_key, device_name
        self.host, self.port = host, port
        self._credentials = make_credentials(product_key, device_name, secret)
        self.base = f"/sys/{product_key}/{device_name}"
        self._post_topic = f"{self.base}/thing/event/property/post"
        self.conn: MqttConnection | None = None
        self._ids = itertools.count(1)
        self._posts = 0
        self._slow = frozenset(getattr(machine, "SLOW", frozenset()))
        self._codes_logged: set[int] = set()
        self.posted = 0
        self.replies: dict[int, int] = {}  # reply code -> count

    # --- connection --------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """Signed in and the connection open."""
        return self.conn is not None and self.conn.open

    async def run(self) -> None:
        """Stay connected until cancelled: connect, subscribe, reconnect with back-off."""
        delay, down_logged = _RECONNECT_MIN_S, False
        while True:
            try:
                conn = await self._connect()
            except (OSError, ConnectionError, TimeoutError) as err:
                if not down_logged:
                    log.warning("%s cannot connect: %s (retrying)", self.device_name, err)
                    down_logged = True
                await asyncio.sleep(delay)
                delay = min(_RECONNECT_MAX_S, delay * 2)
                continue
            if down_logged:
                log.info("%s connected again", self.device_name)
            delay, down_logged = _RECONNECT_MIN_S, False
            self.conn = conn
            self.post(full=True)
            try:
                await conn.closed
            finally:
                self.conn = None
                conn.close()
            log.warning("%s lost its connection (reconnecting)", self.device_name)
            down_logged = True

    async def _connect(self) -> MqttConnection:
        client_id, username, password = self._credentials
        conn = await open_connection(
            self.host, self.port, client_id, username, password, self._on_message
        )
        try:
            codes = await conn.subscribe(
                [
                    f"{self.base}/thing/service/#",
                    f"{self.base}/rrpc/request/+",
                    f"{self.base}/thing/event/+/post_reply",
                ]
            )
        except BaseException:
            conn.close()
            raise
        if any(c == 0x80 for c in codes):
            conn.close()
            raise MqttRefused(0x80)
        return conn

    def close(self) -> None:
        """Disconnect (the run task is cancelled by its owner)."""
        if self.conn is not None:
            self.conn.close()

    # --- uplink ------------------------------------------------------------------------------
    def post(self, full: bool = False) -> None:
        """Post the machine's properties and any events it raised; no-op while offline."""
        conn = self.conn
        if conn is None or not conn.open:
            return
        params = self.machine.properties()
        if not full and self._posts % SLOW_EVERY:
            params = {k: v for k, v in params.items() if k not in self._slow}
        self._posts += 1
        self._send(conn, self._post_topic, "thing.event.property.post", params)
        for event in self.machine.take_events():
            self._send_event(conn, event)

    def _send_event(self, conn: MqttConnection, event: SimEvent) -> None:
        method = f"thing.event.{event.identifier}.post"
        topic = f"{self.base}/thing/event/{event.identifier}/post"
        self._send(conn, topic, method, {"value": event.params, "time": event.ts_ms})

    def _send(self, conn: MqttConnection, topic: str, method: str, params: Any) -> None:
        body = {"id": str(next(self._ids)), "version": "1.0", "params": params, "method": method}
        if conn.publish(topic, orjson.dumps(body)):
            self.posted += 1

    def keep_alive(self, idle_s: float) -> None:
        """PINGREQ when nothing was sent for `idle_s` seconds."""
        conn = self.conn
        if conn is not None and conn.open:
            loop = asyncio.get_running_loop()
            if loop.time() - conn.last_sent > idle_s:
                conn.ping()

    # --- downlink ----------------------------------------------------------------------------
    def _on_message(self, topic: str, payload: bytes) -> None:
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return
        if not isinstance(body, dict):
            return
        tail = topic[len(self.base) + 1 :]
        if tail.endswith("_reply"):
            self._on_reply(body)
        elif tail == "thing/service/property/set":
            self._on_set(topic, body)
        elif tail.startswith("thing/service/"):
            self._on_service(f"{topic}_reply", tail.rsplit("/", 1)[1], body)
        elif tail.startswith("rrpc/request/"):
            method = str(body.get("method", ""))
            reply = topic.replace("/rrpc/request/", "/rrpc/response/", 1)
            self._on_service(reply, method.rsplit(".", 1)[-1], body)

    def _on_reply(self, body: dict[str, Any]) -> None:
        code = body.get("code")
        if not isinstance(code, int):
            return
        self.replies[code] = self.replies.get(code, 0) + 1
        if code != 200 and code not in self._codes_logged:
            self._codes_logged.add(code)
            log.warning("%s: platform replied %s: %s", self.device_name, code, body.get("message"))

    def _on_set(self, topic: str, body: dict[str, Any]) -> None:
        params = body.get("params")
        taken = self.machine.set_properties(params if isinstance(params, dict) else {})
        self._answer(f"{topic}_reply", body, 200 if taken else 460, {})
        if taken:
            self.post()  # report the new values at once

    def _on_service(self, topic: str, service: str, body: dict[str, Any]) -> None:
        params = body.get("params")
        output = self.machine.call_service(service, params if isinstance(params, dict) else {})
        if output is None:
            self._answer(topic, body, 6313, {}, "tsl service not available")
        else:
            self._answer(topic, body, 200, output)

    def _answer(
        self, topic: str, request: dict[str, Any], code: int, data: Any, message: str = "success"
    ) -> None:
        conn = self.conn
        if conn is None:
            return
        reply = {"id": str(request.get("id", "")), "code": code, "data": data, "message": message}
        with contextlib.suppress(OSError):
            conn.publish(topic, orjson.dumps({**reply, "version": "1.0"}))
