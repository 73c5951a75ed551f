"""LockManager and Lease: exclusion, fencing tokens, expiry, renewal, processes."""

from __future__ import annotations

import _thread
import asyncio
import signal
import sqlite3
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import paios_reliability as pr
from paios_reliability import (
    Lease,
    LockConflictError,
    LockManager,
    MemoryStore,
    StoreUnavailableError,
    deadline,
)
from paios_reliability._stores import now_ns, seconds_to_ns
from paios_reliability._stores._renewal import active_renewals
from paios_reliability.testing import FakeClock, capture_events
from paios_reliability.typing import StateStore
from store_models import ObservedSQLiteStore, block_writes, eventually, run_model

WORKERS = str(Path(__file__).with_name("_proc_runstate_workers.py"))
MODES = ["sync", "async"]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def acquire(
    locks: LockManager, mode: str, key: str, ttl: float = 30.0, wait: float = 0.0
) -> Lease:
    if mode == "sync":
        return locks.acquire(key, ttl, wait)
    return await locks.aacquire(key, ttl, wait)


async def release(lease: Lease, mode: str) -> bool:
    return lease.release() if mode == "sync" else await lease.arelease()


async def extend(lease: Lease, mode: str, ttl: float | None = None) -> float:
    return lease.extend(ttl) if mode == "sync" else await lease.aextend(ttl)


# -- exclusion and fencing ----------------------------------------------------------------


async def test_a_held_lock_refuses_a_second_holder_and_names_the_first(
    store: StateStore, mode: str
) -> None:
    locks = LockManager(store, owner="worker-a")
    lease = await acquire(locks, mode, "run:1", ttl=10.0)
    assert lease.key == "run:1"
    assert lease.owner == "worker-a"
    assert lease.holder.startswith("worker-a:")
    assert 9.0 < lease.remaining <= 10.0
    with pytest.raises(LockConflictError) as caught:
        await acquire(LockManager(store, owner="worker-b"), mode, "run:1")
    error = caught.value
    assert (error.key, error.holder, error.code) == (
        "run:1",
        lease.holder,
        "LOCK_CONFLICT",
    )
    assert error.retry_after is not None
    assert 0.0 < error.retry_after <= 10.0
    assert error.context["owner"] == "worker-a"
    assert error.retryable is True
    # Other keys are independent.
    other = await acquire(locks, mode, "run:2")
    assert await release(other, mode) is True
    assert await release(lease, mode) is True
    again = await acquire(locks, mode, "run:1")
    assert again.token > lease.token


async def test_tokens_strictly_increase_through_release_and_expiry(
    store: StateStore, mode: str
) -> None:
    clock = FakeClock()
    locks = LockManager(store, clock=clock)
    tokens = []
    for _ in range(5):
        lease = await acquire(locks, mode, "k", ttl=5.0)
        tokens.append(lease.token)
        assert await release(lease, mode) is True
    for _ in range(3):  # holders that die: never released, only expired
        lease = await acquire(locks, mode, "k", ttl=1.0)
        tokens.append(lease.token)
        clock.advance(1.5)
    assert tokens == sorted(set(tokens))
    assert len(tokens) == 8


async def test_tokens_keep_growing_even_if_the_record_is_lost(
    store: StateStore, mode: str
) -> None:
    # A Redis restart without persistence, or a record garbage-collected after
    # a day unused: the token seed from the clock still moves forward.
    locks = LockManager(store)
    first = await acquire(locks, mode, "k")
    assert await release(first, mode) is True
    store.delete("lock:k")
    time.sleep(0.002)
    second = await acquire(locks, mode, "k")
    assert second.token > first.token


async def test_an_expired_lease_can_neither_release_nor_extend_anothers_lock(
    store: StateStore, mode: str
) -> None:
    clock = FakeClock()
    a = await acquire(LockManager(store, owner="a", clock=clock), mode, "k", ttl=1.0)
    clock.advance(1.0)  # exactly at expiry: no longer held
    b = await acquire(LockManager(store, owner="b", clock=clock), mode, "k", ttl=10.0)
    assert b.token > a.token
    with capture_events() as events:
        assert await release(a, mode) is False
    assert events.names() == ["paios_reliability.lock.release_refused"]
    assert events[0].fields["holder"] == b.holder
    with pytest.raises(LockConflictError) as caught:
        await extend(a, mode)
    assert caught.value.holder == b.holder
    assert a.lost is True
    # b is untouched: a third party still sees b, and b can extend and release.
    with pytest.raises(LockConflictError) as third:
        await acquire(LockManager(store, owner="c", clock=clock), mode, "k")
    assert third.value.holder == b.holder
    clock.advance(5.0)
    now = clock.time() if store.shared else clock.monotonic()
    assert await extend(b, mode, 20.0) == pytest.approx(now + 20.0, abs=1e-6)
    assert b.remaining == pytest.approx(20.0, abs=1e-6)
    assert await release(b, mode) is True


