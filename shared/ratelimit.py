"""Token buckets per key (pure: time comes in as ``now``, in seconds of a monotonic clock).

Each process keeps its own buckets, so with N replicas behind a balancer a client gets up to N
times the rate; the limits are there to keep one flooding client from crowding out the others,
not to meter usage exactly."""

from __future__ import annotations

import math
from collections import OrderedDict


class RateLimiter:
    """``rate`` requests per second per key, with bursts of up to ``burst``. At most
    ``max_keys`` keys are remembered (the least recently seen are forgotten: a forgotten key
    starts again with a full bucket, which errs on the side of letting a client through)."""

    def __init__(self, rate: float, burst: int, *, max_keys: int = 100_000) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        # key -> (tokens, updated): a tuple of floats, which the garbage collector stops
        # tracking, where an object per bucket made every full collection walk 100,000 of
        # them (ingest under load: issue 14).
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def acquire(self, key: str, now: float) -> float:
        """Take one token for ``key``: 0.0 when allowed, else the seconds to wait."""
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            tokens = float(self.burst)
            buckets[key] = (tokens, now)
            if len(buckets) > self.max_keys:
                buckets.popitem(last=False)
        else:
            buckets.move_to_end(key)
            elapsed = max(now - bucket[1], 0.0)
            tokens = min(self.burst, bucket[0] + elapsed * self.rate)
        if tokens >= 1:
            buckets[key] = (tokens - 1, now)
            return 0.0
        buckets[key] = (tokens, now)
        return (1 - tokens) / self.rate


def retry_after_header(wait_s: float) -> str:
    """Retry-After in whole seconds, never 0."""
    return str(max(1, math.ceil(wait_s)))
