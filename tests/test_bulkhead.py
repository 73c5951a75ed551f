"""Bulkhead: a concurrency limit with a bounded queue, in memory and on shared stores."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import signal
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import paios_reliability as pr
from paios_reliability import Bulkhead, BulkheadFullError, RateLimitedError
from paios_reliability._core.clock import SYSTEM_CLOCK
from paios_reliability._policies import bulkhead_engines as bulkhead_module
from paios_reliability._stores import now_ns, seconds_to_ns
from paios_reliability.testing import FakeClock, capture_events
from paios_reliability.typing import StateStore
from store_models import ObservedSQLiteStore, block_writes, eventually

MODES = ["sync", "async"]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


class Gauge:
    """Counts callers inside at once and remembers the peak."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inside = 0
        self.peak = 0
        self.done = 0

    def enter(self) -> None:
        with self.lock:
            self.inside += 1
            self.peak = max(self.peak, self.inside)

    def leave(self) -> None:
        with self.lock:
            self.inside -= 1
            self.done += 1


def test_bulkhead_full_error_is_a_rate_limited_error() -> None:
    assert issubclass(BulkheadFullError, RateLimitedError)


def test_threads_never_exceed_max_concurrent(store: StateStore) -> None:
    bulkhead = Bulkhead(
        unique("b"), max_concurrent=2, max_queue=8, max_wait=30, store=store
    )
    gauge = Gauge()

    @bulkhead
    def work() -> None:
        gauge.enter()
        time.sleep(0.005)
        gauge.leave()

    threads = [
        threading.Thread(target=lambda: [work() for _ in range(5)]) for _ in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert gauge.done == 30
    assert gauge.peak <= 2
    assert bulkhead.stats.in_use == 0
    assert bulkhead.stats.queued == 0


async def test_tasks_never_exceed_max_concurrent(store: StateStore) -> None:
    bulkhead = Bulkhead(
        unique("b"), max_concurrent=3, max_queue=20, max_wait=30, store=store
    )
    gauge = Gauge()

    @bulkhead
    async def work() -> None:
        gauge.enter()
        await asyncio.sleep(0.005)
        gauge.leave()

    await asyncio.gather(*(work() for _ in range(15)))
    assert gauge.done == 15
    assert gauge.peak <= 3
    assert bulkhead.stats == pr.BulkheadStats(bulkhead.name, 3, 0, 0)


async def test_full_without_queue_rejects_at_once(mode: str, store: StateStore) -> None:
    bulkhead = Bulkhead(unique("b"), max_concurrent=1, store=store)
    ran = []

    async def attempt() -> None:
        if mode == "sync":
            with bulkhead:
                ran.append(1)
        else:
            async with bulkhead:
                ran.append(1)

    with bulkhead, capture_events() as events, pytest.raises(BulkheadFullError) as info:
        await attempt()
    assert ran == []
    assert info.value.code == "BULKHEAD_FULL"
    assert events.of("bulkhead.rejected")[0].subject == bulkhead.name
    await attempt()  # the slot came back
    assert ran == [1]


async def test_queue_bound_and_wait_bound(mode: str, store: StateStore) -> None:
    bulkhead = Bulkhead(
        unique("b"), max_concurrent=1, max_queue=1, max_wait=0.2, store=store
    )
    release = threading.Event()
    inside = threading.Event()

    def holder() -> None:
        with bulkhead:
            inside.set()
            release.wait(30)

    hold = threading.Thread(target=holder)
    hold.start()
    assert inside.wait(30)
    try:
        if mode == "sync":
            with pytest.raises(BulkheadFullError, match="within"):
                bulkhead.call(lambda: None)  # queued, then the wait runs out
        else:

            async def nothing() -> None:
                return None

            with pytest.raises(BulkheadFullError, match="within"):
                await bulkhead.acall(nothing)
        assert bulkhead.stats.queued == 0  # it left the queue
    finally:
        release.set()
        hold.join(30)


def test_queue_room_is_bounded(store: StateStore) -> None:
    bulkhead = Bulkhead(
        unique("b"), max_concurrent=1, max_queue=1, max_wait=30, store=store
    )
    release = threading.Event()
    inside = threading.Event()
    results: list[str] = []

    def holder() -> None:
        with bulkhead:
            inside.set()
            release.wait(30)

    def queued() -> None:
        bulkhead.call(results.append, "queued")

    hold = threading.Thread(target=holder)
    hold.start()
    assert inside.wait(30)
    waiter = threading.Thread(target=queued)
    waiter.start()
    give_up = time.monotonic() + 30
    while bulkhead.stats.queued < 1 and time.monotonic() < give_up:
        time.sleep(0.002)
    with pytest.raises(BulkheadFullError, match="queue is full"):
        bulkhead.call(results.append, "third")
    release.set()
    hold.join(30)
    waiter.join(30)
    assert results == ["queued"]


def test_memory_queue_is_fifo() -> None:
    bulkhead = Bulkhead("b", max_concurrent=1, max_queue=5, max_wait=30)
    order: list[int] = []
    release = threading.Event()
    inside = threading.Event()

    def holder() -> None:
        with bulkhead:
            inside.set()
            release.wait(30)

    hold = threading.Thread(target=holder)
    hold.start()
    assert inside.wait(30)
    waiters = []
    for i in range(5):
        t = threading.Thread(target=bulkhead.call, args=(order.append, i))
        t.start()
        waiters.append(t)
        give_up = time.monotonic() + 30
        while bulkhead.stats.queued < i + 1 and time.monotonic() < give_up:
            time.sleep(0.001)
    release.set()
    for t in [hold, *waiters]:
        t.join(30)
    assert order == [0, 1, 2, 3, 4]


async def test_cancelled_waiter_leaves_the_queue_and_holder_frees_slot(
    store: StateStore,
) -> None:
    bulkhead = Bulkhead(
        unique("b"), max_concurrent=1, max_queue=3, max_wait=30, store=store
    )
    entered = asyncio.Event()

    @bulkhead
    async def hold() -> None:
        entered.set()
        await asyncio.sleep(60)

    holder = asyncio.ensure_future(hold())
    await asyncio.wait_for(entered.wait(), 10)
    waiter = asyncio.ensure_future(bulkhead.acall(asyncio.sleep, 0))
    for _ in range(2000):
        await asyncio.sleep(0.002)
        if bulkhead.stats.queued == 1:
            break
    assert bulkhead.stats.queued == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert bulkhead.stats.queued == 0
    holder.cancel()
    with pytest.raises(asyncio.CancelledError):
        await holder
    assert bulkhead.stats.in_use == 0
    assert await bulkhead.acall(asyncio.sleep, 0, "free") == "free"


def test_interrupt_inside_frees_the_slot(store: StateStore) -> None:
    bulkhead = Bulkhead(unique("b"), max_concurrent=1, store=store)

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        bulkhead.call(interrupted)
    with pytest.raises(ZeroDivisionError):
        bulkhead.call(lambda: 1 / 0)
    assert bulkhead.stats.in_use == 0
    assert bulkhead.call(lambda: "ok") == "ok"


def test_queue_wait_never_passes_the_deadline(store: StateStore) -> None:
    bulkhead = Bulkhead(unique("b"), max_concurrent=1, max_queue=2, store=store)
    with bulkhead, pr.deadline(0.05), pytest.raises(BulkheadFullError):
        bulkhead.call(lambda: None)


def test_decorator_keeps_signature_and_switch_off_passes_through() -> None:
    bulkhead = Bulkhead("b", max_concurrent=1)

    def tool(path: str, *, depth: int = 1) -> str:
        """Read."""
        return path * depth

    async def atool(path: str) -> str:
        return path

    wrapped = bulkhead(tool)
    assert inspect.signature(wrapped) == inspect.signature(tool)
    assert wrapped.__doc__ == "Read."
    assert inspect.iscoroutinefunction(bulkhead(atool))
    with bulkhead, pr.set_active(False):
        assert wrapped("a", depth=2) == "aa"  # full, but switched off


def test_instances_share_slots_through_the_store(
    make_store: Callable[[], StateStore],
) -> None:
    name = unique("b")
    a = Bulkhead(name, max_concurrent=1, store=make_store())
    b = Bulkhead(name, max_concurrent=1, store=make_store())
    with a, pytest.raises(BulkheadFullError):
        b.call(lambda: None)
    assert b.call(lambda: 1) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_concurrent": 0},
        {"max_concurrent": 1, "max_queue": -1},
        {"max_concurrent": 1, "max_wait": -1},
        {"max_concurrent": 1, "lease_ttl": 0},
    ],
)
def test_invalid_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="Bulkhead"):
        Bulkhead("b", **kwargs)