async def test_an_expired_lease_releases_nothing_even_when_nobody_took_over(
    store: StateStore, mode: str
) -> None:
    clock = FakeClock()
    locks = LockManager(store, clock=clock)
    lease = await acquire(locks, mode, "k", ttl=1.0)
    clock.advance(2.0)
    with pytest.raises(LockConflictError):
        await extend(lease, mode)
    assert await release(lease, mode) is False
    assert await release(lease, mode) is False  # twice is harmless
    fresh = await acquire(locks, mode, "k")
    assert fresh.token > lease.token


async def test_release_twice_is_harmless_and_extend_after_release_fails(
    store: StateStore, mode: str
) -> None:
    locks = LockManager(store)
    lease = await acquire(locks, mode, "k")
    assert await release(lease, mode) is True
    assert lease.released
    assert await release(lease, mode) is False
    with pytest.raises(LockConflictError):
        await extend(lease, mode)


# -- waiting ------------------------------------------------------------------------------


async def test_a_waiter_gets_the_lock_when_the_dead_holders_lease_expires(
    store: StateStore, mode: str
) -> None:
    clock = FakeClock()
    dead = await acquire(LockManager(store, clock=clock), mode, "k", ttl=2.0)
    with capture_events() as events:
        lease = await acquire(
            LockManager(store, clock=clock), mode, "k", ttl=5.0, wait=10.0
        )
    assert lease.token > dead.token
    assert 2.0 - 1e-6 <= sum(clock.sleeps) < 10.0
    assert all(s <= 0.05 for s in clock.sleeps)  # polled with a short backoff
    taken = events.of("lock.expired_taken_over")
    assert [e.fields["previous"] for e in taken] == [dead.holder]


async def test_a_waiter_gives_up_after_wait(store: StateStore, mode: str) -> None:
    clock = FakeClock()
    holder = await acquire(LockManager(store, clock=clock), mode, "k", ttl=30.0)
    with capture_events() as events, pytest.raises(LockConflictError) as caught:
        await acquire(LockManager(store, clock=clock), mode, "k", wait=1.0)
    assert 0.99 <= sum(clock.sleeps) <= 1.0 + 1e-9
    assert caught.value.holder == holder.holder
    assert caught.value.retry_after == pytest.approx(29.0, abs=0.06)
    assert "waited 1.0" in str(caught.value)
    assert events.names()[-1] == "paios_reliability.lock.conflict"


async def test_waiting_never_outlasts_the_enclosing_deadline(
    store: StateStore, mode: str, fake_clock: FakeClock
) -> None:
    await acquire(LockManager(store), mode, "k", ttl=30.0)
    with deadline(0.5), pytest.raises(LockConflictError):
        await acquire(LockManager(store), mode, "k", wait=10.0)
    assert sum(fake_clock.sleeps) <= 0.5 + 1e-9


async def test_release_lets_a_real_waiter_in(store: StateStore) -> None:
    locks = LockManager(store)
    lease = locks.acquire("k")
    got: list[Lease] = []
    waiter = threading.Thread(target=lambda: got.append(locks.acquire("k", wait=30.0)))
    waiter.start()
    time.sleep(0.05)
    assert not got  # still waiting while held
    lease.release()
    waiter.join(30)
    assert len(got) == 1
    assert got[0].token > lease.token


# -- with / async with --------------------------------------------------------------------


async def in_block(
    locks: LockManager,
    mode: str,
    key: str,
    body: Callable[[Lease], Awaitable[None]],
    **kwargs: Any,
) -> Lease:
    """Run ``body`` inside ``with`` or ``async with locks.lock(key)``."""
    if mode == "sync":
        with locks.lock(key, **kwargs) as lease:
            await body(lease)
    else:
        async with locks.lock(key, **kwargs) as lease:
            await body(lease)
    return lease


