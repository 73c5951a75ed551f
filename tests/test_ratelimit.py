"""RateLimiter (GCRA), Throttle and OccurrenceThreshold on every store."""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

import paios_reliability as pr
from paios_reliability import (
    OccurrenceThreshold,
    RateLimitedError,
    RateLimiter,
    Throttle,
)
from paios_reliability._stores import now_ns
from paios_reliability.testing import FakeClock, capture_events, set_testing
from paios_reliability.typing import StateStore
from store_models import run_model

MODES = ["sync", "async"]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def acquire(limiter: RateLimiter, mode: str) -> None:
    if mode == "sync":
        limiter.acquire()
    else:
        await limiter.aacquire()


async def try_acquire(limiter: RateLimiter, mode: str) -> bool:
    return limiter.try_acquire() if mode == "sync" else await limiter.atry_acquire()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


# -- RateLimiter -------------------------------------------------------------------


async def test_a_full_bucket_admits_burst_then_one_per_interval(
    mode: str, store: StateStore
) -> None:
    clock = FakeClock()
    limiter = RateLimiter(unique("l"), rate=5, per=10, store=store, clock=clock)
    assert limiter.burst == 5
    assert [await try_acquire(limiter, mode) for _ in range(7)] == [True] * 5 + [
        False
    ] * 2
    clock.advance(1.999)
    assert not await try_acquire(limiter, mode)
    clock.advance(0.001)
    assert await try_acquire(limiter, mode)  # one interval (10 s / 5) later
    assert not await try_acquire(limiter, mode)
    clock.advance(100)
    assert [await try_acquire(limiter, mode) for _ in range(6)] == [True] * 5 + [False]


async def test_non_blocking_raises_with_retry_after(
    mode: str, store: StateStore
) -> None:
    clock = FakeClock()
    limiter = RateLimiter(
        unique("l"), rate=2, per=1, burst=1, block=False, store=store, clock=clock
    )
    await acquire(limiter, mode)
    clock.advance(0.1)
    with capture_events() as events, pytest.raises(RateLimitedError) as info:
        await acquire(limiter, mode)
    assert info.value.retry_after == pytest.approx(0.4)
    assert info.value.code == "RATE_LIMITED"
    assert events.of("rate_limiter.rejected")[0].subject == limiter.name
    assert clock.sleeps == []


async def test_blocking_waits_exactly_for_the_next_slot(
    mode: str, store: StateStore
) -> None:
    clock = FakeClock()
    limiter = RateLimiter(unique("l"), rate=1, per=2, store=store, clock=clock)
    await acquire(limiter, mode)
    await acquire(limiter, mode)
    await acquire(limiter, mode)
    assert clock.sleeps == [pytest.approx(2.0), pytest.approx(2.0)]


async def test_blocking_never_waits_past_max_wait(mode: str, store: StateStore) -> None:
    clock = FakeClock()
    limiter = RateLimiter(
        unique("l"), rate=1, per=2, max_wait=1.5, store=store, clock=clock
    )
    await acquire(limiter, mode)
    with pytest.raises(RateLimitedError) as info:
        await acquire(limiter, mode)
    assert info.value.retry_after == pytest.approx(2.0)
    assert clock.sleeps == []  # it did not sleep first
    clock.advance(0.5)
    await acquire(limiter, mode)  # the refused call took no slot
    assert clock.sleeps == [pytest.approx(1.5)]


async def test_blocking_never_waits_past_the_deadline(
    mode: str, store: StateStore, fake_clock: FakeClock
) -> None:
    limiter = RateLimiter(unique("l"), rate=1, per=2, store=store)
    await acquire(limiter, mode)
    with pr.deadline(1.0), pytest.raises(RateLimitedError):
        await acquire(limiter, mode)
    assert fake_clock.sleeps == []
    with pr.deadline(3.0):
        await acquire(limiter, mode)
    assert fake_clock.sleeps == [pytest.approx(2.0)]


async def test_testing_mode_never_sleeps(mode: str) -> None:
    clock = FakeClock()
    limiter = RateLimiter("l", rate=1, per=60, clock=clock)
    with pr.testing.set_testing(True):
        for _ in range(3):
            await acquire(limiter, mode)
    assert clock.sleeps == []
    assert not limiter.try_acquire()  # the budget was still spent


