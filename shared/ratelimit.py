"""Token buckets per key (pure: time comes in as ``now``, in seconds of a monotonic clock).

Each process keeps its own buckets, so with N replicas behind a balancer a client gets up to N
times the rate; the limits are there to keep one flooding client from crowding out the others,
not to meter usage exactly."""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """``rate`` requests per second per key, with bursts of up to ``burst``. At most
    ``max_keys`` keys are remembered (the least recently seen are forgotten: a forgotten key
    starts again with a full bucket, which errs on the side of letting a client through)."""

    def __init__(self, rate: float, burst: int, *, max_keys: int = 100_000) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def acquire(self, key: str, now: float) -> float:
        """Take one token for ``key``: 0.0 when allowed, else the seconds to wait."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(float(self.burst), now)
            self._buckets[key] = bucket
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            elapsed = max(now - bucket.updated, 0.0)
            bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
            bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate


def retry_after_header(wait_s: float) -> str:
    """Retry-After in whole seconds, never 0."""
    return str(max(1, math.ceil(wait_s)))
