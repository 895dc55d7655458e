from hypothesis import given
from hypothesis import strategies as st

from shared.ratelimit import RateLimiter, retry_after_header


def test_a_burst_is_allowed_then_the_rate_refills_it():
    limiter = RateLimiter(rate=2, burst=3)
    assert [limiter.acquire("k", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("k", 0.0) == 0.5  # one token comes back in half a second
    assert limiter.acquire("k", 0.5) == 0.0
    assert limiter.acquire("other", 0.5) == 0.0
    assert retry_after_header(0.2) == "1" and retry_after_header(2.1) == "3"


def test_forgotten_keys_start_again_with_a_full_bucket():
    limiter = RateLimiter(rate=1, burst=1, max_keys=2)
    limiter.acquire("a", 0)
    limiter.acquire("b", 0)
    limiter.acquire("c", 0)  # forgets a
    assert limiter.acquire("a", 0) == 0.0
    assert limiter.acquire("c", 0) > 0


@given(st.lists(st.floats(0, 0.5), min_size=1, max_size=300), st.integers(1, 20))
def test_allowed_requests_never_exceed_the_burst_plus_the_rate_over_the_time(gaps, burst):
    limiter = RateLimiter(rate=5, burst=burst)
    now, allowed = 0.0, 0
    for gap in gaps:
        now += gap
        allowed += limiter.acquire("k", now) == 0.0
    assert allowed <= burst + 5 * now + 1e-9