async def test_lock_block_holds_for_the_block_and_releases_after(
    store: StateStore, mode: str
) -> None:
    locks = LockManager(store)

    async def body(lease: Lease) -> None:
        assert not lease.released
        with pytest.raises(LockConflictError):
            await acquire(locks, mode, "k")

    lease = await in_block(locks, mode, "k", body, ttl=5.0)
    assert lease.released
    after = await acquire(locks, mode, "k")
    assert after.token > lease.token


async def test_lock_block_releases_when_the_body_raises(
    store: StateStore, mode: str
) -> None:
    locks = LockManager(store)

    async def body(lease: Lease) -> None:
        _ = 1 / 0

    with pytest.raises(ZeroDivisionError):
        await in_block(locks, mode, "k", body)
    await acquire(locks, mode, "k")  # free again


async def test_lease_is_a_context_manager_too(store: StateStore, mode: str) -> None:
    locks = LockManager(store)
    if mode == "sync":
        with locks.acquire("k") as lease:
            assert not lease.released
    else:
        async with await locks.aacquire("k") as lease:
            assert not lease.released
    assert lease.released


async def test_a_block_whose_lease_expired_raises_on_exit(
    store: StateStore, mode: str
) -> None:
    clock = FakeClock()
    locks = LockManager(store, clock=clock)

    async def body(lease: Lease) -> None:
        clock.advance(2.0)
        await acquire(locks, mode, "k")  # someone else takes it meanwhile

    with (
        capture_events() as events,
        pytest.raises(LockConflictError, match="expired before the block ended"),
    ):
        await in_block(locks, mode, "k", body, ttl=1.0)
    assert "paios_reliability.lock.lost" in events.names()


async def test_a_lost_lease_never_masks_the_bodys_own_error(
    store: StateStore, mode: str
) -> None:
    clock = FakeClock()
    locks = LockManager(store, clock=clock)

    async def body(lease: Lease) -> None:
        clock.advance(2.0)
        raise KeyError("body")

    with pytest.raises(KeyError):
        await in_block(locks, mode, "k", body, ttl=1.0)


def test_a_lock_block_cannot_be_entered_twice() -> None:
    locks = LockManager(MemoryStore())
    block = locks.lock("k")
    with block, pytest.raises(RuntimeError, match="entered twice"), block:
        pass
    locks.acquire("k").release()  # the first entry was released


# -- automatic extension ------------------------------------------------------------------


def _wait_until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    give_up = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < give_up, "condition never became true"
        time.sleep(0.005)


async def test_auto_extend_keeps_the_lease_alive_past_its_ttl(
    store: StateStore, mode: str
) -> None:
    clock = FakeClock()
    locks = LockManager(store, clock=clock)
    other = LockManager(store, clock=clock)

    async def body(lease: Lease) -> None:
        for _ in range(5):  # 5 x 0.2 s of fake time against a 0.3 s lease
            clock.advance(0.2)
            target = clock.time() if store.shared else clock.monotonic()
            # Wait (real time, bounded) for the renewer thread to extend it.
            _wait_until(
                lambda target=target: abs(lease.expires_at - (target + 0.3)) < 1e-6
            )
            with pytest.raises(LockConflictError):
                await acquire(other, mode, "k")

    lease = await in_block(locks, mode, "k", body, ttl=0.3, auto_extend=True)
    assert lease.released
    assert not lease.lost
    _wait_until(lambda: active_renewals() == 0)  # renewing stops with the block


async def test_auto_extend_reports_a_lease_it_finds_lost(store: StateStore) -> None:
    clock = FakeClock()
    locks = LockManager(store, clock=clock)
    takers: list[Lease] = []

    async def body(lease: Lease) -> None:
        clock.advance(1.0)  # expires before the renewer runs
        takers.append(LockManager(store, clock=clock).acquire("k"))
        _wait_until(lambda: lease.lost)

    with capture_events() as events, pytest.raises(LockConflictError):
        await in_block(locks, "sync", "k", body, ttl=0.3, auto_extend=True)
    assert "paios_reliability.lock.lost" in events.names()
    assert takers[0].release() is True


# -- events and arguments -----------------------------------------------------------------


def test_events_of_a_lock_lifecycle(store: StateStore) -> None:
    locks = LockManager(store)
    with capture_events() as events:
        lease = locks.acquire("k")
        lease.extend(10.0)
        with pytest.raises(LockConflictError):
            locks.acquire("k")
        lease.release()
    assert [n for n in events.names() if ".lock." in n] == [
        "paios_reliability.lock.acquired",
        "paios_reliability.lock.extended",
        "paios_reliability.lock.conflict",
        "paios_reliability.lock.released",
    ]
    ours = events.of("lock.acquired") + events.of("lock.released")
    assert {e.subject for e in ours} == {"k"}
    assert [e.fields["fencing_token"] for e in ours] == [lease.token, lease.token]