@pytest.mark.parametrize("store_kind", ["sqlite", "redis"])  # leases: shared stores
def test_long_call_keeps_its_lease(store: StateStore) -> None:
    bulkhead = Bulkhead(unique("b"), max_concurrent=1, lease_ttl=0.3, store=store)
    with bulkhead:
        time.sleep(1.0)  # over three lease lives: the renewer keeps it
        with pytest.raises(BulkheadFullError):
            bulkhead.call(lambda: None)
    assert bulkhead.call(lambda: "free") == "free"


@pytest.mark.parametrize("store_kind", ["sqlite", "redis"])
def test_expired_lease_is_reclaimed_with_an_event(store: StateStore) -> None:
    clock = FakeClock()
    name = unique("b")
    crashed = Bulkhead(name, max_concurrent=1, lease_ttl=5, store=store, clock=clock)
    token = crashed._engine.enter()  # a holder that will never release
    crashed._engine._unhold(str(token))  # type: ignore[union-attr]  # ... nor renew
    other = Bulkhead(name, max_concurrent=1, lease_ttl=5, store=store, clock=clock)
    with pytest.raises(BulkheadFullError):
        other.call(lambda: None)
    clock.advance(5)
    with capture_events() as events:
        assert other.call(lambda: "mine") == "mine"
    assert events.of("bulkhead.lease_expired")[0].fields["leases"] == 1


