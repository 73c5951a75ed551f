"""Type-checked (mypy --strict), never run: issue 19 policies keep exact types."""

from __future__ import annotations

from typing_extensions import assert_type

import paios_reliability as pr

budget = pr.RetryBudget("b", ratio=0.1, min_per_second=1, window=5.0)
assert_type(budget.try_withdraw(), bool)
assert_type(budget.withdraw(), tuple[bool, int, int])
assert_type(budget.snapshot(), pr.RetryBudgetState)
assert_type(budget.snapshot().available, int)
pr.RetryBudget("b", ratio="high")  # type: ignore[arg-type]


@pr.retry(attempts=3, budget=budget)
def fetch(url: str) -> bytes:
    return url.encode()


assert_type(fetch("x"), bytes)
pr.retry(budget=3)  # type: ignore[arg-type]


@pr.resilient(name="s", retry=True, retry_budget=budget)
async def afetch(url: str) -> bytes:
    return url.encode()


async def use() -> None:
    assert_type(await afetch("x"), bytes)
    assert_type(await budget.atry_withdraw(), bool)


limiter = pr.RateLimiter(
    "llm",
    limits=[pr.Limit(60, per=60, unit="call"), pr.Limit(90_000, per=60)],
)
reservation = limiter.acquire(cost=1200)
assert_type(reservation, pr.Reservation)
assert_type(reservation.cost, float)
limiter.settle(reservation, 800)
assert_type(limiter.try_acquire(cost=3), bool)
pr.RateLimiter("x", rate=1, per=1, limits=[])  # type: ignore[call-overload]
pr.Limit(1, per=1, unit="tokens")  # type: ignore[arg-type]


async def use_limiter() -> None:
    assert_type(await limiter.aacquire(cost=5), pr.Reservation)
    await limiter.asettle(reservation, 3)


def provider(prompt: str) -> str:
    return prompt


chain = pr.failover([("a", provider), ("b", provider)], name="llm")
assert_type(chain, pr.Failover)
assert_type(chain.labels, tuple[str, ...])
pr.failover([provider], breaker=3)  # type: ignore[arg-type]
error = pr.FailoverExhaustedError("x", failures=[("a", ValueError())])
assert_type(error.failures, tuple[tuple[str, BaseException], ...])


breakers = pr.CircuitBreaker.keyed("hosts", max_keys=10, key=lambda host: host)
assert_type(breakers, pr.KeyedPolicy[pr.CircuitBreaker])
assert_type(breakers.get("h"), pr.CircuitBreaker)
assert_type(pr.RateLimiter.keyed("t", rate=1, per=1).get("k"), pr.RateLimiter)
assert_type(pr.Bulkhead.keyed("b", max_concurrent=2).get("k"), pr.Bulkhead)
assert_type(len(breakers), int)


@pr.resilient(name="forecast", retry=True, stale_if_error=300.0)
def forecast(city: str) -> str:
    return city


assert_type(forecast("Oslo"), str)
pr.resilient(name="x", stale_if_error="5m")  # type: ignore[arg-type]


@pr.chaos(fault_rate=0.1, latency=(0.1, 0.5), latency_rate=0.2, seed=1)
def tool(x: int) -> int:
    return x


assert_type(tool(1), int)
assert_type(pr.set_chaos(True), pr.Restorer)
assert_type(pr.chaos_enabled(), bool)
pr.chaos(fault_rate="often")  # type: ignore[arg-type]


@pr.hedge(delay=0.2, max_hedges=2, budget=budget)
async def replica(key: str) -> bytes:
    return key.encode()


async def use_hedge() -> None:
    assert_type(await replica("k"), bytes)


pr.hedge(percentile="p99")  # type: ignore[arg-type]


adaptive = pr.AdaptiveLimiter("llm", initial=8, algorithm="aimd")
assert_type(adaptive.limit, int)


@adaptive.prioritized(1)
def interactive(prompt: str) -> str:
    return prompt


assert_type(interactive("x"), str)
assert_type(adaptive.call(interactive, "x"), str)
pr.AdaptiveLimiter("llm", algorithm="vegas")  # type: ignore[arg-type]