@pytest.mark.parametrize(
    ("key", "ttl", "wait"),
    [
        ("", 1.0, 0.0),
        ("k", 0.0, 0.0),
        ("k", -1.0, 0.0),
        ("k", 1.0, -0.1),
        ("k", float("inf"), 0.0),
    ],
)
def test_bad_arguments_are_refused(key: str, ttl: float, wait: float) -> None:
    with pytest.raises(ValueError):
        LockManager().acquire(key, ttl, wait)


def test_lease_repr_and_times() -> None:
    clock = FakeClock(start=100.0)
    lease = LockManager(MemoryStore(), owner="me", clock=clock).acquire("k", ttl=4.0)
    assert lease.expires_at == pytest.approx(104.0)
    assert "key='k'" in repr(lease)
    assert "owner='me'" in repr(lease)
    clock.advance(5.0)
    assert lease.remaining == 0.0


def test_a_store_that_is_down_gives_a_clear_error_not_a_hang(
    redis_server_factory: Callable[[], Any],
) -> None:
    server = redis_server_factory()
    locks = LockManager(pr.RedisStore(server.url, prefix="down"))
    lease = locks.acquire("k")
    server.stop()
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError):
        locks.acquire("k2", wait=1.0)
    with pytest.raises(StoreUnavailableError):
        lease.release()
    assert time.monotonic() - started < 30  # bounded, never hangs


def test_threads_never_overlap_on_a_memory_lock() -> None:
    locks = LockManager(MemoryStore())
    counter = {"n": 0, "inside": 0, "max_inside": 0}

    def work() -> None:
        for _ in range(50):
            with locks.lock("k", wait=30.0):
                counter["inside"] += 1
                counter["max_inside"] = max(counter["max_inside"], counter["inside"])
                value = counter["n"]
                time.sleep(0)
                counter["n"] = value + 1
                counter["inside"] -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert counter["n"] == 400
    assert counter["max_inside"] == 1


# -- the event loop keeps running while a lock call waits on SQLite -----------------------


async def test_async_lock_calls_never_block_the_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = pr.SQLiteStore(path)
    locks = LockManager(store)
    (await locks.aacquire("warm")).release()
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")  # the database's write lock is taken
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1
            if ticks == 20:
                # Only a running loop gets here: it frees the lock the call waits on.
                blocker.execute("COMMIT")

    task = asyncio.ensure_future(ticker())
    try:
        lease = await asyncio.wait_for(locks.aacquire("k"), 30)
        assert ticks >= 20
        assert await asyncio.wait_for(lease.arelease(), 30) is True
    finally:
        task.cancel()
        blocker.close()
        store.close()


# -- several real processes ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_eight_processes_increment_a_shared_counter_under_the_lock(
    kind: str, tmp_path: Path, spawn: Callable[..., Any], request: pytest.FixtureRequest
) -> None:
    target = (
        str(tmp_path / "state.db")
        if kind == "sqlite"
        else request.getfixturevalue("redis_url")
    )
    prefix = f"mp-{uuid.uuid4().hex}"
    counter, log, go = tmp_path / "counter", tmp_path / "log", tmp_path / "go"
    counter.write_text("0")
    script = f"import runpy, sys; sys.argv = [{WORKERS!r}, *sys.argv[1:]]; runpy.run_path({WORKERS!r}, run_name='__main__')"
    workers = [
        spawn(
            script,
            "lock_counter",
            kind,
            target,
            prefix,
            "shared",
            str(counter),
            str(log),
            "200",
            str(go),
        )
        for _ in range(8)
    ]
    go.touch()
    for worker in workers:
        assert worker.finish(timeout=240).strip() == '{"done": 200}'
    assert counter.read_text() == "1600"
    lines = log.read_text().splitlines()
    assert len(lines) == 3200
    tokens = []
    for enter, leave in zip(lines[0::2], lines[1::2], strict=True):
        # Critical sections never overlap: every enter is followed by its own exit.
        kind_in, token_in, pid_in = enter.split()
        kind_out, token_out, pid_out = leave.split()
        assert (kind_in, kind_out) == ("enter", "exit")
        assert (token_in, pid_in) == (token_out, pid_out)
        tokens.append(int(token_in))
    assert tokens == sorted(set(tokens))  # fencing tokens strictly increase
    assert len({line.split()[2] for line in lines}) == 8


