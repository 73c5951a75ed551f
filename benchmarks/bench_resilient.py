"""The whole policy stack, side by side with the peers people combine by hand.

Run: ``python benchmarks/bench_resilient.py [--calls N] [--repeat R] [--hang-calls H]``

Four measurements, in one process:

1. Sync success path: ``resilient(timeout + retry + breaker + limiter +
   bulkhead)`` against tenacity + pybreaker + a thread-pool timeout (the
   usual hand-made equivalent), as time *added* per call over the bare
   function. Target: <= 20 us added (a thread per call cost ~1,000 us).
2. Async success path: the same stack against backoff + circuitbreaker +
   limits + asyncio.Semaphore + asyncio.timeout. Target: <= 12 us added.
3. Breaker open: how long a resilient call takes to fail when its breaker
   is open (with the documented defaults: retry deadline 30 s, reset 30 s).
   Target: < 1 ms (it used to wait ~30 s).
4. Hanging downstream, ``timeout=1, deadline=3``: H concurrent calls, sync
   and async; every one must return within 3 s + 100 ms.

Ratios and verdicts are printed; nothing here is a test.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import gc
import logging
import platform
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import paios_reliability as pr

SYNC_TARGET_US = 20.0
ASYNC_TARGET_US = 12.0
OPEN_TARGET_MS = 1.0


def _best(run: Callable[[int], float], calls: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.disable()
        try:
            best = min(best, run(calls) / calls)
        finally:
            gc.enable()
    return best


def _sync_runner(fn: Callable[[int], int]) -> Callable[[int], float]:
    def run(calls: int) -> float:
        start = time.perf_counter()
        for i in range(calls):
            fn(i)
        return time.perf_counter() - start

    return run


def _async_runner(fn: Callable[[int], Awaitable[int]]) -> Callable[[int], float]:
    async def loop(calls: int) -> float:
        start = time.perf_counter()
        for i in range(calls):
            await fn(i)
        return time.perf_counter() - start

    return lambda calls: asyncio.run(loop(calls))


def _ours(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return pr.resilient(
        name=name,
        timeout=5.0,
        retry=True,
        breaker=pr.CircuitBreaker(name),
        limiter=pr.RateLimiter(name, rate=1e9, per=1.0),
        bulkhead=pr.Bulkhead(name, max_concurrent=100),
    )


def _sync_peer() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    import pybreaker
    import tenacity

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=8)
    breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)
    semaphore = threading.BoundedSemaphore(100)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any) -> Any:
            with semaphore:
                return pool.submit(fn, *args).result(timeout=5.0)

        return tenacity.retry(
            stop=tenacity.stop_after_attempt(5) | tenacity.stop_after_delay(30),
            wait=tenacity.wait_random_exponential(multiplier=0.1, max=10.0),
            retry=tenacity.retry_if_exception_type(OSError),
            reraise=True,
        )(breaker(timed))

    return decorate


def _async_peer() -> Callable[[Callable[..., Any]], Callable[..., Any]] | None:
    try:
        import backoff
        import circuitbreaker
        from limits import RateLimitItemPerSecond
        from limits.aio.storage import MemoryStorage
        from limits.aio.strategies import MovingWindowRateLimiter
    except ImportError:
        return None
    timeout_cm: Callable[[float], Any] = getattr(asyncio, "timeout", None) or (_WaitFor)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        limiter = MovingWindowRateLimiter(MemoryStorage())
        item = RateLimitItemPerSecond(1_000_000_000)
        semaphore = asyncio.Semaphore(100)

        @backoff.on_exception(backoff.expo, OSError, max_tries=5, max_time=30)
        @circuitbreaker.circuit(failure_threshold=5, recovery_timeout=30)
        async def call(*args: Any) -> Any:
            if not await limiter.hit(item, "bench"):
                raise OSError("rate limited")
            async with semaphore, timeout_cm(5.0):
                return await fn(*args)

        return call

    return decorate


class _WaitFor:  # Python 3.10 has no asyncio.timeout: a no-op stand-in
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


def _table(title: str, rows: dict[str, float], target_us: float) -> float:
    bare = rows["bare"]
    ours = rows["paios_reliability"] - bare
    print(title)
    for label, t in rows.items():
        added = t - bare
        ratio = (
            "" if label in ("bare", "paios_reliability") else f"{added / ours:6.1f}x"
        )
        print(
            f"  {label:<34} {t * 1e6:9.2f} us/call  added {added * 1e6:9.2f} us {ratio}"
        )
    verdict = "OK" if ours * 1e6 <= target_us else "OVER"
    print(
        f"  paios_reliability added {ours * 1e6:.2f} us (target <= {target_us:g} us: {verdict})"
    )
    return ours


def bench_success(calls: int, repeat: int) -> None:
    def plain(x: int) -> int:
        return x

    async def coro(x: int) -> int:
        return x

    sync_rows = {
        "bare": _best(_sync_runner(plain), calls, repeat),
        "paios_reliability": _best(
            _sync_runner(_ours("bench.sync")(plain)), calls, repeat
        ),
        "tenacity+pybreaker+thread timeout": _best(
            _sync_runner(_sync_peer()(plain)), calls, repeat
        ),
    }
    _table(
        "sync resilient(timeout, retry, breaker, limiter, bulkhead), success path:",
        sync_rows,
        SYNC_TARGET_US,
    )
    async_calls = max(1, calls)
    async_rows = {
        "bare": _best(_async_runner(coro), async_calls, repeat),
        "paios_reliability": _best(
            _async_runner(_ours("bench.async")(coro)), async_calls, repeat
        ),
    }
    peer = _async_peer()
    if peer is not None:
        async_rows["backoff+circuitbreaker+limits+sem+timeout"] = _best(
            _async_runner(peer(coro)), async_calls, repeat
        )
    else:
        print("(install backoff, circuitbreaker and limits to compare async peers)")
    _table("async, the same stack, success path:", async_rows, ASYNC_TARGET_US)


def bench_open_breaker(runs: int) -> None:
    breaker = pr.CircuitBreaker("bench.open", reset_timeout=30.0)
    fn = pr.resilient(name="bench.open", timeout=10.0, retry=True, breaker=breaker)(
        lambda: "never"
    )
    breaker.trip()
    for _ in range(5):  # warm up: first-use imports and log handlers
        with contextlib.suppress(pr.CircuitOpenError):
            fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        with contextlib.suppress(pr.CircuitOpenError):
            fn()
        times.append(time.perf_counter() - start)
    times.sort()
    median = times[len(times) // 2] * 1e3
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))] * 1e3
    verdict = "OK" if median < OPEN_TARGET_MS else "OVER"
    print(
        f"breaker open, retry=True, reset 30 s: fails in {median:.3f} ms median, "
        f"{p99:.3f} ms p99 over {runs} calls (target < {OPEN_TARGET_MS:g} ms median: "
        f"{verdict}; it used to wait ~30 s)"
    )


def bench_hanging(calls: int) -> None:
    release = threading.Event()

    @pr.resilient(name="bench.hang.sync", timeout=1.0, deadline=3.0, retry=True)
    def hang_sync() -> None:
        release.wait(60)

    @pr.resilient(name="bench.hang.async", timeout=1.0, deadline=3.0, retry=True)
    async def hang_async() -> None:
        await asyncio.sleep(60)

    def timed_sync() -> float:
        start = time.perf_counter()
        with contextlib.suppress(pr.TimeoutExceeded):
            hang_sync()
        return time.perf_counter() - start

    async def timed_async() -> float:
        start = time.perf_counter()
        with contextlib.suppress(pr.TimeoutExceeded):
            await hang_async()
        return time.perf_counter() - start

    async def all_async() -> list[float]:
        return list(await asyncio.gather(*(timed_async() for _ in range(calls))))

    with concurrent.futures.ThreadPoolExecutor(calls) as pool:
        sync_times = list(pool.map(lambda _: timed_sync(), range(calls)))
    release.set()
    async_times = asyncio.run(all_async())
    print(
        f"hanging downstream, timeout=1, deadline=3 (worst case stated: "
        f"{hang_async.policy.worst_case_seconds:g} s), {calls} concurrent calls:"
    )
    for label, times in (("sync", sync_times), ("async", async_times)):
        worst = max(times)
        verdict = "OK" if worst <= 3.1 else "OVER"
        print(
            f"  {label:<5} returned after {min(times):.3f}..{worst:.3f} s "
            f"(limit 3.1 s: {verdict})"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--hang-calls", type=int, default=20)
    args = parser.parse_args(argv)
    quiet = logging.getLogger("paios_reliability")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    print(
        f"resilient stack - Python {platform.python_version()} on "
        f"{platform.machine()}, {args.calls} calls x {args.repeat} (best)"
    )
    bench_success(args.calls, args.repeat)
    bench_open_breaker(200)
    if args.hang_calls:
        bench_hanging(args.hang_calls)
    return 0


if __name__ == "__main__":
    sys.exit(main())