# -- several real processes -----------------------------------------------------------

BUSY = """
import sys, time
from paios_reliability import Bulkhead, RedisStore, SQLiteStore
kind, target, prefix, name = sys.argv[1:5]
store = SQLiteStore(target) if kind == "sqlite" else RedisStore(target, prefix=prefix)
bulkhead = Bulkhead(name, max_concurrent=2, max_queue=10, max_wait=120, store=store)
print("ready", flush=True)
sys.stdin.readline()
spans = []
for _ in range(20):
    with bulkhead:
        entered = time.monotonic_ns()
        time.sleep(0.004)
        left = time.monotonic_ns()
    spans.append(f"{entered}:{left}")
print(" ".join(spans), flush=True)
"""


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_six_processes_never_more_than_two_inside(
    kind: str, tmp_path: Any, spawn: Callable[..., Any], request: pytest.FixtureRequest
) -> None:
    target = (
        str(tmp_path / "state.db")
        if kind == "sqlite"
        else request.getfixturevalue("redis_url")
    )
    prefix, name = unique("mp"), "sessions"
    workers = [spawn(BUSY, kind, target, prefix, name) for _ in range(6)]
    for w in workers:
        assert w.read() == "ready"
    for w in workers:
        assert w.process.stdin is not None
        w.process.stdin.write("go\n")
        w.process.stdin.flush()
    edges: list[tuple[int, int]] = []
    for w in workers:
        spans = w.read(timeout=180).split()
        assert len(spans) == 20
        for span in spans:
            entered, left = map(int, span.split(":"))
            assert entered <= left
            edges += [(entered, 1), (left, -1)]
    inside = peak = 0
    for _, step in sorted(edges):  # at equal times, exits (-1) sort first
        inside += step
        peak = max(peak, inside)
    assert len(edges) == 6 * 20 * 2
    assert peak <= 2


