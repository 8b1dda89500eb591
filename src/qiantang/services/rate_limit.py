"""Per-device token buckets: a device may send `rate` messages a second, `burst` at once."""

from __future__ import annotations

__all__ = ["RateLimiter"]


class RateLimiter:
    """Token buckets keyed by device id, refilled by elapsed time (ms)."""

    def __init__(self, rate_per_s: float, burst: float) -> None:
        self.rate = rate_per_s / 1000.0
        self.burst = burst
        self._buckets: dict[int, list[float]] = {}

    def allow(self, key: int, now_ms: int) -> bool:
        """Take one token if there is one."""
        bucket = self._buckets.get(key)
        if bucket is None:
            self._buckets[key] = [self.burst - 1, float(now_ms)]
            return True
        tokens = min(self.burst, bucket[0] + (now_ms - bucket[1]) * self.rate)
        bucket[1] = float(now_ms)
        if tokens < 1:
            bucket[0] = tokens
            return False
        bucket[0] = tokens - 1
        return True