# -- Hypothesis: the lock manager against a reference model (FakeClock) -------------------


class LockModel(RuleBasedStateMachine):
    """The specification: per key one holder until its expiry; tokens only grow."""

    def __init__(self, store: StateStore) -> None:
        super().__init__()
        self.store = store
        self.clock = FakeClock(start=1000.0)
        self.prefix = uuid.uuid4().hex[:8]
        self.managers = [
            LockManager(store, owner=f"w{i}", clock=self.clock) for i in range(3)
        ]
        self.leases: list[Lease] = []
        # key -> (holder lease or None, expires_at_ns, last_token)
        self.model: dict[str, tuple[Lease | None, int, int]] = {}

    def now(self) -> int:
        # Store time: integer nanoseconds of the wall clock (shared stores) or
        # the monotonic clock (memory), exactly as leases are timed.
        return now_ns(self.clock, self.store.shared)

    def key(self, index: int) -> str:
        return f"{self.prefix}:{index}"

    def live_holder(self, key: str) -> Lease | None:
        holder, expires, _ = self.model.get(key, (None, 0, 0))
        return holder if holder is not None and expires > self.now() else None

    @initialize()
    def start(self) -> None:
        assert self.model == {}

    @rule(
        worker=st.integers(0, 2),
        index=st.integers(0, 1),
        ttl=st.sampled_from([0.5, 1.0, 3.0]),
    )
    def acquire(self, worker: int, index: int, ttl: float) -> None:
        key = self.key(index)
        holder = self.live_holder(key)
        _, _, last = self.model.get(key, (None, 0, 0))
        if holder is not None:
            with pytest.raises(LockConflictError) as caught:
                self.managers[worker].acquire(key, ttl)
            assert caught.value.holder == holder.holder
            return
        lease = self.managers[worker].acquire(key, ttl)
        assert lease.token > last  # strictly increasing, across every holder
        expires = self.now() + seconds_to_ns(ttl)
        assert lease.expires_at == expires / 1e9
        self.model[key] = (lease, expires, lease.token)
        self.leases.append(lease)

    @precondition(lambda self: self.leases)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        lease = data.draw(st.sampled_from(self.leases))
        expected = self.live_holder(lease.key) is lease
        assert lease.release() is expected
        if expected:
            _, _, last = self.model[lease.key]
            self.model[lease.key] = (None, 0, last)

    @precondition(lambda self: self.leases)
    @rule(data=st.data(), ttl=st.sampled_from([0.5, 2.0]))
    def extend(self, data: st.DataObject, ttl: float) -> None:
        lease = data.draw(st.sampled_from(self.leases))
        if self.live_holder(lease.key) is lease:
            expires = self.now() + seconds_to_ns(ttl)
            assert lease.extend(ttl) == expires / 1e9
            self.model[lease.key] = (lease, expires, lease.token)
        else:
            with pytest.raises(LockConflictError):
                lease.extend(ttl)

    @rule(seconds=st.sampled_from([0.0, 0.25, 0.5, 1.0, 3.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @invariant()
    def at_most_one_holder_and_it_is_the_models(self) -> None:
        for index in (0, 1):
            key = self.key(index)
            record = self.store.get(f"lock:{key}")
            holder = self.live_holder(key)
            if holder is None:
                assert (
                    record is None
                    or record.get("h") is None
                    or record["x"] <= self.now()
                )
            else:
                assert record["h"] == holder.holder
                assert record["t"] == holder.token


@pytest.mark.parametrize(
    ("kind", "examples"), [("memory", 150), ("sqlite", 25), ("redis", 30)]
)
def test_lock_manager_matches_the_reference_model(
    kind: str, examples: int, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    run_model(
        LockModel, kind, examples=examples, steps=30, tmp_path=tmp_path, request=request
    )


# -- interrupted while acquiring: no phantom lock (finding 5) -------------------------


async def test_finding_05_aacquire_cancelled_while_the_store_waits_leaves_no_lock(
    tmp_path: Path,
) -> None:
    path = tmp_path / "locks.db"
    store = ObservedSQLiteStore(path)
    locks = LockManager(store)
    store.get("warm")
    blocker = block_writes(path)  # another process is writing
    task = asyncio.ensure_future(locks.aacquire("run:42", ttl=30))
    for _ in range(10_000):  # the acquire's update now waits on the file
        await asyncio.sleep(0.001)
        if store.in_flight:
            break
    assert store.in_flight
    task.cancel()  # e.g. an enclosing deadline fired
    await asyncio.sleep(0.01)
    blocker.execute("COMMIT")  # the writer finishes: the update lands
    blocker.close()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The caller got no lease, so nobody may hold the lock.
    lease = locks.acquire("run:42", ttl=30)
    assert lease.release() is True
    store.close()


@pytest.fixture
def ctrl_c() -> Any:
    """SIGINT raises KeyboardInterrupt in the main thread (as in a terminal)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("ctrl_c")
def test_finding_05_ctrl_c_while_acquire_waits_on_the_store_leaves_no_lock(
    tmp_path: Path,
) -> None:
    path = tmp_path / "locks.db"
    store = ObservedSQLiteStore(path)
    locks = LockManager(store)
    store.get("warm")
    blocker = block_writes(path)
    main = threading.get_ident()

    def press_ctrl_c_then_let_the_writer_finish() -> None:
        assert eventually(lambda: store.in_flight > 0, 30)
        signal.pthread_kill(main, signal.SIGINT)
        blocker.execute("COMMIT")

    presser = threading.Thread(target=press_ctrl_c_then_let_the_writer_finish)
    presser.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            locks.acquire("run:42", ttl=30)
    finally:
        presser.join(30)
        blocker.close()
    # Neither a lock record nor the file's write lock is left behind: another
    # process (its own connection) takes the lock at once.
    other = pr.SQLiteStore(path, busy_timeout_ms=1000)
    lease = LockManager(other).acquire("run:42", ttl=30)
    assert lease.release() is True
    other.close()
    store.close()


class _InterruptedAfterUpdate(pr.SQLiteStore):
    """A real SQLite store on which Ctrl-C arrives just after one update landed."""

    armed = False

    def update(self, key: str, fn: Callable[[Any], Any], *, ttl: float) -> Any:
        result = super().update(key, fn, ttl=ttl)
        if self.armed:
            self.armed = False
            _thread.interrupt_main()  # raised at the next bytecode: right here
        return result


@pytest.mark.usefixtures("ctrl_c")
def test_finding_05_ctrl_c_after_the_acquire_landed_leaves_no_lock(
    tmp_path: Path,
) -> None:
    store = _InterruptedAfterUpdate(tmp_path / "locks.db")
    locks = LockManager(store)
    store.armed = True
    with pytest.raises(KeyboardInterrupt):
        locks.acquire("run:42", ttl=30)
    record = store.get("lock:run:42")
    assert record is not None
    assert record.get("h") is None  # freed; the token counter stays
    lease = locks.acquire("run:42", ttl=30)
    assert lease.token > record["t"]
    assert lease.release() is True
    store.close()


# -- a renewal racing a normal release is no loss (finding 18) ------------------------


class _PausingAfterUpdate(MemoryStore):
    """Memory state whose next update pauses after it landed, until resumed."""

    def __init__(self) -> None:
        super().__init__()
        self.pause_next = False
        self.landed = threading.Event()
        self.resume = threading.Event()

    def update(self, key: str, fn: Callable[[Any], Any], *, ttl: float) -> Any:
        pause, self.pause_next = self.pause_next, False
        result = super().update(key, fn, ttl=ttl)
        if pause:
            self.landed.set()
            assert self.resume.wait(30)
        return result


def test_finding_18_a_renewal_landing_after_a_normal_release_is_not_a_loss() -> None:
    store = _PausingAfterUpdate()
    lease = LockManager(store).acquire("k", ttl=30)
    store.pause_next = True
    released: list[bool] = []
    releaser = threading.Thread(target=lambda: released.append(lease.release()))
    releaser.start()
    assert store.landed.wait(30)  # the release landed; release() has not returned
    with capture_events() as events:
        # The renewal that was already running when release() began.
        keep_renewing = lease._renew_once()
    store.resume.set()
    releaser.join(30)
    assert released == [True]
    assert keep_renewing is False
    assert lease.lost is False
    assert not events.of("lock.lost")
    assert not events.of("lock.extend_refused")


def test_fencing_token_stays_readable_in_redacted_events() -> None:
    # A fencing token is an ordering number, not a credential: the redacted
    # form of a lock event (log lines, event store) must still show it.
    locks = LockManager(MemoryStore())
    with capture_events() as events, locks.acquire("k") as lease:
        pass
    (acquired,) = events.of("lock.acquired")
    assert acquired.to_dict()["fencing_token"] == lease.token
