"""Type-checked (mypy --strict), never run: breakers, limiters, bulkheads, stores."""

from __future__ import annotations

from typing import Literal

from typing_extensions import assert_type

import paios_reliability as pr
from paios_reliability.typing import StateStore

memory = pr.MemoryStore()
sqlite = pr.SQLiteStore("state.db", busy_timeout_ms=1000)
redis_store = pr.RedisStore("redis://localhost:6379/0", prefix="app", timeout=0.5)
stores: list[StateStore] = [memory, sqlite, redis_store]
assert_type(sqlite.shared, bool)

breaker = pr.CircuitBreaker(
    "github",
    failure_threshold=5,
    reset_timeout=30.0,
    failure_rate=0.5,
    store=sqlite,
    slow_call_duration=10.0,
    reset_timeout_max=300.0,
    fail_open=True,
)
limiter = pr.RateLimiter("api", rate=10, per=1.0, burst=5, store=redis_store)
bulkhead = pr.Bulkhead("sessions", max_concurrent=5, max_queue=10, max_wait=2.0)
throttle = pr.Throttle(300.0, store=memory)
threshold = pr.OccurrenceThreshold(5, 3600.0)

assert_type(breaker.state, Literal["closed", "open", "half_open"])
assert_type(breaker.stats, pr.CircuitBreakerStats)
assert_type(breaker.stats.retry_after, float | None)
assert_type(bulkhead.stats, pr.BulkheadStats)
assert_type(limiter.try_acquire(), bool)
assert_type(throttle.allow("key"), bool)
assert_type(threshold.record("key"), bool)
pr.CircuitBreaker("x", failure_threshold="5")  # type: ignore[arg-type]
pr.RateLimiter("x", rate=1)  # type: ignore[call-overload]
pr.Bulkhead("x")  # type: ignore[call-arg]
pr.CircuitBreaker("x", store="redis://")  # type: ignore[arg-type]


@breaker
def fetch(url: str, *, retries: int = 0) -> bytes:
    return url.encode()


@limiter
@bulkhead
def search(query: str, limit: int = 10) -> list[str]:
    return [query] * limit


@breaker
@limiter
@bulkhead
async def afetch(url: str) -> dict[str, int]:
    return {url: 1}


assert_type(fetch("u", retries=2), bytes)
assert_type(search("q", limit=3), list[str])
fetch(1)  # type: ignore[arg-type]
fetch("u", retries="many")  # type: ignore[arg-type]
search("q", 3, 4)  # type: ignore[call-arg]
assert_type(breaker.call(search, "q", limit=2), list[str])
breaker.call(search, 3)  # type: ignore[arg-type]
assert_type(bulkhead.call(fetch, "u"), bytes)


async def use_async() -> None:
    assert_type(await afetch("u"), dict[str, int])
    await afetch(b"u")  # type: ignore[arg-type]
    assert_type(await breaker.acall(afetch, "u"), dict[str, int])
    assert_type(await bulkhead.acall(afetch, "u"), dict[str, int])
    await limiter.aacquire()
    assert_type(await limiter.atry_acquire(), bool)
    assert_type(await throttle.aallow("k"), bool)
    assert_type(await threshold.arecord("k"), bool)
    async with breaker, limiter, bulkhead:
        pass


with breaker, limiter, bulkhead:
    limiter.acquire()
breaker.trip()
breaker.reset()
try:
    fetch("u")
except pr.CircuitOpenError as exc:
    assert_type(exc.retry_after, float | None)
except pr.StoreUnavailableError as down:
    assert_type(down.store, str)


@pr.resilient(name="tool", breaker=breaker, limiter=limiter, bulkhead=bulkhead)
async def tool(query: str, limit: int = 5) -> list[str]:
    return [query] * limit


async def use_resilient() -> None:
    assert_type(await tool("q", limit=1), list[str])
    await tool(1)  # type: ignore[arg-type]
