"""Hands inbound messages and connection changes to the platform's hooks, in order, in batches.

Broker code calls `put_message` and `put_connection` - plain functions that never wait, so
they can run inside the broker's packet handling. One worker task delivers what was put, in
the order it was put: messages go to ``hooks.on_messages`` in batches of at most
`batch_size`, a batch leaving when it is full or `batch_delay_s` after its first message; a
connection change first closes the batch in progress, so it reaches ``hooks.on_connection``
after the messages that came before it.

Nothing here waits for the platform: if the hooks are slower than the broker, sealed batches
queue up in memory (`pending`). The broker's own queues are unbounded too, and MQTT 3.1.1
gives no way to slow a publisher down other than delaying its PUBACKs, which amqtt's plugin
API does not let us do.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import NamedTuple

from qiantang.ports.ingress import Identity, InboundMessage, IngressHooks

__all__ = ["BatchHandover"]

logger = logging.getLogger(__name__)


class _ConnectionChange(NamedTuple):
    identity: Identity
    client_id: str
    connected: bool


class BatchHandover:
    """The ordered, batched path from broker callbacks to `IngressHooks`."""

    def __init__(self, hooks: IngressHooks, batch_size: int, batch_delay_s: float) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if batch_delay_s < 0:
            raise ValueError("batch_delay_s must not be negative")
        self._hooks = hooks
        self._batch_size = batch_size
        self._batch_delay_s = batch_delay_s
        self._open: list[InboundMessage] = []
        self._opened_at = 0.0  # loop time of the open batch's first message
        self._ready: deque[list[InboundMessage] | _ConnectionChange] = deque()
        self._pending = 0
        self._wakeup = asyncio.Event()
        self._closing = False
        self._worker: asyncio.Task[None] | None = None
        self.messages_in = 0
        self.errors = 0

    def start(self) -> None:
        """Start the worker task (on the running loop)."""
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name="qiantang-ingress-handover")

    @property
    def closed(self) -> bool:
        """True once `close` was called: puts are ignored from then on."""
        return self._closing

    @property
    def pending(self) -> int:
        """Messages put and not yet handed over."""
        return self._pending

    def put_message(self, message: InboundMessage) -> None:
        """Queue one accepted message. Never waits."""
        if self._closing:
            logger.warning("message from %s after ingress stop, dropped", message.client_id)
            return
        self._open.append(message)
        self._pending += 1
        self.messages_in += 1
        if len(self._open) == 1:
            self._opened_at = asyncio.get_running_loop().time()
            self._wakeup.set()
        if len(self._open) >= self._batch_size:
            self._seal()
            self._wakeup.set()

    def put_connection(self, identity: Identity, client_id: str, connected: bool) -> None:
        """Queue a connection change, after every message put before it. Never waits."""
        if self._closing:
            return
        self._seal()
        self._ready.append(_ConnectionChange(identity, client_id, connected))
        self._wakeup.set()

    async def close(self) -> None:
        """Deliver everything put so far, then stop the worker."""
        self._closing = True
        self._wakeup.set()
        if self._worker is not None:
            await self._worker

    def _seal(self) -> None:
        if self._open:
            self._ready.append(self._open)
            self._open = []

    async def _run(self) -> None:
        while True:
            if self._ready:
                await self._deliver(self._ready.popleft())
            elif self._open:
                await self._wait_for_open_batch()
            elif self._closing:
                return
            else:
                self._wakeup.clear()
                await self._wakeup.wait()

    async def _wait_for_open_batch(self) -> None:
        """Seal the open batch once it is `batch_delay_s` old, or earlier when woken."""
        delay = self._opened_at + self._batch_delay_s - asyncio.get_running_loop().time()
        if delay > 0 and not self._closing:
            self._wakeup.clear()
            try:
                async with asyncio.timeout(delay):
                    await self._wakeup.wait()
            except TimeoutError:
                pass
            if self._ready or not self._open:
                return  # woken by a full batch or a connection change: deliver in order
            if not self._closing and asyncio.get_running_loop().time() < (
                self._opened_at + self._batch_delay_s
            ):
                return
        self._seal()

    async def _deliver(self, item: list[InboundMessage] | _ConnectionChange) -> None:
        try:
            if isinstance(item, _ConnectionChange):
                await self._hooks.on_connection(item.identity, item.client_id, item.connected)
            else:
                try:
                    await self._hooks.on_messages(item)
                finally:
                    self._pending -= len(item)
        except Exception:
            self.errors += 1
            logger.exception("ingress hook failed; the item is not retried")