async def test_async_wait_does_not_block_the_event_loop() -> None:
    limiter = RateLimiter("l", rate=20, per=1, burst=1)
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.ensure_future(ticker())
    await limiter.aacquire()
    await limiter.aacquire()  # waits ~50 ms for real
    done.set()
    await task
    assert ticks > 1


async def test_decorator_and_context_manager(mode: str) -> None:
    clock = FakeClock()
    limiter = RateLimiter("l", rate=2, per=1, burst=2, block=False, clock=clock)
    calls: list[int] = []

    def work(n: int) -> int:
        calls.append(n)
        return n * 2

    async def awork(n: int) -> int:
        return work(n)

    if mode == "sync":
        wrapped = limiter(work)
        assert wrapped(1) == 2
        with limiter:
            calls.append(0)
        with pytest.raises(RateLimitedError):
            wrapped(3)
    else:
        awrapped = limiter(awork)
        assert inspect.iscoroutinefunction(awrapped)
        assert await awrapped(1) == 2
        async with limiter:
            calls.append(0)
        with pytest.raises(RateLimitedError):
            await awrapped(3)
    assert calls == [1, 0]


def test_switched_off_admits_everything() -> None:
    limiter = RateLimiter("l", rate=1, per=3600, block=False)
    with pr.set_active(False):
        for _ in range(5):
            limiter.acquire()
            assert limiter.try_acquire()
    assert limiter.try_acquire()  # nothing was spent while off


def test_shared_budget_between_instances(make_store: Callable[[], StateStore]) -> None:
    name = unique("l")
    a = RateLimiter(name, rate=3, per=3600, store=make_store())
    b = RateLimiter(name, rate=3, per=3600, store=make_store())
    assert [a.try_acquire(), b.try_acquire(), a.try_acquire(), b.try_acquire()] == [
        True,
        True,
        True,
        False,
    ]


def test_threads_never_exceed_the_budget(store: StateStore) -> None:
    limiter = RateLimiter(unique("l"), rate=25, per=3600, store=store)
    admitted = []
    lock = threading.Lock()

    def worker() -> None:
        got = sum(limiter.try_acquire() for _ in range(15))
        with lock:
            admitted.append(got)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(admitted) == 25


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate": 0, "per": 1},
        {"rate": 1, "per": 0},
        {"rate": float("inf"), "per": 1},
        {"rate": 1, "per": 1, "burst": 0},
        {"rate": 1, "per": 1, "max_wait": -1},
    ],
)
def test_invalid_limiter_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="RateLimiter"):
        RateLimiter("l", **kwargs)


def test_gcra_long_idle_refills_to_burst_only() -> None:
    clock = FakeClock()
    limiter = RateLimiter("l", rate=1, per=1, burst=3, clock=clock)
    clock.advance(10_000)
    assert [limiter.try_acquire() for _ in range(4)] == [True, True, True, False]


WORKER = """
import sys
from paios_reliability import RateLimiter, RedisStore, SQLiteStore
kind, target, prefix, name = sys.argv[1:5]
store = SQLiteStore(target) if kind == "sqlite" else RedisStore(target, prefix=prefix)
limiter = RateLimiter(name, rate=10, per=3600, store=store, block=False)
print("ready", flush=True)
sys.stdin.readline()
print(sum(limiter.try_acquire() for _ in range(20)), flush=True)
"""


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_four_processes_share_one_budget(
    kind: str, tmp_path: Any, spawn: Callable[..., Any], request: pytest.FixtureRequest
) -> None:
    target = (
        str(tmp_path / "state.db")
        if kind == "sqlite"
        else request.getfixturevalue("redis_url")
    )
    prefix, name = unique("mp"), "provider"
    workers = [spawn(WORKER, kind, target, prefix, name) for _ in range(4)]
    for w in workers:
        assert w.read() == "ready"
    for w in workers:  # all go at once
        assert w.process.stdin is not None
        w.process.stdin.write("go\n")
        w.process.stdin.flush()
    counts = [int(w.read()) for w in workers]
    # 10 per hour with a burst of 10: during the test exactly 10 in total.
    assert sum(counts) == 10


