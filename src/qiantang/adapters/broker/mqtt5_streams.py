"""The MQTT listener in front of amqtt: one TCP port for MQTT 3.1.1 and MQTT 5 clients.

`MqttListener` accepts the connections itself and reads each one's CONNECT. An MQTT 3.1.1
(or 3.1) connection goes to amqtt unchanged, through amqtt's supported ``external`` listener
(``Broker.external_connected``) with the CONNECT replayed in front of the stream; an MQTT 5
connection goes through the same door wrapped in `Mqtt5Reader` / `Mqtt5Writer`, which run
its packets through a `Mqtt5Translator`. A client that sends no complete CONNECT within
`connect_timeout_s` is closed (amqtt itself would wait for ever).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from amqtt.adapters import (  # type: ignore[import-untyped]
    ReaderAdapter,
    StreamWriterAdapter,
    WriterAdapter,
)

from qiantang.adapters.broker.mqtt5_translation import Mqtt5Translator, Translation
from qiantang.adapters.broker.mqtt5_wire import (
    MALFORMED,
    MQTT5_LEVEL,
    Mqtt5Error,
    connect_level,
    encode_packet,
)

__all__ = ["Mqtt5Reader", "Mqtt5Writer", "MqttListener", "read_packet"]

logger = logging.getLogger(__name__)

Handoff = Callable[[ReaderAdapter, WriterAdapter], Awaitable[None]]
_MAX_PACKET = 268_435_455  # the largest remaining length MQTT can encode


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One whole packet: (first byte, body). `Mqtt5Error` if its length is malformed;
    `asyncio.IncompleteReadError` at end of stream."""
    header = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if shift > 21:
            raise Mqtt5Error(MALFORMED, "remaining length longer than 4 bytes")
    return header, await reader.readexactly(length) if length else b""


class _ReplayReader(ReaderAdapter):  # type: ignore[misc]
    """The stream with the bytes already read put back in front (MQTT 3.1.1 connections)."""

    def __init__(self, prefix: bytes, reader: asyncio.StreamReader) -> None:
        self._prefix = prefix
        self._reader = reader

    async def read(self, n: int = -1) -> bytes:
        if self._prefix:
            if n < 0 or n >= len(self._prefix):
                chunk, self._prefix = self._prefix, b""
                more = n - len(chunk)
                return chunk + (await self._reader.readexactly(more) if more > 0 else b"")
            chunk, self._prefix = self._prefix[:n], self._prefix[n:]
            return chunk
        return await (self._reader.read(n) if n < 0 else self._reader.readexactly(n))

    def feed_eof(self) -> None:
        self._reader.feed_eof()


class Mqtt5Writer(WriterAdapter):  # type: ignore[misc]
    """What amqtt writes (MQTT 3.1.1 packets), sent to the client as MQTT 5."""

    def __init__(self, stream: StreamWriterAdapter, translator: Mqtt5Translator) -> None:
        self._stream = stream
        self._translator = translator
        self._pending = bytearray()
        self.reader: Mqtt5Reader | None = None

    def write(self, data: bytes) -> None:
        self._pending += data
        while True:
            frame = _frame(self._pending)
            if frame is None:
                return
            header, body, size = frame
            del self._pending[:size]
            self.apply(self._translator.from_broker(header, body))

    def apply(self, out: Translation) -> None:
        """Send a translation's client bytes; queue its broker bytes for amqtt to read."""
        for packet in out.to_client:
            self._stream.write(packet)
        if out.to_broker and self.reader is not None:
            self.reader.inject(out.to_broker)

    async def drain(self) -> None:
        await self._stream.drain()

    def get_peer_info(self) -> tuple[str, int] | None:
        return self._stream.get_peer_info()  # type: ignore[no-any-return]

    def get_ssl_info(self) -> ssl.SSLObject | None:
        return self._stream.get_ssl_info()  # type: ignore[no-any-return]

    async def close(self) -> None:
        await self._stream.close()


