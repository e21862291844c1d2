"""Per-key token buckets: `rate` tokens a second, bursts up to twice that."""

from __future__ import annotations

import math
import time


class TokenBucket:
    __slots__ = ("stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp


class RateLimiter:
    def __init__(self, rate: float, burst_factor: float = 2.0) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate * burst_factor)
        self.buckets: dict[str, TokenBucket] = {}

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key: str) -> tuple[bool, dict[str, str]]:
        """Spend one token for `key`; returns whether allowed and the RateLimit headers to send."""
        now = time.monotonic()
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = TokenBucket(self.capacity, now)
        else:
            bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.stamp) * self.rate)
            bucket.stamp = now
        allowed = bucket.tokens >= 1.0
        if allowed:
            bucket.tokens -= 1.0
        reset = math.ceil((self.capacity - bucket.tokens) / self.rate)
        headers = {
            "ratelimit-limit": str(int(self.capacity)),
            "ratelimit-remaining": str(int(bucket.tokens)),
            "ratelimit-reset": str(reset),
            "x-ratelimit-limit": str(int(self.capacity)),
            "x-ratelimit-remaining": str(int(bucket.tokens)),
        }
        if not allowed:
            headers["retry-after"] = str(max(1, math.ceil((1.0 - bucket.tokens) / self.rate)))
        return allowed, headers