# -- Hypothesis: the limiter against a token bucket in exact arithmetic ---------------


class TokenBucket:
    """The specification: ``burst`` tokens, one more every ``interval`` ns."""

    def __init__(self, interval: int, burst: int) -> None:
        self.interval = interval
        self.burst = burst
        self.tokens = Fraction(burst)
        self.at: int | None = None

    def _refill(self, now: int) -> None:
        if self.at is not None:
            self.tokens = min(
                Fraction(self.burst),
                self.tokens + Fraction(now - self.at, self.interval),
            )
        self.at = now

    def peek(self, now: int) -> int:
        """The wait a call at ``now`` would have, without taking anything."""
        tokens = self.tokens
        if self.at is not None:
            tokens = min(
                Fraction(self.burst), tokens + Fraction(now - self.at, self.interval)
            )
        return int(max(Fraction(0), (1 - tokens) * self.interval))

    def take(self, now: int, limit: int | None) -> tuple[bool, int]:
        """(admitted, wait ns): a slot now, or reserved within ``limit``."""
        self._refill(now)
        wait = max(Fraction(0), (1 - self.tokens) * self.interval)
        assert wait.denominator == 1
        if wait == 0 or limit is None or wait <= limit:
            self.tokens -= 1
            return True, int(wait)
        return False, int(wait)


class LimiterMachine(RuleBasedStateMachine):
    def __init__(self, store: StateStore) -> None:
        super().__init__()
        self.store = store
        self.clock = FakeClock(start=500.0)

    @initialize(
        rate=st.sampled_from([0.5, 1, 2, 3, 5]),
        per=st.sampled_from([1, 2, 10]),
        burst=st.sampled_from([None, 1, 2, 4]),
    )
    def setup(self, rate: float, per: int, burst: int | None) -> None:
        name = unique("hyp")
        common: dict[str, Any] = {
            "rate": rate,
            "per": per,
            "burst": burst,
            "store": self.store,
            "clock": self.clock,
        }
        self.nonblocking = RateLimiter(name, block=False, **common)
        self.blocking = {
            max_wait: RateLimiter(name, max_wait=max_wait, **common)
            for max_wait in (None, 0.0, 0.3, 1.0)
        }
        self.model = TokenBucket(
            round(per / rate * 1_000_000_000),
            max(1, int(rate)) if burst is None else burst,
        )

    def now(self) -> int:
        return now_ns(self.clock, self.store.shared)

    @rule(ms=st.integers(0, 3000))
    def advance(self, ms: int) -> None:
        self.clock.advance(ms / 1000)

    @rule()
    def advance_one_interval(self) -> None:
        self.clock.advance(self.model.interval / 1e9)

    @rule()
    def try_acquire(self) -> None:
        expected, _ = self.model.take(self.now(), 0)
        assert self.nonblocking.try_acquire() == expected

    @rule()
    def acquire_without_blocking(self) -> None:
        expected, wait = self.model.take(self.now(), 0)
        refused: RateLimitedError | None = None
        try:
            self.nonblocking.acquire()
        except RateLimitedError as exc:
            refused = exc
        assert (refused is None) == expected
        if refused is not None:
            assert refused.retry_after == pytest.approx(wait / 1e9, abs=1e-6)

    @rule(max_wait=st.sampled_from([None, 0.0, 0.3, 1.0]))
    def acquire_blocking(self, max_wait: float | None) -> None:
        limit = None if max_wait is None else round(max_wait * 1_000_000_000)
        expected, wait = self.model.take(self.now(), limit)
        slept = len(self.clock.sleeps)
        refused: RateLimitedError | None = None
        try:
            self.blocking[max_wait].acquire()
        except RateLimitedError as exc:
            refused = exc
        assert (refused is None) == expected
        if refused is not None:
            assert refused.retry_after == pytest.approx(wait / 1e9, abs=1e-6)
            assert len(self.clock.sleeps) == slept
        else:
            if wait:
                assert self.clock.sleeps[slept:] == [
                    pytest.approx(wait / 1e9, abs=1e-6)
                ]
            else:
                assert len(self.clock.sleeps) == slept

    @rule(shorter=st.booleans())
    def acquire_blocking_at_the_boundary(self, shorter: bool) -> None:
        wait = self.model.peek(self.now())
        if wait < 2_000_000:
            return
        max_wait = (wait - (1_000_000 if shorter else 0)) / 1e9
        limiter = RateLimiter(
            self.nonblocking.name,
            rate=self.nonblocking.rate,
            per=self.nonblocking.per,
            burst=self.nonblocking.burst,
            max_wait=max_wait,
            store=self.store,
            clock=self.clock,
        )
        expected, _ = self.model.take(self.now(), round(max_wait * 1e9))
        assert expected is not shorter
        try:
            limiter.acquire()
        except RateLimitedError:
            assert not expected
        else:
            assert expected

    @invariant()
    def nothing_left_over(self) -> None:
        if hasattr(self, "model"):
            assert self.model.tokens >= -100  # reservations stay bounded by the steps


