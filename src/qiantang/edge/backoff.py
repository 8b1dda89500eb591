"""Reconnect back-off: exponential, capped, with jitter so a fleet does not reconnect in step."""

from __future__ import annotations

import asyncio
import random

__all__ = ["Backoff"]


class Backoff:
    """Delays ``min_s, 2*min_s, 4*min_s ... max_s``, each scaled by a random 0.5-1.0."""

    def __init__(self, min_s: float, max_s: float) -> None:
        self.min_s, self.max_s = min_s, max(min_s, max_s)
        self._attempt = 0

    def next(self) -> float:
        """The delay before the next attempt."""
        delay = min(self.max_s, self.min_s * 2.0 ** min(self._attempt, 30))
        self._attempt += 1
        return delay * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not security

    async def sleep(self) -> None:
        """Wait before the next attempt."""
        await asyncio.sleep(self.next())

    def reset(self) -> None:
        """The link is back: start from `min_s` again."""
        self._attempt = 0
