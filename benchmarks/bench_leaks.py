"""What leak monitoring costs, side by side in one process.

Run: ``python benchmarks/bench_leaks.py [--seconds S]``

1. One RSS sample + verdict (``sample()`` + ``check()``) with a full one-hour
   window, timed directly: at one sample per second, the CPU share is the cost
   per sample divided by one second. Target: < 1 % of one core.
2. The real daemon thread, sampling as fast as every 10 ms for ``S`` seconds
   while the main thread sleeps: process CPU time per sample, scaled to one
   sample per second (includes thread wake-ups).
3. Why tracemalloc is never on by default: an allocation-heavy workload with
   tracemalloc off vs on (the docs quote 7-15x).
"""

from __future__ import annotations

import argparse
import gc
import platform
import time
import tracemalloc

import paios_reliability as pr
from paios_reliability.testing import FakeClock


def per_sample_direct(samples: int) -> float:
    clock = FakeClock()
    monitor = pr.LeakMonitor(clock=clock)
    for _ in range(3600 + 600):  # warm-up and a full window at 1 sample/s
        monitor.sample()
        clock.advance(1.0)
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(samples):
            monitor.sample()
            monitor.check()
            clock.advance(1.0)
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    return elapsed / samples


def per_sample_thread(seconds: float) -> tuple[float, int]:
    count = [0]
    monitor = pr.LeakMonitor()
    original = monitor.sample

    def counting() -> float | None:
        count[0] += 1
        return original()

    monitor.sample = counting  # type: ignore[method-assign]
    cpu = time.process_time()
    monitor.start(interval=0.01)
    time.sleep(seconds)
    monitor.stop()
    used = time.process_time() - cpu
    return used / max(1, count[0]), count[0]


def allocation_workload() -> float:
    start = time.perf_counter()
    for _ in range(20):
        items = [{"i": i, "s": str(i)} for i in range(20_000)]
        del items
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    print(
        f"Python {platform.python_version()} on {platform.system()} {platform.machine()}"
    )
    direct = per_sample_direct(3000)
    threaded, n = per_sample_thread(args.seconds)
    print(f"{'measure':<44}  {'us/sample':>10}  {'CPU at 1/s':>10}")
    print(
        f"{'sample() + check(), full 1 h window':<44}  {direct * 1e6:10.1f}  {direct:10.4%}"
    )
    print(
        f"{f'daemon thread ({n} samples, incl. wake-ups)':<44}  {threaded * 1e6:10.1f}  {threaded:10.4%}"
    )
    worst = max(direct, threaded)
    print(
        f"overhead at 1 sample/s: {worst:.4%} of one core; target < 1 %: "
        f"{'OK' if worst < 0.01 else 'OVER TARGET'}"
    )

    off = min(allocation_workload() for _ in range(3))
    tracemalloc.start()
    try:
        on = min(allocation_workload() for _ in range(3))
    finally:
        tracemalloc.stop()
    print(
        f"allocation-heavy workload: tracemalloc off {off * 1e3:.0f} ms, "
        f"on {on * 1e3:.0f} ms: {on / off:.1f}x slower"
    )


if __name__ == "__main__":
    main()
