"""A small synchronous MQTT device for tests: a real paho-mqtt client over a real socket."""

from __future__ import annotations

import json
import queue
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from qiantang.protocols.alink_auth import make_credentials


class Device:
    """An Alink device: connects with signed credentials, posts, waits for replies."""

    def __init__(
        self, port: int, product_key: str, device_name: str, secret: str, **sign: Any
    ) -> None:
        self.product_key, self.device_name = product_key, device_name
        client_id, username, password = make_credentials(product_key, device_name, secret, **sign)
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311
        )
        self.client.username_pw_set(username, password)
        self.port = port
        self.messages: queue.Queue[tuple[str, dict[str, Any] | bytes]] = queue.Queue()
        self.connack: ReasonCode | None = None
        self.suback: list[int] = []
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    def _on_connect(
        self, client: Any, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        self.connack = rc
        self._connected.set()

    def _on_subscribe(
        self, client: Any, userdata: Any, mid: int, rcs: list[ReasonCode], props: Any
    ) -> None:
        self.suback = [rc.value for rc in rcs]
        self._subscribed.set()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            body: dict[str, Any] | bytes = json.loads(msg.payload)
        except ValueError:
            body = msg.payload
        self.messages.put((msg.topic, body))

    @property
    def sys(self) -> str:
        return f"/sys/{self.product_key}/{self.device_name}"

    def connect(self) -> bool:
        """Connect and wait for CONNACK; True when accepted."""
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        assert self._connected.wait(15), "no CONNACK"
        assert self.connack is not None
        accepted = not self.connack.is_failure
        if not accepted:
            self.client.loop_stop()
        return accepted

    def subscribe(self, topic: str) -> list[int]:
        self._subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self._subscribed.wait(10), "no SUBACK"
        return self.suback

    def publish(self, topic: str, payload: dict[str, Any] | bytes, qos: int = 1) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        info = self.client.publish(topic, data, qos=qos)
        info.wait_for_publish(10)

    def post(self, params: dict[str, Any], msg_id: str, **extra: Any) -> dict[str, Any]:
        """Post properties and return the reply for `msg_id`."""
        body = {
            "id": msg_id,
            "version": "1.0",
            "params": params,
            "method": "thing.event.property.post",
            **extra,
        }
        self.publish(f"{self.sys}/thing/event/property/post", body)
        return self.reply(msg_id)

    def reply(self, msg_id: str, timeout: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                _topic, body = self.messages.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if isinstance(body, dict) and body.get("id") == msg_id:
                return body
        raise AssertionError(f"no reply to {msg_id}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
