"""A lean MQTT 3.1.1 client on one `asyncio.Protocol` per connection, so one process holds
hundreds of simulated devices for little CPU (no thread and no library loop per client).

It speaks what a simulated device needs: CONNECT/CONNACK, PUBLISH at QoS 0 (and receiving
PUBLISH at QoS 0 or 1, answered with PUBACK), SUBSCRIBE/SUBACK, PINGREQ, DISCONNECT.
paho-mqtt needs a thread per client and aiomqtt a paho client each; both cost far more per
connection than this (see `bench/ingest_mqtt.py` for the same reasoning).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

__all__ = ["MqttConnection", "MqttRefused", "open_connection"]

CONNECT_TIMEOUT_S = 15.0
PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"
MAX_BUFFERED = 256 * 1024


class MqttRefused(ConnectionError):
    """The broker answered CONNECT with a non-zero return code."""

    def __init__(self, code: int) -> None:
        super().__init__(f"CONNACK return code {code}")
        self.code = code


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(b: bytes) -> bytes:
    return len(b).to_bytes(2, "big") + b


def _connect_packet(client_id: str, username: str, password: str, keepalive: int) -> bytes:
    flags = 0x80 | 0x40 | 0x02  # username, password, clean session
    body = b"\x00\x04MQTT\x04" + bytes([flags]) + keepalive.to_bytes(2, "big")
    body += _str(client_id.encode()) + _str(username.encode()) + _str(password.encode())
    return b"\x10" + _varint(len(body)) + body


class MqttConnection(asyncio.Protocol):
    """One connection; `on_message(topic, payload)` is called for each PUBLISH received."""

    def __init__(self, on_message: Callable[[str, bytes], None]) -> None:
        loop = asyncio.get_running_loop()
        self.on_message = on_message
        self.transport: asyncio.Transport | None = None
        self.connack: asyncio.Future[int] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self._subacks: dict[int, asyncio.Future[bytes]] = {}
        self._buf = bytearray()
        self._pid = itertools.cycle(range(1, 65536))
        self.last_sent = loop.time()

    # --- asyncio.Protocol --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        waiting: list[asyncio.Future[Any]] = [self.connack, *self._subacks.values()]
        for fut in waiting:
            if not fut.done():
                fut.set_exception(ConnectionError("connection lost"))
                fut.exception()  # retrieved: nobody may be waiting for it
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos, end = 0, len(buf)
        while end - pos >= 2:
            i, length, mult, complete = pos + 1, 0, 1, False
            while i < end and i < pos + 5:
                byte = buf[i]
                i += 1
                length += (byte & 0x7F) * mult
                mult *= 128
                if not byte & 0x80:
                    complete = True
                    break
            if not complete or i + length > end:
                break  # wait for the rest of the packet
            self._packet(buf[pos], bytes(buf[i : i + length]))
            pos = i + length
        del buf[:pos]

    def _packet(self, kind: int, body: bytes) -> None:
        ptype = kind & 0xF0
        if ptype == 0x30:
            self._publish_in(kind, body)
        elif ptype == 0x20 and not self.connack.done() and len(body) >= 2:
            self.connack.set_result(body[1])
        elif ptype == 0x90 and len(body) >= 2:
            fut = self._subacks.pop(int.from_bytes(body[:2], "big"), None)
            if fut is not None and not fut.done():
                fut.set_result(body[2:])

    def _publish_in(self, kind: int, body: bytes) -> None:
        tlen = int.from_bytes(body[:2], "big")
        topic = body[2 : 2 + tlen].decode("utf-8", "replace")
        start = 2 + tlen
        if (kind >> 1) & 3:
            self._write(b"\x40\x02" + body[start : start + 2])
            start += 2
        self.on_message(topic, body[start:])

    # --- sending -----------------------------------------------------------------------------
    @property
    def open(self) -> bool:
        """Connected and not closing."""
        return self.transport is not None and not self.transport.is_closing()

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
            self.last_sent = asyncio.get_running_loop().time()

    def publish(self, topic: str, payload: bytes) -> bool:
        """Publish at QoS 0; False (nothing sent) when closed or the socket is backed up."""
        t = self.transport
        if t is None or t.is_closing() or t.get_write_buffer_size() > MAX_BUFFERED:
            return False
        encoded = topic.encode()
        head = b"\x30" + _varint(len(encoded) + 2 + len(payload)) + _str(encoded)
        self._write(head + payload)
        return True

    async def subscribe(self, topics: list[str], qos: int = 1) -> bytes:
        """Subscribe and wait for SUBACK; returns its return codes (0x80 = refused)."""
        pid = next(self._pid)
        body = pid.to_bytes(2, "big") + b"".join(_str(t.encode()) + bytes([qos]) for t in topics)
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._subacks[pid] = fut
        self._write(b"\x82" + _varint(len(body)) + body)
        return await asyncio.wait_for(fut, CONNECT_TIMEOUT_S)

    def ping(self) -> None:
        """Send PINGREQ (keeps an otherwise quiet connection alive)."""
        self._write(PINGREQ)

    def close(self) -> None:
        """DISCONNECT and close the socket."""
        self._write(DISCONNECT)
        if self.transport is not None:
            self.transport.close()


async def open_connection(
    host: str,
    port: int,
    client_id: str,
    username: str,
    password: str,
    on_message: Callable[[str, bytes], None],
    keepalive: int = 60,
) -> MqttConnection:
    """Connect and wait for CONNACK; MqttRefused if the broker refuses, OSError or
    ConnectionError if it cannot be reached."""
    loop = asyncio.get_running_loop()
    _transport, conn = await asyncio.wait_for(
        loop.create_connection(lambda: MqttConnection(on_message), host, port), CONNECT_TIMEOUT_S
    )
    conn._write(_connect_packet(client_id, username, password, keepalive))
    try:
        code = await asyncio.wait_for(conn.connack, CONNECT_TIMEOUT_S)
    except BaseException:
        conn.close()
        raise
    if code != 0:
        conn.close()
        raise MqttRefused(code)
    return conn
