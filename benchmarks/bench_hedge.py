"""Hedging against a backend whose p99 is 10x its median.

Run: ``python benchmarks/bench_hedge.py [--calls 2000] [--concurrency 20]``

A simulated asyncio backend answers in 10 ms (uniform 8-12 ms) 96% of the
time and in 100-150 ms otherwise (a slow replica, a GC pause). The same
calls run bare and under ``hedge(percentile=0.95)`` (the hedge delay is
learnt from the latencies it observes). Reported: median and p99 latency and
the extra backend calls the hedges cost. Targets: p99 at least 3x lower with
at most 10% extra calls.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time

import paios_reliability as pr


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


async def run(
    calls: int, concurrency: int, hedged: bool, seed: int
) -> tuple[list[float], int]:
    rng = random.Random(seed)
    backend_calls = 0

    async def backend() -> str:
        nonlocal backend_calls
        backend_calls += 1
        slow = rng.random() < 0.04
        await asyncio.sleep(
            rng.uniform(0.1, 0.15) if slow else rng.uniform(0.008, 0.012)
        )
        return "ok"

    call = pr.hedge(percentile=0.95)(backend) if hedged else backend
    latencies: list[float] = []
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            began = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - began)

    await asyncio.gather(*(one() for _ in range(calls)))
    return latencies, backend_calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    print(f"{args.calls} calls, {args.concurrency} at a time")
    print(f"{'':<22} {'median':>9} {'p99':>9} {'backend calls':>14}")
    rows = {}
    for label, hedged in (("bare", False), ("hedge(p95)", True)):
        latencies, backend_calls = asyncio.run(
            run(args.calls, args.concurrency, hedged, 1)
        )
        rows[label] = percentile(latencies, 0.99)
        print(
            f"{label:<22} {statistics.median(latencies) * 1e3:>7.1f}ms "
            f"{rows[label] * 1e3:>7.1f}ms {backend_calls:>8} "
            f"(+{(backend_calls / args.calls - 1) * 100:.1f}%)"
        )
    print(f"p99 ratio: {rows['bare'] / rows['hedge(p95)']:.1f}x lower with hedging")


if __name__ == "__main__":
    main()