def _frame(data: bytearray) -> tuple[int, bytes, int] | None:
    """The first complete packet in `data` as (first byte, body, size), else None."""
    length, shift, pos = 0, 0, 1
    while True:
        if pos >= len(data) or pos > 4:
            return None
        byte = data[pos]
        length |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            break
        shift += 7
    end = pos + length
    if end > len(data):
        return None
    return data[0], bytes(data[pos:end]), end


class Mqtt5Reader(ReaderAdapter):  # type: ignore[misc]
    """MQTT 5 packets from the client, read by amqtt as MQTT 3.1.1."""

    def __init__(
        self, first: bytes, reader: asyncio.StreamReader, writer: Mqtt5Writer, t: Mqtt5Translator
    ) -> None:
        self._buffer = bytearray(first)
        self._reader = reader
        self._writer = writer
        self._translator = t
        self._closed = False
        writer.reader = self

    def inject(self, packets: list[bytes]) -> None:
        """Packets for amqtt that did not come from the client (acknowledgements)."""
        for packet in packets:
            self._buffer += packet

    async def read(self, n: int = -1) -> bytes:
        while (n < 0 and not self._buffer) or len(self._buffer) < n:
            await self._fill()
        size = len(self._buffer) if n < 0 else n
        chunk = bytes(self._buffer[:size])
        del self._buffer[:size]
        return chunk

    async def _fill(self) -> None:
        if self._closed:
            raise asyncio.IncompleteReadError(b"", None)
        try:
            header, body = await read_packet(self._reader)
            out = self._translator.from_client(header, body)
        except Mqtt5Error as err:
            out = Translation(to_client=[encode_packet(0xE0, bytes((err.code, 0)))])
            out.disconnect = err.code
        self._writer.apply(out)
        if out.disconnect is not None:
            self._closed = True
            logger.info("MQTT 5 client disconnected with reason 0x%02X", out.disconnect)
            await self._writer.close()
            raise asyncio.IncompleteReadError(b"", None)

    def feed_eof(self) -> None:
        self._reader.feed_eof()


class MqttListener:
    """A TCP listener that sorts connections by MQTT version and hands them to amqtt."""

    def __init__(
        self,
        handoff: Handoff,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout_s: float = 30.0,
    ) -> None:
        self._handoff = handoff
        self._host, self._port, self._ssl = host, port, ssl_context
        self._connect_timeout_s = connect_timeout_s
        self._server: asyncio.Server | None = None
        self._sniffing: set[asyncio.Task[Any]] = set()  # connections not yet handed over

    async def start(self) -> None:
        """Bind the port (``OSError`` when it is taken)."""
        self._server = await asyncio.start_server(
            self._accept, self._host, self._port, reuse_address=True, ssl=self._ssl
        )

    async def close(self) -> None:
        """Stop accepting; connections already handed to amqtt are amqtt's to close."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            for task in list(self._sniffing):
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stream = StreamWriterAdapter(writer)
        task = asyncio.current_task()
        if task is not None:
            self._sniffing.add(task)
        try:
            header, body = await asyncio.wait_for(read_packet(reader), self._connect_timeout_s)
        except (TimeoutError, asyncio.IncompleteReadError, Mqtt5Error, OSError):
            await _close(stream)
            return
        except asyncio.CancelledError:
            await _close(stream)
            raise
        finally:
            self._sniffing.discard(task)
        first = encode_packet(header, body)
        if header != 0x10 or connect_level(body) != MQTT5_LEVEL:
            await self._handoff(_ReplayReader(first, reader), stream)
            return
        try:
            translator = Mqtt5Translator(body)
        except Mqtt5Error as err:
            logger.info("MQTT 5 CONNECT refused: %s", err)
            stream.write(Mqtt5Translator.refusal(err.code))
            await _close(stream)
            return
        mqtt5_writer = Mqtt5Writer(stream, translator)
        mqtt5_reader = Mqtt5Reader(translator.connect_v311, reader, mqtt5_writer, translator)
        await self._handoff(mqtt5_reader, mqtt5_writer)


async def _close(stream: Any) -> None:
    with contextlib.suppress(Exception):
        await stream.close()