@pytest.mark.parametrize(
    ("kind", "examples"), [("memory", 150), ("sqlite", 20), ("redis", 25)]
)
def test_limiter_matches_the_token_bucket_model(
    kind: str, examples: int, tmp_path: Any, request: pytest.FixtureRequest
) -> None:
    run_model(
        LimiterMachine,
        kind,
        examples=examples,
        steps=40,
        tmp_path=tmp_path,
        request=request,
    )


# -- Throttle ----------------------------------------------------------------------


async def test_throttle_allows_once_per_interval_per_key(
    mode: str, store: StateStore
) -> None:
    clock = FakeClock()
    throttle = Throttle(300, name=unique("t"), store=store, clock=clock)

    async def allow(key: str) -> bool:
        return throttle.allow(key) if mode == "sync" else await throttle.aallow(key)

    assert [await allow("a"), await allow("a"), await allow("b")] == [True, False, True]
    clock.advance(299.999)
    assert not await allow("a")
    clock.advance(0.001)
    assert [await allow("a"), await allow("a"), await allow("b")] == [True, False, True]


@given(
    steps=st.lists(st.tuples(st.integers(0, 4000), st.sampled_from("abc")), max_size=40)
)
@settings(max_examples=100, deadline=None)
def test_throttle_matches_its_definition(steps: list[tuple[int, str]]) -> None:
    clock = FakeClock()
    throttle = Throttle(2.5, clock=clock)
    last: dict[str, int] = {}
    for ms, key in steps:
        clock.advance(ms / 1000)
        now = now_ns(clock, False)
        expected = key not in last or now - last[key] >= 2_500_000_000
        if expected:
            last[key] = now
        assert throttle.allow(key) == expected


# -- OccurrenceThreshold --------------------------------------------------------------


async def test_threshold_fires_exactly_once_then_rearms(
    mode: str, store: StateStore
) -> None:
    clock = FakeClock()
    threshold = OccurrenceThreshold(3, 60, name=unique("o"), store=store, clock=clock)

    async def record(key: str) -> bool:
        return threshold.record(key) if mode == "sync" else await threshold.arecord(key)

    with capture_events() as events:
        assert [await record("db") for _ in range(5)] == [
            False,
            False,
            True,
            False,
            False,
        ]
        assert await record("other") is False
        clock.advance(30)
        assert [await record("db"), await record("db")] == [False, False]  # disarmed
        clock.advance(30)
        assert await record("db") is True  # re-armed; 3 within the window
        clock.advance(61)
        assert [await record("db") for _ in range(3)] == [False, False, True]
    reached = events.of("occurrence_threshold.reached")
    assert [e.fields["key"] for e in reached] == ["db", "db", "db"]


def test_threshold_counts_only_within_the_window() -> None:
    clock = FakeClock()
    threshold = OccurrenceThreshold(3, 10, clock=clock)
    for _ in range(5):
        assert not threshold.record("k")
        assert not threshold.record("k")
        clock.advance(10)  # the two before never share a window with a third
    assert [threshold.record("k") for _ in range(3)] == [False, False, True]