HOLDER = """
import sys, time
from paios_reliability import Bulkhead, RedisStore, SQLiteStore
kind, target, prefix, name = sys.argv[1:5]
store = SQLiteStore(target) if kind == "sqlite" else RedisStore(target, prefix=prefix)
Bulkhead(name, max_concurrent=1, lease_ttl=2.0, store=store).__enter__()
print("inside", flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_killed_holder_frees_its_slot_after_the_ttl(
    kind: str, tmp_path: Any, spawn: Callable[..., Any], request: pytest.FixtureRequest
) -> None:
    if kind == "sqlite":
        target = str(tmp_path / "state.db")
        store: StateStore = pr.SQLiteStore(target)
        prefix = "-"
    else:
        target = request.getfixturevalue("redis_url")
        prefix = unique("mp")
        store = pr.RedisStore(target, prefix=prefix)
    name = unique("b")
    holder = spawn(HOLDER, kind, target, prefix, name)
    assert holder.read() == "inside"
    holder.process.send_signal(signal.SIGKILL)
    holder.process.wait(30)

    state = store.get(f"bulkhead:{name}")
    assert state is not None
    (expires,) = state["l"].values()  # the dead holder's lease
    bulkhead = Bulkhead(
        name, max_concurrent=1, max_queue=1, max_wait=30, store=store, lease_ttl=2.0
    )
    if now_ns(SYSTEM_CLOCK, True) < expires - 200_000_000:
        with pytest.raises(BulkheadFullError):
            Bulkhead(name, max_concurrent=1, store=store).call(lambda: None)
    with capture_events() as events, bulkhead:
        entered = now_ns(SYSTEM_CLOCK, True)
    assert entered >= expires  # only after the dead lease ran out
    assert events.of("bulkhead.lease_expired")
    store.close()


async def test_cancellation_racing_the_store_never_leaks_a_slot(
    store: StateStore,
) -> None:
    bulkhead = Bulkhead(
        unique("b"), max_concurrent=1, max_queue=2, max_wait=30, store=store
    )

    async def work() -> str:
        await asyncio.sleep(0)
        return "done"

    for delay in (0, 0, 1, 2, 3) * 4:  # cancel at different points of entering
        task = asyncio.ensure_future(bulkhead.acall(work))
        for _ in range(delay):
            await asyncio.sleep(0)
        task.cancel()
        results = await asyncio.gather(task, return_exceptions=True)
        assert results[0] == "done" or isinstance(results[0], asyncio.CancelledError)
        assert bulkhead.stats.in_use == 0
    assert await bulkhead.acall(work) == "done"


# -- renewals never wait on another store (finding 20) --------------------------------


def test_finding_20_a_stuck_store_never_delays_bulkhead_leases_on_another(
    tmp_path: Path,
) -> None:
    stuck = ObservedSQLiteStore(tmp_path / "a.db")
    healthy = pr.SQLiteStore(tmp_path / "b.db")
    elsewhere = Bulkhead(unique("a"), max_concurrent=1, lease_ttl=0.3, store=stuck)
    clock = FakeClock()
    name = unique("b")
    mine = Bulkhead(name, max_concurrent=1, lease_ttl=0.3, store=healthy, clock=clock)
    other = Bulkhead(name, max_concurrent=1, lease_ttl=0.3, store=healthy, clock=clock)
    with elsewhere:
        blocker = block_writes(tmp_path / "a.db")  # a backup holds the file
        try:
            assert eventually(lambda: stuck.in_flight > 0, 30)  # its renewal waits
            with mine:
                for _ in range(4):  # 0.6 s of fake time against a 0.3 s lease
                    clock.advance(0.15)
                    target = now_ns(clock, True) + seconds_to_ns(0.3)
                    assert eventually(
                        lambda t=target: (
                            list(healthy.get(f"bulkhead:{name}")["l"].values()) == [t]
                        )
                    ), "the lease was not renewed while another store was stuck"
                with pytest.raises(BulkheadFullError):  # the slot is still ours
                    other.call(lambda: None)
            assert other.call(lambda: "free") == "free"
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
    stuck.close()
    healthy.close()


# -- a late waiter keeps its place; the queue stays bounded (finding 12) -------------

_S = 1_000_000_000
_LEASE_NS, _WAITER_NS = 60 * _S, 2 * _S


def _take(
    data: Any, now: int, lease: str, waiter: str | None = None, seq: int | None = None
) -> tuple[Any, int]:
    new, (outcome, _) = bulkhead_module._take(
        data,
        now,
        lease=lease,
        lease_ns=_LEASE_NS,
        limit=1,
        waiter=waiter,
        queue=1,
        waiter_ns=_WAITER_NS,
        seq=seq,
    )
    return new, outcome


def test_finding_12_a_late_poll_re_registers_at_the_original_place() -> None:
    b = bulkhead_module
    data, outcome = _take(None, 0, "L0")  # W0 holds the only slot
    assert outcome == b._ENTERED
    data, outcome = _take(data, 0, "L1")
    assert outcome == b._QUEUED  # room in the queue: W1 joins it
    data, seq = b._join(data, 0, "W1", 1, _WAITER_NS)
    assert seq is not None
    # W1's poll comes 3 s late (a store update waited on the busy file): its
    # registration expired, but it comes back at its place...
    data, outcome = _take(data, 3 * _S, "L1", "W1", seq)
    assert outcome == b._QUEUED
    assert data["w"]["W1"][0] == seq
    # ... so a later arrival finds the one-place queue full,
    assert _take(data, 3 * _S, "L2")[1] == b._FULL
    # and when the slot frees, W1 is served first.
    data, _ = b._drop(data, 3 * _S, "L0", None)
    data, outcome = _take(data, 3 * _S, "L1", "W1", seq)
    assert outcome == b._ENTERED
    assert data["w"] == {}


def test_finding_12_a_late_waiter_finding_the_queue_full_is_refused() -> None:
    b = bulkhead_module
    data, _ = _take(None, 0, "L0")
    data, seq1 = b._join(_take(data, 0, "L1")[0], 0, "W1", 1, _WAITER_NS)
    # W1 is pruned (late); meanwhile W2 arrives and takes the queue's one place.
    data, outcome = _take(data, 3 * _S, "L2")
    assert outcome == b._QUEUED
    data, seq2 = b._join(data, 3 * _S, "W2", 1, _WAITER_NS)
    assert seq2 is not None
    data, outcome = _take(data, 3 * _S, "L1", "W1", seq1)
    assert outcome == b._FULL  # max_queue=1 holds: W1 is not squeezed in
    assert list(data["w"]) == ["W2"]


def _late_waiter(
    bulkhead: Bulkhead, clock: FakeClock
) -> tuple[Any, Any, Callable[[Any], Any]]:
    """A queued caller's step machine, driven by hand so its poll can come late."""
    engine = bulkhead._engine
    assert isinstance(engine, bulkhead_module._StoreEngine)
    attempt = bulkhead_module._Attempt(bulkhead_module._new_id("lease"))
    steps = engine._attempts(attempt)

    def run_until_sleep(reply: Any) -> Any:
        while True:
            kind, arg = steps.send(reply)
            if kind == "sleep":
                return None
            reply = bulkhead.store.update(engine._key, arg, ttl=engine._ttl)

    return steps, attempt, run_until_sleep


