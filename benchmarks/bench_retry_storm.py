"""Retry storm: load amplification against a dead downstream, with and without a budget.

Run: ``python benchmarks/bench_retry_storm.py [--callers 100] [--calls 20]``

``--callers`` concurrent asyncio tasks each make ``--calls`` calls through
``@retry(attempts=5)`` to a downstream that always fails with a transient
error. *Amplification* is downstream attempts divided by calls: 5x without a
budget (every call uses all its attempts), and ``1 + ratio`` plus the floor
with a :class:`RetryBudget` (target <= 1.3x for the default ``ratio=0.2``).
The budget is measured on memory, on SQLite and, when ``redis-server`` is on
PATH, on a real Redis (one budget shared by all callers, as processes would).
Backoff is zero so the run measures counting, not sleeping.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import paios_reliability as pr

sys.path.insert(0, str(Path(__file__).parent))
from bench_ratelimit import redis_server


async def storm(callers: int, calls: int, budget: pr.RetryBudget | None) -> float:
    """Downstream attempts per call."""
    hits = 0

    @pr.retry(attempts=5, wait_initial=0.0, wait_max=0.0, budget=budget)
    async def call() -> None:
        nonlocal hits
        hits += 1
        raise ConnectionError("downstream is dead")

    async def caller() -> None:
        for _ in range(calls):
            with contextlib.suppress(ConnectionError):
                await call()

    await asyncio.gather(*(caller() for _ in range(callers)))
    return hits / (callers * calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callers", type=int, default=100)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    # Thousands of gave_up events would measure the log handler, not the budget.
    logging.getLogger("paios_reliability").setLevel(logging.CRITICAL)
    total = args.callers * args.calls
    print(
        f"{args.callers} callers x {args.calls} calls = {total} calls, dead downstream"
    )
    print(f"{'budget':<28} {'amplification':>13} {'seconds':>8}")
    rows: list[tuple[str, Any]] = [("none (attempts=5)", None)]
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(("RetryBudget, memory", pr.RetryBudget("storm")))
        sqlite = pr.SQLiteStore(Path(tmp) / "storm.db")
        rows.append(("RetryBudget, SQLite", pr.RetryBudget("storm", store=sqlite)))
        with redis_server(Path(tmp)) as url:
            if url is not None:
                redis = pr.RedisStore(url)
                rows.append(
                    ("RetryBudget, Redis", pr.RetryBudget("storm", store=redis))
                )
            for label, budget in rows:
                began = time.perf_counter()
                factor = asyncio.run(storm(args.callers, args.calls, budget))
                took = time.perf_counter() - began
                print(f"{label:<28} {factor:>12.2f}x {took:>8.2f}")
            if url is None:
                print("(Redis skipped: redis-server is not on PATH)")
        sqlite.close()


if __name__ == "__main__":
    main()
