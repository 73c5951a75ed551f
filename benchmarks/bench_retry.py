"""Success-path overhead of retry decorators, side by side in one process.

Run: ``python benchmarks/bench_retry.py [--calls N] [--repeat R]``

Every library decorates the same trivial function (sync and async) and the
time per call is compared with the bare, undecorated call. The number that
matters is the *added* time per successful call: that is what a retry policy
costs on every call of a healthy dependency. Targets for paios_reliability:
<= 1 us added per sync call and <= 1.5 us per async call.

Peers: tenacity and stamina (both required), backoff (if installed).

A second table measures how soon ``@timeout(s)`` on a *sync* function gives
control back when the work overruns (the worker thread is abandoned, then
released so the pooled workers are reused): the contract is within ``s`` +
50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import logging
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import paios_reliability as pr


def _best(run: Callable[[int], float], calls: int, repeat: int) -> float:
    """Best time per call in seconds over ``repeat`` rounds of ``calls`` calls."""
    best = float("inf")
    for _ in range(repeat):
        gc.disable()
        try:
            elapsed = run(calls)
        finally:
            gc.enable()
        best = min(best, elapsed / calls)
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

    def run(calls: int) -> float:
        return asyncio.run(loop(calls))

    return run


def _contenders() -> dict[str, Callable[[Callable[..., Any]], Callable[..., Any]]]:
    import stamina
    import tenacity

    found: dict[str, Callable[[Callable[..., Any]], Callable[..., Any]]] = {
        "bare": lambda fn: fn,
        "paios_reliability": pr.retry(attempts=5, deadline=30.0),
        "tenacity": tenacity.retry(
            stop=tenacity.stop_after_attempt(5),
            wait=tenacity.wait_random_exponential(multiplier=0.1, max=10.0),
            retry=tenacity.retry_if_exception_type(OSError),
            reraise=True,
        ),
        "stamina": stamina.retry(on=OSError, attempts=5, timeout=30.0),
    }
    if importlib.util.find_spec("backoff") is not None:
        import backoff

        found["backoff"] = backoff.on_exception(
            backoff.expo, OSError, max_tries=5, max_time=30.0
        )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--timeout-runs", type=int, default=50)
    args = parser.parse_args(argv)
    # Events (abandoned timeouts) must not print into the tables.
    quiet = logging.getLogger("paios_reliability")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False

    def plain(x: int) -> int:
        return x

    async def coro(x: int) -> int:
        return x

    rows: list[tuple[str, str, float]] = []
    for label, decorate in _contenders().items():
        rows.append(
            (
                "sync",
                label,
                _best(_sync_runner(decorate(plain)), args.calls, args.repeat),
            )
        )
    for label, decorate in _contenders().items():
        async_calls = max(1, args.calls // 2)
        rows.append(
            (
                "async",
                label,
                _best(_async_runner(decorate(coro)), async_calls, args.repeat),
            )
        )

    print(
        f"retry success-path overhead - Python {platform.python_version()} "
        f"on {platform.machine()}, {args.calls} calls x {args.repeat} (best)"
    )
    if "backoff" not in {label for _, label, _ in rows}:
        print("(backoff is not installed: pip install backoff to include it)")
    header = f"{'mode':<6} {'library':<18} {'per call':>10} {'added':>10} {'added vs ours':>14}"
    print(header)
    print("-" * len(header))
    for mode in ("sync", "async"):
        per_mode = {label: t for m, label, t in rows if m == mode}
        bare = per_mode["bare"]
        ours_added = max(per_mode["paios_reliability"] - bare, 1e-9)
        for label, t in per_mode.items():
            added = t - bare
            ratio = "" if label == "bare" else f"{added / ours_added:>13.1f}x"
            print(
                f"{mode:<6} {label:<18} {t * 1e6:>8.3f}us {added * 1e6:>8.3f}us {ratio:>14}"
            )
        target = 1.0 if mode == "sync" else 1.5
        verdict = "OK" if ours_added * 1e6 <= target else "OVER"
        print(
            f"{mode:<6} paios_reliability added {ours_added * 1e6:.3f}us "
            f"(target <= {target}us: {verdict})"
        )
    _timeout_latency(args.timeout_runs)
    return 0


def _timeout_latency(runs: int) -> None:
    """How late ``@timeout(s)`` returns control for a sync call that overruns."""
    import threading

    budget = 0.02
    releases: list[threading.Event] = []

    @pr.timeout(budget)
    def stuck(release: threading.Event) -> None:
        release.wait(5)

    lateness: list[float] = []
    for run in range(runs + 1):
        release = threading.Event()
        releases.append(release)
        start = time.perf_counter()
        try:
            stuck(release)
        except pr.TimeoutExceeded:
            if run:  # the first one pays for importing the logging stack
                lateness.append(time.perf_counter() - start - budget)
        # Let the abandoned worker end, as cooperative code would: at most
        # 32 abandoned calls may run at once per process.
        release.set()
    lateness.sort()
    p50 = lateness[len(lateness) // 2] * 1e3
    p99 = lateness[min(len(lateness) - 1, int(len(lateness) * 0.99))] * 1e3
    worst = lateness[-1] * 1e3
    verdict = "OK" if worst <= 50.0 else "OVER"
    print()
    print(f"sync @timeout({budget}) control returned after the budget, {runs} runs:")
    print(
        f"  late by p50 {p50:.3f} ms, p99 {p99:.3f} ms, max {worst:.3f} ms (contract <= 50 ms: {verdict})"
    )


if __name__ == "__main__":
    sys.exit(main())
