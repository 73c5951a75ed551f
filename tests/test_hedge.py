"""hedge(...): hedged requests (issue 19)."""

from __future__ import annotations

import asyncio
import threading

import pytest

import paios_reliability as pr
from paios_reliability import RetryBudget, hedge
from paios_reliability.testing import capture_events


def test_hedge_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="delay"):
        hedge(delay=-1)
    with pytest.raises(ValueError, match="percentile"):
        hedge(percentile=1.0)
    with pytest.raises(ValueError, match="max_hedges"):
        hedge(max_hedges=0)
    with pytest.raises(TypeError, match="budget"):
        hedge(budget=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="idempotent=True"):
        hedge(delay=0.1)(lambda: None)


def test_finding_19_async_hedge_wins_and_cancels_the_slow_attempt() -> None:
    started: list[int] = []
    cancelled: list[int] = []

    async def main() -> str:
        never = asyncio.Event()

        @hedge(delay=0.01)
        async def fetch() -> str:
            attempt = len(started)
            started.append(attempt)
            if attempt == 0:
                try:
                    await never.wait()  # the slow one: never answers by itself
                except asyncio.CancelledError:
                    cancelled.append(attempt)
                    raise
            return f"attempt {attempt}"

        with capture_events() as events:
            result = await fetch()
        await asyncio.sleep(0)
        assert any(e.name.endswith("hedge.won") for e in events)
        return result

    assert asyncio.run(main()) == "attempt 1"
    assert started == [0, 1]
    assert cancelled == [0]


def test_finding_19_fast_first_attempt_starts_no_hedge() -> None:
    calls: list[int] = []
    policy = hedge(delay=30)

    @policy
    async def fetch() -> int:
        calls.append(1)
        return 7

    assert asyncio.run(fetch()) == 7
    assert calls == [1]
    assert policy.hedges == 0


def test_finding_19_failed_attempts_raise_the_first_failure() -> None:
    @hedge(delay=0.01, max_hedges=1)
    async def fetch() -> None:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError, match="down"):
        asyncio.run(fetch())


def test_finding_19_hedges_draw_on_the_retry_budget() -> None:
    budget = RetryBudget("hedges", ratio=0.0, min_per_second=0, window=60)
    policy = hedge(delay=0.01, budget=budget)

    @policy
    async def fetch() -> str:
        # Scheduled after the hedge timer of 0.01 s: that one always fires first.
        await asyncio.sleep(0.05)
        return "slow but only"

    with capture_events() as events:
        assert asyncio.run(fetch()) == "slow but only"
    assert policy.hedges == 0  # the budget refused the hedge
    assert any(e.name.endswith("retry_budget.exhausted") for e in events)


def test_finding_19_sync_hedge_abandons_and_counts_the_loser() -> None:
    gate = threading.Event()
    started: list[int] = []
    lock = threading.Lock()
    policy = hedge(delay=0.01, idempotent=True)

    @policy
    def read() -> str:
        with lock:
            attempt = len(started)
            started.append(attempt)
        if attempt == 0:
            gate.wait(30)
        return f"attempt {attempt}"

    try:
        assert read() == "attempt 1"
    finally:
        gate.set()
    assert policy.abandoned == 1
    assert policy.wins == 1


def test_finding_19_percentile_hedging_needs_samples() -> None:
    policy = hedge(percentile=0.9)
    assert policy.wait_before_hedge() is None
    for i in range(100):
        policy.observe(i / 100)
    assert policy.wait_before_hedge() == pytest.approx(0.9)


def test_finding_19_switched_off_hedge_calls_once() -> None:
    calls: list[int] = []

    @hedge(delay=0)
    async def fetch() -> int:
        calls.append(1)
        return 1

    with pr.set_active(False):
        assert asyncio.run(fetch()) == 1
    assert calls == [1]
