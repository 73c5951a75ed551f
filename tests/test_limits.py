"""Weighted, multi-window rate limits: RateLimiter(name, limits=[...]) (issue 19)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import paios_reliability as pr
from paios_reliability import Limit, RateLimitedError, RateLimiter
from paios_reliability._stores import now_ns
from paios_reliability.testing import FakeClock, capture_events, set_testing
from paios_reliability.typing import StateStore
from store_models import run_model

NS = 1_000_000_000


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def llm(store: StateStore | None = None, clock: FakeClock | None = None) -> RateLimiter:
    return RateLimiter(
        unique("llm"),
        limits=[
            Limit(3, per=60, unit="call", name="requests/min"),
            Limit(1000, per=60, name="tokens/min"),
            Limit(1500, per=3600, name="tokens/hour"),
        ],
        store=store,
        block=False,
        clock=clock or FakeClock(),
    )


# -- arguments ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"rate": 0, "per": 1}, "rate"),
        ({"rate": 1, "per": float("inf")}, "per"),
        ({"rate": 1, "per": 1, "burst": -1}, "burst"),
        ({"rate": 1, "per": 1, "unit": "tokens"}, "unit"),
    ],
)
def test_limit_rejects_bad_values(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Limit(**options)


def test_limiter_takes_limits_or_rate_not_both() -> None:
    with pytest.raises(ValueError, match="not both"):
        RateLimiter("l", rate=1, per=1, limits=[Limit(1, per=1)])
    with pytest.raises(ValueError, match="needs rate"):
        RateLimiter("l")
    with pytest.raises(ValueError, match="non-empty list of Limit"):
        RateLimiter("l", limits=[])
    with pytest.raises(ValueError, match="non-empty list of Limit"):
        RateLimiter("l", limits=[(1, 60)])  # type: ignore[list-item]


def test_finding_19_cost_no_window_could_admit_is_a_clear_error() -> None:
    limiter = llm()
    with pytest.raises(ValueError, match="exceeds the burst of limit 'tokens/min'"):
        limiter.acquire(cost=1001)
    with pytest.raises(ValueError, match="cost must be a finite number"):
        limiter.try_acquire(cost=-1)
    with pytest.raises(ValueError, match="exceeds the burst 3"):
        RateLimiter("single", rate=3, per=1).acquire(cost=4)


# -- admission ------------------------------------------------------------------------


def test_finding_19_all_windows_admit_or_none_is_charged(store: StateStore) -> None:
    clock = FakeClock()
    limiter = llm(store, clock)
    assert limiter.try_acquire(cost=600)
    assert limiter._limits is not None
    before = limiter._limits.available()
    assert before == [2.0, 400.0, 900.0]
    # The request window has room, the token window does not: nothing is charged.
    assert not limiter.try_acquire(cost=500)
    assert limiter._limits.available() == before
    with pytest.raises(RateLimitedError, match="tokens/min") as refused:
        limiter.acquire(cost=500)
    assert refused.value.retry_after == pytest.approx(6.0)
    assert limiter._limits.available() == before


def test_finding_19_each_window_binds_in_turn() -> None:
    clock = FakeClock()
    limiter = llm(clock=clock)
    assert [limiter.try_acquire(cost=10) for _ in range(4)] == [True] * 3 + [False]
    clock.advance(60)
    assert limiter.try_acquire(cost=900)
    clock.advance(60)
    # Minute windows are full again; the hour window refilled 25 a minute:
    # 1500 - 30 - 900 + 2 * 25 = 620.
    assert limiter._limits is not None
    assert limiter._limits.available()[2] == pytest.approx(620.0)
    assert not limiter.try_acquire(cost=621)
    assert limiter.try_acquire(cost=620)


def test_finding_19_blocking_acquire_waits_for_the_slowest_window() -> None:
    clock = FakeClock()
    limiter = RateLimiter(
        unique("w"),
        limits=[Limit(10, per=1), Limit(2, per=1, unit="call")],
        clock=clock,
        max_wait=5,
    )
    first = limiter.acquire(cost=10)
    assert first.wait == 0.0
    second = limiter.acquire(cost=5)  # tokens refill in 0.5 s, calls are free
    assert second.wait == pytest.approx(0.5)
    assert clock.sleeps == [pytest.approx(0.5)]


def test_finding_19_settle_refunds_and_charges(store: StateStore) -> None:
    clock = FakeClock()
    limiter = llm(store, clock)
    assert limiter._limits is not None
    reservation = limiter.acquire(cost=800)
    assert not limiter.try_acquire(cost=300)
    limiter.settle(reservation, 120)  # the answer used fewer tokens
    assert reservation.settled
    assert reservation.cost == 120
    assert limiter._limits.available() == [2.0, 880.0, 1380.0]
    assert limiter.try_acquire(cost=300)
    with pytest.raises(ValueError, match="already settled"):
        limiter.settle(reservation, 10)
    other = limiter.acquire(cost=100)
    limiter.settle(other, 700)  # ...and this one more: debt for the next callers
    assert limiter._limits.available()[1] == 0.0
    with pytest.raises(RateLimitedError):
        limiter.acquire(cost=1)
    with pytest.raises(ValueError, match="Reservation this limiter returned"):
        llm().settle(other, 1)


def test_finding_19_refund_never_fills_beyond_full() -> None:
    clock = FakeClock()
    limiter = llm(clock=clock)
    reservation = limiter.acquire(cost=500)
    clock.advance(3600)
    limiter.settle(reservation, 0)
    assert limiter._limits is not None
    assert limiter._limits.available() == [3.0, 1000.0, 1500.0]


def test_finding_19_single_window_limiter_takes_cost_and_settles() -> None:
    clock = FakeClock()
    limiter = RateLimiter(unique("one"), rate=10, per=1, block=False, clock=clock)
    reservation = limiter.acquire(cost=8)
    assert not limiter.try_acquire(cost=3)
    limiter.settle(reservation, 5)
    assert limiter.try_acquire(cost=3)
    assert not limiter.try_acquire(cost=3)
    clock.advance(0.3)
    assert limiter.try_acquire(cost=3)


def test_finding_19_async_acquire_and_settle(store: StateStore) -> None:
    clock = FakeClock()
    limiter = llm(store, clock)

    async def main() -> None:
        reservation = await limiter.aacquire(cost=900)
        assert not await limiter.atry_acquire(cost=200)
        await limiter.asettle(reservation, 100)
        assert await limiter.atry_acquire(cost=200)

    asyncio.run(main())


def test_finding_19_refusal_events_name_the_window() -> None:
    limiter = llm()
    limiter.acquire(cost=1000)
    with capture_events() as events, pytest.raises(RateLimitedError):
        limiter.acquire(cost=1)
    rejected = [e for e in events if e.name.endswith("rate_limiter.rejected")]
    assert rejected[0].fields["limit"] == "tokens/min"
    assert rejected[0].fields["cost"] == 1


def test_finding_19_switched_off_limiter_admits_and_settles_nothing() -> None:
    limiter = llm()
    with pr.set_active(False):
        reservation = limiter.acquire(cost=1000)
        assert limiter.try_acquire(cost=1000)
        limiter.settle(reservation, 5)
    assert limiter.try_acquire(cost=1000)


# -- reference model ------------------------------------------------------------------


class WeightedMachine(RuleBasedStateMachine):
    """The limiter against token buckets kept in integer nanoseconds."""

    LIMITS = (
        Limit(5, per=1),  # 0.2 s per unit
        Limit(20, per=10, burst=8),  # 0.5 s per unit, at most 8 at once
        Limit(3, per=3, unit="call"),  # one call per second, three at once
    )

    def __init__(self, store: StateStore) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.limiter = RateLimiter(
            unique("model"),
            limits=list(self.LIMITS),
            store=store,
            clock=self.clock,
            max_wait=2.0,
        )
        self.unit = [200_000_000, 500_000_000, 1_000_000_000]
        self.capacity = [5 * self.unit[0], 8 * self.unit[1], 3 * self.unit[2]]
        self.used = [0, 0, 0]
        self.open: list[tuple[Any, int]] = []
        # The model drains by the limiter's own integer-nanosecond time.
        self.shared = store.shared
        self.t = now_ns(self.clock, self.shared)

    def _sync(self) -> None:
        t = now_ns(self.clock, self.shared)
        self._drain(t - self.t)
        self.t = t

    def _charges(self, cost: int) -> list[int]:
        return [cost * self.unit[0], cost * self.unit[1], self.unit[2]]

    def _drain(self, ns: int) -> None:
        self.used = [max(0, u - ns) for u in self.used]

    @rule(cost=st.integers(0, 5))
    def try_acquire(self, cost: int) -> None:
        self._sync()
        charges = self._charges(cost)
        expected = all(
            u + c <= cap
            for u, c, cap in zip(self.used, charges, self.capacity, strict=True)
        )
        assert self.limiter.try_acquire(cost=cost) == expected
        if expected:
            self.used = [u + c for u, c in zip(self.used, charges, strict=True)]

    @rule(cost=st.integers(1, 5))
    def acquire(self, cost: int) -> None:
        self._sync()
        charges = self._charges(cost)
        wait = max(
            0,
            *(
                u + c - cap
                for u, c, cap in zip(self.used, charges, self.capacity, strict=True)
            ),
        )
        if wait > 2 * 1_000_000_000:
            with pytest.raises(RateLimitedError):
                self.limiter.acquire(cost=cost)
            return
        reservation = self.limiter.acquire(cost=cost)  # sleeps on the fake clock
        assert round(reservation.wait * 1e9) == wait
        self._drain(wait)
        self.t += wait
        self.used = [u + c for u, c in zip(self.used, charges, strict=True)]
        self.open.append((reservation, cost))

    @rule(data=st.data())
    def settle(self, data: st.DataObject) -> None:
        if not self.open:
            return
        reservation, cost = self.open.pop(
            data.draw(st.integers(0, len(self.open) - 1), label="which")
        )
        actual = data.draw(st.integers(0, 8), label="actual")
        self._sync()
        self.limiter.settle(reservation, actual)
        delta = actual - cost
        for i in (0, 1):
            self.used[i] = max(0, self.used[i] + delta * self.unit[i])

    @rule(ms=st.sampled_from([1, 100, 200, 500, 1000, 2500, 10_000]))
    def wait(self, ms: int) -> None:
        self.clock.advance(ms / 1000)

    @invariant()
    def availability_matches(self) -> None:
        self._sync()
        assert self.limiter._limits is not None
        seen = self.limiter._limits.available()
        expected = [
            (cap - u) / unit
            for cap, u, unit in zip(self.capacity, self.used, self.unit, strict=True)
        ]
        assert seen == pytest.approx([max(0.0, e) for e in expected])


@pytest.mark.parametrize(
    ("kind", "examples"), [("memory", 150), ("sqlite", 25), ("redis", 25)]
)
def test_finding_19_weighted_limiter_matches_model(
    kind: str, examples: int, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    with set_testing(False):
        run_model(
            WeightedMachine,
            kind,
            examples=examples,
            steps=30,
            tmp_path=tmp_path,
            request=request,
        )


# -- contention -----------------------------------------------------------------------

# Windows so long that nothing refills while the test runs.
_LONG = 1_000_000.0


def _contended(store: StateStore, name: str) -> RateLimiter:
    return RateLimiter(
        name,
        limits=[Limit(50, per=_LONG, unit="call"), Limit(1000, per=_LONG)],
        store=store,
        block=False,
    )


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_finding_19_weighted_limiter_exact_under_threads(
    kind: str, make_store: Callable[[], StateStore], request: pytest.FixtureRequest
) -> None:
    del kind, request
    store = make_store()
    lock = threading.Lock()
    for cost, expected in ((7, 50), (30, 33)):  # calls bind, then tokens bind
        limiter = _contended(store, unique("threads"))
        barrier = threading.Barrier(8)
        admitted: list[int] = []

        def worker(
            limiter: RateLimiter,
            cost: int,
            barrier: threading.Barrier,
            admitted: list[int],
        ) -> None:
            barrier.wait()
            mine = sum(limiter.try_acquire(cost=cost) for _ in range(20))
            with lock:
                admitted.append(mine)

        threads = [
            threading.Thread(target=worker, args=(limiter, cost, barrier, admitted))
            for _ in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sum(admitted) == expected


_WORKER = """
import sys
from paios_reliability import Limit, RateLimiter, RedisStore, SQLiteStore
kind, where, name = sys.argv[1], sys.argv[2], sys.argv[3]
store = SQLiteStore(where) if kind == "sqlite" else RedisStore(where)
limiter = RateLimiter(
    name,
    limits=[Limit(50, per=1e6, unit="call"), Limit(1000, per=1e6)],
    store=store,
    block=False,
)
print("ready", flush=True)
for line in sys.stdin:
    cost, n = map(int, line.split())
    print(sum(limiter.try_acquire(cost=cost) for _ in range(n)), flush=True)
"""


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
@pytest.mark.parametrize(("cost", "expected"), [(7, 50), (30, 33)])
def test_finding_19_weighted_limiter_exact_across_processes(
    kind: str,
    cost: int,
    expected: int,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    spawn: Callable[..., Any],
) -> None:
    where = (
        request.getfixturevalue("redis_url")
        if kind == "redis"
        else str(tmp_path / "limits.db")
    )
    name = unique("procs")
    workers = [spawn(_WORKER, kind, where, name) for _ in range(4)]
    for worker in workers:
        assert worker.read() == "ready"
    for worker in workers:
        worker.process.stdin.write(f"{cost} 20\n")
        worker.process.stdin.flush()
    assert sum(int(worker.read()) for worker in workers) == expected
    for worker in workers:
        worker.finish()
