"""Per-key token buckets: `rate` tokens a second, bursts up to twice that.

`RateLimiter` keeps them in memory (one node: no I/O on the request path); `SharedRateLimiter` keeps
them in the database, one row per key updated by one statement per request, so a key's limit holds
across every node sharing that database.
"""

from __future__ import annotations

import math
import time
from typing import Any


class TokenBucket:
    __slots__ = ("stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp


class RateLimiter:
    shared = False
    """Whether buckets live in the database (take() then does I/O: call it off the event loop)."""

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
        return allowed, self.headers(allowed, bucket.tokens)

    def headers(self, allowed: bool, tokens: float) -> dict[str, str]:
        """The RateLimit headers for a bucket left with `tokens`."""
        reset = math.ceil((self.capacity - tokens) / self.rate)
        headers = {
            "ratelimit-limit": str(int(self.capacity)),
            "ratelimit-remaining": str(int(tokens)),
            "ratelimit-reset": str(reset),
            "x-ratelimit-limit": str(int(self.capacity)),
            "x-ratelimit-remaining": str(int(tokens)),
        }
        if not allowed:
            headers["retry-after"] = str(max(1, math.ceil((1.0 - tokens) / self.rate)))
        return headers


class SharedRateLimiter(RateLimiter):
    """The same buckets in the `rate_limits` table: refill and spend in one upsert per request.

    Time is each node's wall clock (nodes keep it in sync with NTP); a bucket's stamp never moves back,
    so a node whose clock is behind adds no tokens instead of negative ones.
    """

    shared = True

    def __init__(self, rate: float, database: Any, burst_factor: float = 2.0) -> None:
        super().__init__(rate, burst_factor)
        self.database = database
        gain = f"(CASE WHEN excluded.stamp > rate_limits.stamp THEN excluded.stamp - rate_limits.stamp ELSE 0 END)" \
               f" * {float(self.rate)!r}"
        refill = f"(CASE WHEN rate_limits.tokens + {gain} > {float(self.capacity)!r} THEN {float(self.capacity)!r}" \
                 f" ELSE rate_limits.tokens + {gain} END)"
        self.sql = (
            "INSERT INTO rate_limits (bucket, tokens, stamp, allowed) VALUES (?, ?, ?, 1) ON CONFLICT (bucket)"
            f" DO UPDATE SET tokens = {refill} - (CASE WHEN {refill} >= 1 THEN 1 ELSE 0 END),"
            f" allowed = (CASE WHEN {refill} >= 1 THEN 1 ELSE 0 END),"
            " stamp = (CASE WHEN excluded.stamp > rate_limits.stamp THEN excluded.stamp ELSE rate_limits.stamp END)"
            " RETURNING tokens, allowed"
        )

    def take(self, key: str) -> tuple[bool, dict[str, str]]:
        """Spend one token for `key` in the database (blocking: call it in a worker thread)."""
        with self.database.transaction() as conn:
            tokens, allowed = conn.execute(self.sql, (key, self.capacity - 1.0, time.time())).fetchone()
        return bool(allowed), self.headers(bool(allowed), tokens)
