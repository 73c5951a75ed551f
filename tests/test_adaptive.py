"""AdaptiveLimiter: a concurrency limit that follows latency and overload (issue 19)."""

from __future__ import annotations

import asyncio
import contextlib
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

import paios_reliability as pr
from paios_reliability import AdaptiveLimiter, BulkheadFullError, RateLimitedError
from paios_reliability._policies.adaptive import next_limit
from paios_reliability.testing import capture_events


def test_adaptive_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="min_limit <= initial"):
        AdaptiveLimiter("a", initial=100, max_limit=64)
    with pytest.raises(ValueError, match="algorithm"):
        AdaptiveLimiter("a", algorithm="vegas")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min_limit"):
        AdaptiveLimiter("a", min_limit=0)
    with pytest.raises(TypeError, match="priority"):
        AdaptiveLimiter("a").prioritized("high")  # type: ignore[arg-type]


@given(
    algorithm=st.sampled_from(["gradient", "aimd"]),
    limit=st.floats(1, 64),
    overload=st.booleans(),
    latency=st.floats(0, 10),
    long_rtt=st.floats(0, 10),
    short_rtt=st.floats(0, 10),
)
def test_next_limit_stays_within_bounds_and_overload_never_grows(
    algorithm: str,
    limit: float,
    overload: bool,
    latency: float,
    long_rtt: float,
    short_rtt: float,
) -> None:
    new = next_limit(
        algorithm,  # type: ignore[arg-type]
        limit,
        overload=overload,
        latency=latency,
        long_rtt=long_rtt,
        short_rtt=short_rtt,
        min_limit=1,
        max_limit=64,
    )
    assert 1 <= new <= 64
    if overload:
        assert new <= limit


def test_finding_19_overload_shrinks_and_success_grows_the_limit() -> None:
    limiter = AdaptiveLimiter("llm", initial=20, algorithm="aimd")

    def overloaded() -> None:
        raise RateLimitedError("429", retry_after=1)

    with capture_events() as events:
        for _ in range(5):
            with pytest.raises(RateLimitedError):
                limiter.call(overloaded)
    assert limiter.limit == 11  # 20 * 0.9 ** 5 = 11.8
    assert any(e.name.endswith("adaptive_limiter.limit_changed") for e in events)
    for _ in range(200):
        limiter.call(lambda: None)
    assert limiter.limit > 11


def test_finding_19_other_errors_leave_the_limit_alone() -> None:
    limiter = AdaptiveLimiter("x", initial=8)

    def bug() -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        limiter.call(bug)
    assert limiter.limit == 8
    assert limiter.in_flight == 0


def test_finding_19_full_limiter_refuses_and_sheds_low_priority_first() -> None:
    limiter = AdaptiveLimiter("tools", initial=10, min_limit=10, max_limit=10)
    held = [limiter.acquire(priority=1) for _ in range(5)]
    with pytest.raises(BulkheadFullError):
        limiter.acquire(priority=-1)  # background: only below half the limit
    held += [limiter.acquire() for _ in range(4)]
    with pytest.raises(BulkheadFullError, match="priority 0"):
        limiter.acquire()  # normal: the last 10% is kept for interactive work
    held.append(limiter.acquire(priority=1))
    with pytest.raises(BulkheadFullError):
        limiter.acquire(priority=1)
    for slot in held:
        limiter.release(slot)
    assert limiter.in_flight == 0


def test_finding_19_concurrency_never_exceeds_the_limit() -> None:
    limiter = AdaptiveLimiter("c", initial=3, min_limit=3, max_limit=3)
    inside = 0
    peak = 0
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def work() -> None:
        nonlocal inside, peak
        with lock:
            inside += 1
            peak = max(peak, inside)
        with lock:
            inside -= 1

    def worker() -> None:
        barrier.wait()
        for _ in range(200):
            with contextlib.suppress(BulkheadFullError):
                limiter.prioritized(1)(work)()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert peak <= 3
    assert limiter.in_flight == 0


def test_finding_19_async_slot_and_resilient_bulkhead() -> None:
    limiter = AdaptiveLimiter("agent", initial=4)

    @pr.resilient(name="step", bulkhead=limiter)
    async def step(n: int) -> int:
        await asyncio.sleep(0)
        return n

    async def block() -> int:
        async with limiter.slot(priority=1):
            assert limiter.in_flight == 1
        return limiter.in_flight

    async def main() -> list[int]:
        return [*await asyncio.gather(*(step(i) for i in range(3))), await block()]

    assert asyncio.run(main()) == [0, 1, 2, 0]


def test_finding_19_timeouts_count_as_overload() -> None:
    limiter = AdaptiveLimiter("t", initial=10)

    def slow() -> None:
        raise pr.TimeoutExceeded("slow", seconds=1.0)

    with pytest.raises(pr.TimeoutExceeded):
        limiter.call(slow)
    assert limiter.limit == 9