@pytest.mark.parametrize("store_kind", ["sqlite", "redis"])
def test_finding_12_with_a_store_a_late_waiter_keeps_its_place(
    store: StateStore,
) -> None:
    clock = FakeClock()
    name = unique("b")

    def bulkhead() -> Bulkhead:
        return Bulkhead(
            name, max_concurrent=1, max_queue=1, max_wait=60, store=store, clock=clock
        )

    holder = bulkhead()
    token = holder._engine.enter()
    _, attempt, run_until_sleep = _late_waiter(bulkhead(), clock)
    run_until_sleep(None)  # W1: refused a slot, joined the queue, sleeps
    assert holder.stats.queued == 1
    clock.advance(3.0)  # ... and wakes 3 s late: its registration expired
    assert holder.stats.queued == 0
    run_until_sleep(None)  # its poll re-registers it
    assert holder.stats.queued == 1
    with pytest.raises(BulkheadFullError, match="queue is full"):
        bulkhead().call(lambda: None)  # a later arrival: the queue is full
    holder._engine.exit(token)
    with pytest.raises(StopIteration):
        run_until_sleep(None)  # W1 enters first
    assert holder.stats == pr.BulkheadStats(name, 1, 1, 0)
    holder._engine.exit(attempt.lease)


@pytest.mark.parametrize("store_kind", ["sqlite", "redis"])
def test_finding_12_with_a_store_a_late_waiter_behind_a_full_queue_gets_full(
    store: StateStore,
) -> None:
    clock = FakeClock()
    name = unique("b")

    def bulkhead() -> Bulkhead:
        return Bulkhead(
            name, max_concurrent=1, max_queue=1, max_wait=60, store=store, clock=clock
        )

    holder = bulkhead()
    token = holder._engine.enter()
    _, _, late = _late_waiter(bulkhead(), clock)
    late(None)  # W1 queued
    clock.advance(3.0)  # W1's registration expires; W2 arrives and queues
    _, _, on_time = _late_waiter(bulkhead(), clock)
    on_time(None)
    assert holder.stats.queued == 1
    with capture_events() as events, pytest.raises(BulkheadFullError, match="place"):
        late(None)  # W1's late poll: no room any more, and it is told so
    assert events.of("bulkhead.rejected")
    assert holder.stats.queued == 1  # max_queue=1 still bounds the queue
    holder._engine.exit(token)


