"""Circuit breakers side by side, in one process: overhead, fail-fast, threads.

Run: python benchmarks/bench_breaker.py [--quick]

Measures, for paios_reliability and pybreaker, circuitbreaker, purgatory and
aiobreaker (each where its API allows):

1. closed-path overhead of a sync call (decorated no-op minus bare no-op);
   target for ours: <= 1 us with correct locking;
2. open-path fail-fast cost per rejected call (raise + catch), and the memory
   retained per rejection after the errors are dropped (tracemalloc); target
   for ours: <= 1.5 us and nothing retained;
3. 8 threads x 1 ms of I/O per call through one shared breaker, throughput vs
   bare calls; target for ours: >= 0.95x;
4. async closed-path overhead (ours, aiobreaker, purgatory).

Absolute numbers depend on the machine; the ratios between libraries, taken in
the same process minutes apart, are the point.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import statistics
import sys
import threading
import time
import timeit
import tracemalloc
import warnings
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import aiobreaker
import circuitbreaker
import purgatory
import pybreaker

import paios_reliability as pr

QUICK = "--quick" in sys.argv
N = 50_000 if QUICK else 300_000
REPEAT = 3 if QUICK else 7


def noop() -> int:
    return 1


def per_call(fn: Callable[[], Any], number: int = N) -> float:
    """Best-of-REPEAT seconds per call."""
    return min(timeit.repeat(fn, number=number, repeat=REPEAT)) / number


# -- the contenders --------------------------------------------------------------------


def ours_closed() -> Callable[[], Any]:
    return pr.CircuitBreaker("bench")(noop)


def pybreaker_closed() -> Callable[[], Any]:
    return pybreaker.CircuitBreaker(fail_max=5)(noop)


def circuitbreaker_closed() -> Callable[[], Any]:
    return circuitbreaker.circuit(failure_threshold=5, recovery_timeout=30)(noop)


def purgatory_closed() -> Callable[[], Any]:
    factory = purgatory.SyncCircuitBreakerFactory(default_threshold=5, default_ttl=30)
    return factory("bench")(noop)


class Boom(Exception):
    pass


def fails() -> int:
    raise Boom


def ours_open() -> tuple[Callable[[], Any], type[BaseException]]:
    breaker = pr.CircuitBreaker("bench-open")
    breaker.trip()
    return breaker(noop), pr.CircuitOpenError


def pybreaker_open() -> tuple[Callable[[], Any], type[BaseException]]:
    breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=3600)
    breaker.open()
    return breaker(noop), pybreaker.CircuitBreakerError


def circuitbreaker_open() -> tuple[Callable[[], Any], type[BaseException]]:
    breaker = circuitbreaker.CircuitBreaker(
        failure_threshold=1, recovery_timeout=3600, expected_exception=Boom
    )
    failing = breaker(fails)
    with contextlib.suppress(Boom):
        failing()
    return breaker(noop), circuitbreaker.CircuitBreakerError


def purgatory_open() -> tuple[Callable[[], Any], type[BaseException]]:
    factory = purgatory.SyncCircuitBreakerFactory(default_threshold=1, default_ttl=3600)
    failing = factory("bench-open")(fails)
    with contextlib.suppress(Boom):
        failing()
    return factory("bench-open")(noop), purgatory.domain.model.OpenedState


CLOSED = {
    "paios_reliability": ours_closed,
    "pybreaker": pybreaker_closed,
    "circuitbreaker": circuitbreaker_closed,
    "purgatory": purgatory_closed,
}
OPEN = {
    "paios_reliability": ours_open,
    "pybreaker": pybreaker_open,
    "circuitbreaker": circuitbreaker_open,
    "purgatory": purgatory_open,
}


# -- 1. closed-path overhead ----------------------------------------------------------


def bench_closed() -> dict[str, float]:
    bare = per_call(noop)
    results = {}
    for name, make in CLOSED.items():
        results[name] = max(0.0, per_call(make()) - bare)
    print(f"\n1. closed path, sync: overhead per call (bare call {bare * 1e9:.0f} ns)")
    report(results, unit=1e6, label="us", target=("paios_reliability", 1.0))
    return results


# -- 2. open fail-fast -------------------------------------------------------------


def rejecting(fn: Callable[[], Any], error: type[BaseException]) -> Callable[[], None]:
    def reject() -> None:
        try:  # noqa: SIM105 - contextlib.suppress would dominate what we measure
            fn()
        except error:
            pass

    return reject


def retained_per_rejection(fn: Callable[[], Any], error: type[BaseException]) -> float:
    reject = rejecting(fn, error)
    for _ in range(1000):
        reject()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        count = 20_000
        for _ in range(count):
            reject()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return max(0, after - before) / count


def bench_open() -> dict[str, float]:
    results, memory = {}, {}
    for name, make in OPEN.items():
        fn, error = make()
        results[name] = per_call(rejecting(fn, error), N // 2)
        memory[name] = retained_per_rejection(fn, error)
    print("\n2. open path, sync: cost per rejected call (raise + catch)")
    report(results, unit=1e6, label="us", target=("paios_reliability", 1.5))
    print("   memory retained per rejection after the errors are dropped:")
    for name, size in memory.items():
        print(f"     {name:<18} {size:8.1f} B")
    return results


# -- 3. threads doing I/O through one breaker -------------------------------------------


def io_call() -> int:
    time.sleep(0.001)
    return 1


def throughput(fn: Callable[[], Any], threads: int = 8, seconds: float = 1.0) -> float:
    stop = time.monotonic() + seconds
    counts = [0] * threads
    start = threading.Barrier(threads)

    def worker(i: int) -> None:
        start.wait()
        n = 0
        while time.monotonic() < stop:
            fn()
            n += 1
        counts[i] = n

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    began = time.monotonic()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(counts) / (time.monotonic() - began)


def bench_threads() -> dict[str, float]:
    seconds = 0.5 if QUICK else 1.5
    contenders: dict[str, Callable[[], Any]] = {
        "paios_reliability": pr.CircuitBreaker("bench-io")(io_call),
        "pybreaker": pybreaker.CircuitBreaker(fail_max=5)(io_call),
        "circuitbreaker": circuitbreaker.circuit(failure_threshold=5)(io_call),
        "purgatory": purgatory.SyncCircuitBreakerFactory()("bench-io")(io_call),
    }
    rounds = 1 if QUICK else 3
    bare_runs, runs = [], {name: [] for name in contenders}
    for _ in range(rounds):  # interleave, so drift hits everyone alike
        bare_runs.append(throughput(io_call, seconds=seconds))
        for name, fn in contenders.items():
            runs[name].append(throughput(fn, seconds=seconds))
    bare = statistics.median(bare_runs)
    print(f"\n3. 8 threads x 1 ms I/O through one breaker (bare: {bare:,.0f} calls/s)")
    ratios = {}
    for name, values in runs.items():
        value = statistics.median(values)
        ratios[name] = value / bare
        flag = ""
        if name == "paios_reliability":
            flag = (
                "  (target >= 0.95x: "
                + ("met" if ratios[name] >= 0.95 else "MISSED")
                + ")"
            )
        print(f"     {name:<18} {value:10,.0f} calls/s  {ratios[name]:.3f}x bare{flag}")
    return ratios


# -- 4. async closed path --------------------------------------------------------------


async def anoop() -> int:
    return 1


def bench_async() -> dict[str, float]:
    ours = pr.CircuitBreaker("bench-async")(anoop)
    aio = aiobreaker.CircuitBreaker(fail_max=5, timeout_duration=timedelta(seconds=30))
    factory = purgatory.AsyncCircuitBreakerFactory(default_threshold=5, default_ttl=30)
    count = N // 5

    async def loop(fn: Callable[[], Any]) -> float:
        best = float("inf")
        for _ in range(REPEAT):
            began = time.perf_counter()
            for _ in range(count):
                await fn()
            best = min(best, (time.perf_counter() - began) / count)
        return best

    async def main() -> dict[str, float]:
        bare = await loop(anoop)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            breaker = await factory.get_breaker("bench")

            async def purgatory_call() -> int:
                async with breaker:
                    return await anoop()

            return {
                "paios_reliability": await loop(ours) - bare,
                "aiobreaker": await loop(lambda: aio.call_async(anoop)) - bare,
                "purgatory": await loop(purgatory_call) - bare,
            }

    results = asyncio.run(main())
    print("\n4. closed path, async: overhead per awaited call")
    report(results, unit=1e6, label="us")
    return results


def report(
    results: dict[str, float],
    *,
    unit: float,
    label: str,
    target: tuple[str, float] | None = None,
) -> None:
    ours = results["paios_reliability"]
    for name, value in results.items():
        ratio = value / ours if ours else float("inf")
        note = "" if name == "paios_reliability" else f"  ({ratio:5.1f}x ours)"
        print(f"     {name:<18} {value * unit:8.3f} {label}{note}")
    if target is not None:
        name, limit = target
        met = results[name] * unit <= limit
        print(
            f"     target for {name}: <= {limit} {label}: {'met' if met else 'MISSED on this machine'}"
        )


def main() -> None:
    print(
        f"Python {sys.version.split()[0]}, {N:,} calls per measurement, best of {REPEAT}"
    )
    bench_closed()
    bench_open()
    bench_threads()
    bench_async()


if __name__ == "__main__":
    main()