def test_threshold_defaults_are_the_alert_noise_floor() -> None:
    threshold = OccurrenceThreshold()
    assert (threshold.count, threshold.per) == (5, 3600.0)
    assert [threshold.record() for _ in range(5)] == [False] * 4 + [True]


@given(
    count=st.integers(1, 4),
    steps=st.lists(st.tuples(st.integers(0, 3000), st.sampled_from("xy")), max_size=40),
)
@settings(max_examples=100, deadline=None)
def test_threshold_matches_its_definition(
    count: int, steps: list[tuple[int, str]]
) -> None:
    clock = FakeClock()
    threshold = OccurrenceThreshold(count, 5.0, clock=clock)
    window = 5_000_000_000
    seen: dict[str, list[int]] = {}
    fired: dict[str, int] = {}
    for ms, key in steps:
        clock.advance(ms / 1000)
        now = now_ns(clock, False)
        seen.setdefault(key, []).append(now)
        recent = [t for t in seen[key] if now - t < window]
        armed = key not in fired or now - fired[key] >= window
        expected = armed and len(recent) >= count
        if expected:
            fired[key] = now
        assert threshold.record(key) == expected


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: Throttle(0), "Throttle"),
        (lambda: OccurrenceThreshold(0), "OccurrenceThreshold"),
        (lambda: OccurrenceThreshold(10_001), "OccurrenceThreshold"),
        (lambda: OccurrenceThreshold(per=-1), "OccurrenceThreshold"),
    ],
)
def test_invalid_throttle_and_threshold_settings(
    factory: Callable[[], Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        factory()


# -- key TTLs follow the state they hold (finding 3) ----------------------------------


def seconds_left(store: StateStore, key: str) -> float:
    """How long the store keeps ``key`` now, read from the store itself."""
    if isinstance(store, pr.MemoryStore):
        return store._data[key][1] - time.monotonic()
    if isinstance(store, pr.SQLiteStore):
        conn = sqlite3.connect(store.path)
        try:
            (expires,) = conn.execute(
                "SELECT expires_at FROM paios_state WHERE key = ?", (key,)
            ).fetchone()
        finally:
            conn.close()
        return float(expires) - time.time()
    assert isinstance(store, pr.RedisStore)
    return int(store.client.pttl(f"{store.prefix}:{key}")) / 1000


async def test_finding_03_the_key_outlives_every_reserved_slot(
    store: StateStore, mode: str
) -> None:
    # 120 blocking callers reserve one slot each (1 per second): the last
    # slot is 120 s ahead. The key must live at least that long, or the
    # budget looks full again while reservations are still pending.
    clock = FakeClock()
    limiter = RateLimiter(
        unique("api"), rate=1, per=1.0, burst=1, store=store, clock=clock
    )
    with set_testing():  # take the reservations without sleeping them out
        for _ in range(120):
            await acquire(limiter, mode)
    key = f"rate_limiter:{limiter.name}"
    tat = store.get(key)
    assert (tat - now_ns(clock, store.shared)) / 1e9 == pytest.approx(120.0)
    assert seconds_left(store, key) >= 119.0
    assert await try_acquire(limiter, mode) is False  # refused: nothing shortens it
    assert seconds_left(store, key) >= 119.0
    # With a bounded wait the TTL is known up front: reserve 30 s more.
    patient = RateLimiter(
        limiter.name, rate=1, per=1.0, burst=1, store=store, clock=clock, max_wait=200
    )
    with set_testing():
        for _ in range(30):
            await acquire(patient, mode)
    assert seconds_left(store, key) >= 149.0


async def test_throttle_and_threshold_keys_outlive_their_state(
    store: StateStore,
) -> None:
    throttle = Throttle(300.0, name=unique("t"), store=store)
    assert throttle.allow("k") is True
    assert seconds_left(store, f"throttle:{throttle.name}:k") >= 299.0
    threshold = OccurrenceThreshold(3, 600.0, name=unique("o"), store=store)
    for _ in range(3):
        threshold.record("k")
    assert seconds_left(store, f"occurrence:{threshold.name}:k") >= 599.0