class QueueSteps(RuleBasedStateMachine):
    """The shared-store queue steps with polls that come late.

    Properties: slots and queue stay within their bounds; a poll answered
    "queued" leaves the waiter registered at the place it first joined; a
    poll answered "full" means the queue really was full.
    """

    LIMIT, QUEUE = 2, 2

    def __init__(self) -> None:
        super().__init__()
        self.data: Any = None
        self.now = 0
        self.ids = itertools.count()
        self.holders: list[str] = []
        self.waiters: dict[str, tuple[str, int]] = {}  # waiter -> (lease, seq)

    def take(self, lease: str, waiter: str | None, seq: int | None) -> int:
        self.data, (outcome, _) = bulkhead_module._take(
            self.data,
            self.now,
            lease=lease,
            lease_ns=_LEASE_NS,
            limit=self.LIMIT,
            waiter=waiter,
            queue=self.QUEUE,
            waiter_ns=_WAITER_NS,
            seq=seq,
        )
        return outcome

    @rule()
    def arrive(self) -> None:
        n = next(self.ids)
        lease, waiter = f"L{n}", f"W{n}"
        outcome = self.take(lease, None, None)
        if outcome == bulkhead_module._ENTERED:
            self.holders.append(lease)
        elif outcome == bulkhead_module._QUEUED:
            self.data, seq = bulkhead_module._join(
                self.data, self.now, waiter, self.QUEUE, _WAITER_NS
            )
            if seq is not None:
                self.waiters[waiter] = (lease, seq)

    @precondition(lambda self: self.waiters)
    @rule(data=st.data())
    def poll(self, data: st.DataObject) -> None:
        waiter = data.draw(st.sampled_from(sorted(self.waiters)))
        lease, seq = self.waiters[waiter]
        outcome = self.take(lease, waiter, seq)
        live = self.data["w"] if self.data else {}
        if outcome == bulkhead_module._ENTERED:
            del self.waiters[waiter]
            self.holders.append(lease)
            assert waiter not in live
        elif outcome == bulkhead_module._QUEUED:
            assert live[waiter][0] == seq  # registered, at its original place
        else:
            del self.waiters[waiter]
            assert len(live) >= self.QUEUE

    @precondition(lambda self: self.holders)
    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        lease = data.draw(st.sampled_from(self.holders))
        self.holders.remove(lease)
        self.data, _ = bulkhead_module._drop(self.data, self.now, lease, None)

    @rule(seconds=st.sampled_from([0.1, 1.5, 3.0]))
    def advance(self, seconds: float) -> None:
        self.now += int(seconds * _S)

    @invariant()
    def within_bounds(self) -> None:
        leases, waiters, _, _ = bulkhead_module._pruned(self.data, self.now)
        assert len(leases) <= self.LIMIT
        assert len(waiters) <= self.QUEUE


def test_finding_12_queue_steps_keep_places_and_bounds() -> None:
    run_state_machine_as_test(
        QueueSteps,
        settings=settings(max_examples=200, stateful_step_count=40, deadline=None),
    )
