"""CircuitBreaker: trip rules, half-open probes, taxonomy, stores, processes."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
)

import paios_reliability as pr
from paios_reliability import CircuitBreaker, CircuitOpenError, MemoryStore
from paios_reliability._stores import now_ns
from paios_reliability.testing import FakeClock, capture_events
from paios_reliability.typing import StateStore
from store_models import run_model

MODES = ["sync", "async"]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def http_error(status: int) -> httpx.HTTPStatusError:
    request = httpx.Request("GET", "http://service.invalid/tool")
    response = httpx.Response(status, request=request)
    return httpx.HTTPStatusError(f"HTTP {status}", request=request, response=response)


class Op:
    """A downstream operation: raises ``error`` (if any) and counts its runs."""

    def __init__(self) -> None:
        self.runs = 0
        self.error: BaseException | None = None

    def __call__(self) -> str:
        self.runs += 1
        if self.error is not None:
            raise self.error
        return "ok"


async def through(breaker: CircuitBreaker, mode: str, op: Op) -> Any:
    """One call of ``op`` through the breaker's decorator, sync or async."""
    if mode == "sync":
        return breaker(op)()

    @breaker
    async def aop() -> str:
        await asyncio.sleep(0)
        return op()

    return await aop()


async def failing(
    breaker: CircuitBreaker, mode: str, times: int, error: BaseException
) -> None:
    op = Op()
    op.error = error
    for _ in range(times):
        with pytest.raises(type(error)):
            await through(breaker, mode, op)


# -- the basics, sync and async, on every store ------------------------------------


async def test_opens_after_five_consecutive_failures_by_default(
    mode: str, store: StateStore
) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(f"b-{uuid.uuid4().hex}", store=store, clock=clock)
    await failing(breaker, mode, 4, ConnectionResetError("reset"))
    assert breaker.state == "closed"
    assert breaker.stats.consecutive_failures == 4
    await failing(breaker, mode, 1, ConnectionResetError("reset"))
    assert breaker.state == "open"

    clock.advance(12.5)
    op = Op()
    with pytest.raises(CircuitOpenError) as info:
        await through(breaker, mode, op)
    assert op.runs == 0
    assert info.value.breaker_name == breaker.name
    assert info.value.retry_after == pytest.approx(30.0 - 12.5, abs=1e-6)
    assert info.value.code == "CIRCUIT_OPEN"
    assert info.value.retryable is True


async def test_success_resets_the_consecutive_count(
    mode: str, store: StateStore
) -> None:
    breaker = CircuitBreaker(f"b-{uuid.uuid4().hex}", store=store, failure_threshold=3)
    for _ in range(3):
        await failing(breaker, mode, 2, TimeoutError("slow"))
        assert await through(breaker, mode, Op()) == "ok"
    assert breaker.state == "closed"
    assert breaker.stats.consecutive_failures == 0


async def test_half_open_probe_success_closes_and_failure_reopens(
    mode: str, store: StateStore
) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        f"b-{uuid.uuid4().hex}",
        store=store,
        failure_threshold=2,
        reset_timeout=10,
        clock=clock,
    )
    await failing(breaker, mode, 2, ConnectionRefusedError("down"))
    clock.advance(10)
    assert breaker.state == "half_open"
    await failing(breaker, mode, 1, ConnectionRefusedError("still down"))
    assert breaker.state == "open"
    assert breaker.stats.retry_after == pytest.approx(10.0)
    clock.advance(10)
    assert await through(breaker, mode, Op()) == "ok"
    assert breaker.state == "closed"
    assert breaker.stats.opens == 0


async def test_permanent_client_errors_do_not_count(
    mode: str, store: StateStore
) -> None:
    breaker = CircuitBreaker(f"b-{uuid.uuid4().hex}", store=store, failure_threshold=2)
    await failing(breaker, mode, 1, ConnectionResetError("transient"))
    for error in (
        http_error(404),
        http_error(400),
        http_error(422),
        ValueError("bad input"),
    ):
        await failing(breaker, mode, 3, error)
    assert breaker.state == "closed"
    assert breaker.stats.consecutive_failures == 1  # neither counted nor reset
    await failing(breaker, mode, 1, http_error(503))
    assert breaker.state == "open"


async def test_local_back_pressure_does_not_count(mode: str) -> None:
    breaker = CircuitBreaker("b", failure_threshold=1)
    for error in (
        pr.RateLimitedError("inner limiter", retry_after=1.0),
        pr.BulkheadFullError("inner bulkhead"),
        pr.StoreUnavailableError("inner store down", store="redis:x:1"),
    ):
        await failing(breaker, mode, 2, error)
    assert breaker.state == "closed"
    await failing(breaker, mode, 1, http_error(429))  # the dependency's own 429 counts
    assert breaker.state == "open"


async def test_timeout_exceeded_counts(mode: str, store: StateStore) -> None:
    breaker = CircuitBreaker(f"b-{uuid.uuid4().hex}", store=store, failure_threshold=2)
    await failing(breaker, mode, 2, pr.TimeoutExceeded("too slow", seconds=1.0))
    assert breaker.state == "open"


async def test_custom_counts_predicate(mode: str) -> None:
    breaker = CircuitBreaker(
        "b", failure_threshold=1, counts=lambda e: isinstance(e, KeyError)
    )
    await failing(breaker, mode, 3, ConnectionResetError("not counted here"))
    assert breaker.state == "closed"
    await failing(breaker, mode, 1, KeyError("counted"))
    assert breaker.state == "open"


async def test_exceptions_propagate_unchanged(mode: str) -> None:
    breaker = CircuitBreaker("b")
    error = ConnectionResetError("the very same object")
    op = Op()
    op.error = error
    with pytest.raises(ConnectionResetError) as info:
        await through(breaker, mode, op)
    assert info.value is error


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit, GeneratorExit])
async def test_interrupts_never_count_and_propagate_untouched(
    mode: str, interrupt: type[BaseException], store: StateStore
) -> None:
    breaker = CircuitBreaker(f"b-{uuid.uuid4().hex}", store=store, failure_threshold=2)
    await failing(breaker, mode, 1, ConnectionResetError("one"))
    error = interrupt()
    op = Op()
    op.error = error
    for _ in range(5):
        with pytest.raises(interrupt) as info:
            await through(breaker, mode, op)
        assert info.value is error
    assert breaker.state == "closed"
    assert breaker.stats.consecutive_failures == 1


async def test_caller_cancellation_never_counts(store: StateStore) -> None:
    breaker = CircuitBreaker(f"b-{uuid.uuid4().hex}", store=store, failure_threshold=1)
    started = asyncio.Event()

    @breaker
    async def hangs() -> None:
        started.set()
        await asyncio.sleep(60)

    for _ in range(3):
        started.clear()
        task = asyncio.ensure_future(hangs())
        await asyncio.wait_for(started.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert breaker.state == "closed"
    assert breaker.stats.consecutive_failures == 0


async def test_context_manager_body_never_runs_while_open(
    mode: str, store: StateStore
) -> None:
    breaker = CircuitBreaker(f"b-{uuid.uuid4().hex}", store=store, failure_threshold=1)
    ran: list[str] = []

    async def block(error: BaseException | None) -> None:
        if mode == "sync":
            with breaker:
                ran.append("body")
                if error is not None:
                    raise error
        else:
            async with breaker:
                ran.append("body")
                if error is not None:
                    raise error

    await block(None)
    with pytest.raises(ConnectionResetError):
        await block(ConnectionResetError("x"))
    assert breaker.state == "open"
    with pytest.raises(CircuitOpenError):
        await block(None)
    assert ran == ["body", "body"]


async def test_call_and_acall() -> None:
    breaker = CircuitBreaker("b", failure_threshold=1)

    async def add(a: int, b: int) -> int:
        return a + b

    assert breaker.call(lambda a, b: a * b, 6, 7) == 42
    assert await breaker.acall(add, 2, b=3) == 5
    with pytest.raises(ZeroDivisionError):
        breaker.call(lambda: 1 / 0)
    assert breaker.state == "closed"  # a bug is permanent: not a downstream failure


def test_decorator_keeps_signature_and_coroutine_nature() -> None:
    breaker = CircuitBreaker("b")

    def tool(query: str, limit: int = 3) -> list[str]:
        """Search."""
        return [query] * limit

    async def atool(query: str) -> str:
        return query

    wrapped, awrapped = breaker(tool), breaker(atool)
    assert inspect.signature(wrapped) == inspect.signature(tool)
    assert wrapped.__doc__ == "Search."
    assert wrapped.__name__ == "tool"
    assert inspect.iscoroutinefunction(awrapped)
    assert not inspect.iscoroutinefunction(wrapped)
    assert wrapped("q", limit=2) == ["q", "q"]


async def test_failure_rate_rule_with_minimum_calls(
    mode: str, store: StateStore
) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        f"b-{uuid.uuid4().hex}",
        store=store,
        failure_threshold=None,
        failure_rate=0.5,
        window=10.0,
        minimum_calls=4,
        clock=clock,
    )
    ok = Op()
    await failing(breaker, mode, 1, ConnectionResetError("x"))
    await through(breaker, mode, ok)
    await failing(breaker, mode, 1, ConnectionResetError("x"))
    assert breaker.state == "closed"  # 2 of 3: below minimum_calls
    assert (breaker.stats.window_calls, breaker.stats.window_failures) == (3, 2)
    await through(breaker, mode, ok)  # 2 of 4 = 0.5
    assert breaker.state == "open"


async def test_failure_rate_window_slides(store: StateStore) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        f"b-{uuid.uuid4().hex}",
        store=store,
        failure_threshold=None,
        failure_rate=0.5,
        window=10.0,
        minimum_calls=2,
        clock=clock,
    )
    await failing(breaker, "sync", 1, ConnectionResetError("x"))
    clock.advance(10.0)  # the failure's bucket has left the window
    await through(breaker, "sync", Op())
    await through(breaker, "sync", Op())
    assert breaker.stats.window_failures == 0
    await failing(breaker, "sync", 1, ConnectionResetError("x"))
    assert breaker.state == "closed"  # 1 of 3
    await failing(breaker, "sync", 1, ConnectionResetError("x"))
    assert breaker.state == "open"  # 2 of 4


async def test_slow_calls_count_as_failures(mode: str, store: StateStore) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        f"b-{uuid.uuid4().hex}",
        store=store,
        failure_threshold=2,
        slow_call_duration=2.0,
        clock=clock,
    )

    def slow() -> str:
        clock.advance(2.5)
        return "late"

    for _ in range(2):
        if mode == "sync":
            assert breaker(slow)() == "late"
        else:

            async def aslow() -> str:
                return slow()

            assert await breaker(aslow)() == "late"
    assert breaker.state == "open"


async def test_growing_break_duration_is_capped(store: StateStore) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        f"b-{uuid.uuid4().hex}",
        store=store,
        failure_threshold=1,
        reset_timeout=10,
        reset_timeout_max=35,
        clock=clock,
    )
    await failing(breaker, "sync", 1, ConnectionResetError("x"))
    breaks = []
    for _ in range(4):
        breaks.append(breaker.stats.retry_after)
        clock.advance(breaks[-1] or 0)
        await failing(breaker, "sync", 1, ConnectionResetError("probe fails"))
    assert breaks == [10.0, 20.0, 35.0, 35.0]
    clock.advance(35)
    await through(breaker, "sync", Op())
    assert breaker.state == "closed"
    await failing(breaker, "sync", 1, ConnectionResetError("x"))
    assert breaker.stats.retry_after == 10.0  # a close resets the growth


def test_trip_reset_and_stats(store: StateStore) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(f"b-{uuid.uuid4().hex}", store=store, clock=clock)
    breaker.trip()
    assert breaker.state == "open"
    assert breaker.stats.retry_after == 30.0
    breaker.reset()
    assert breaker.state == "closed"
    assert breaker.stats == pr.CircuitBreakerStats(
        name=breaker.name,
        state="closed",
        consecutive_failures=0,
        window_calls=0,
        window_failures=0,
        opens=0,
        retry_after=None,
        probes_in_flight=0,
    )


def test_events_for_every_transition_and_rejection(store: StateStore) -> None:
    clock = FakeClock()
    name = f"b-{uuid.uuid4().hex}"
    breaker = CircuitBreaker(
        name, store=store, failure_threshold=1, reset_timeout=5, clock=clock
    )
    op = Op()
    op.error = ConnectionResetError("x")
    with capture_events() as events:
        with pytest.raises(ConnectionResetError):
            breaker.call(op)
        with pytest.raises(CircuitOpenError):
            breaker.call(op)
        clock.advance(5)
        op.error = None
        breaker.call(op)
        breaker.trip()
        breaker.reset()
    mine = [e for e in events if e.primitive == "circuit_breaker"]
    assert [e.action for e in mine] == [
        "opened",
        "rejected",
        "half_opened",
        "closed",
        "opened",
        "closed",
    ]
    assert {e.subject for e in mine} == {name}
    assert mine[0].fields["reason"] == "consecutive_failures"
    assert mine[0].level == "warning"
    assert mine[1].fields["retry_after"] == 5.0
    assert mine[3].fields["reason"] == "probes_succeeded"
    assert mine[4].fields["reason"] == "manual"


def test_switched_off_calls_straight_through() -> None:
    breaker = CircuitBreaker("b")
    breaker.trip()
    op = Op()
    with pr.set_active(False):
        assert breaker(op)() == "ok"
        with breaker:
            pass
    assert op.runs == 1
    with pytest.raises(CircuitOpenError):
        breaker(op)()


def test_new_instance_on_existing_state_never_resets_it(
    make_store: Callable[[], StateStore],
) -> None:
    name = f"b-{uuid.uuid4().hex}"
    first = CircuitBreaker(name, store=make_store(), failure_threshold=2)
    op = Op()
    op.error = ConnectionResetError("x")
    for _ in range(2):
        with pytest.raises(ConnectionResetError):
            first.call(op)
    second = CircuitBreaker(name, store=make_store(), failure_threshold=2)
    assert second.state == "open"
    with pytest.raises(CircuitOpenError):
        second.call(op)
    assert op.runs == 2


def test_private_memory_state_by_default() -> None:
    a, b = CircuitBreaker("same"), CircuitBreaker("same")
    a.trip()
    assert (a.state, b.state) == ("open", "closed")
    shared = MemoryStore()
    c, d = CircuitBreaker("same", store=shared), CircuitBreaker("same", store=shared)
    c.trip()
    assert d.state == "open"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"failure_threshold": 0},
        {"failure_threshold": None},
        {"reset_timeout": 0},
        {"reset_timeout": float("nan")},
        {"half_open_max_calls": 0},
        {"failure_rate": 0.0},
        {"failure_rate": 1.5},
        {"window": -1},
        {"minimum_calls": 0},
        {"reset_timeout_max": 1.0},
        {"slow_call_duration": 0},
    ],
)
def test_invalid_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="CircuitBreaker"):
        CircuitBreaker("b", **kwargs)
    with pytest.raises(ValueError, match="name"):
        CircuitBreaker("")


# -- half-open concurrency -----------------------------------------------------------


@pytest.mark.parametrize("probes", [1, 3])
async def test_concurrent_asyncio_probes_admit_exactly_the_permits(
    store: StateStore, probes: int
) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        f"b-{uuid.uuid4().hex}",
        store=store,
        half_open_max_calls=probes,
        reset_timeout=30,
        clock=clock,
    )
    breaker.trip()
    clock.advance(30)
    release = asyncio.Event()
    runs = 0

    @breaker
    async def probe() -> str:
        nonlocal runs
        runs += 1
        await asyncio.wait_for(release.wait(), 20)
        return "ok"

    tasks = [asyncio.ensure_future(probe()) for _ in range(10)]
    for _ in range(2000):  # until every rejection is in and the probes are waiting
        await asyncio.sleep(0.005)
        if sum(t.done() for t in tasks) == 10 - probes and runs == probes:
            break
    release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert runs == probes
    assert results.count("ok") == probes
    assert sum(isinstance(r, CircuitOpenError) for r in results) == 10 - probes
    assert breaker.state == "closed"


@pytest.mark.parametrize("probes", [1, 3])
def test_concurrent_thread_probes_admit_exactly_the_permits(
    store: StateStore, probes: int
) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        f"b-{uuid.uuid4().hex}",
        store=store,
        half_open_max_calls=probes,
        reset_timeout=30,
        clock=clock,
    )
    breaker.trip()
    clock.advance(30)
    release = threading.Event()
    start = threading.Barrier(10, timeout=20)
    lock = threading.Lock()
    runs = 0
    results: list[object] = []

    @breaker
    def probe() -> str:
        nonlocal runs
        with lock:
            runs += 1
        assert release.wait(20)
        return "ok"

    def worker() -> None:
        start.wait()
        try:
            result: object = probe()
        except CircuitOpenError as exc:
            result = exc
        with lock:
            results.append(result)

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for t in threads:
        t.start()
    give_up = time.monotonic() + 20
    while time.monotonic() < give_up:
        with lock:
            if len(results) == 10 - probes and runs == probes:
                break
        time.sleep(0.005)
    release.set()
    for t in threads:
        t.join(20)
    assert runs == probes
    assert results.count("ok") == probes
    assert sum(isinstance(r, CircuitOpenError) for r in results) == 10 - probes


async def test_hung_probe_loses_its_permit_after_reset_timeout(
    store: StateStore,
) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        f"b-{uuid.uuid4().hex}", store=store, reset_timeout=10, clock=clock
    )
    breaker.trip()
    clock.advance(10)
    hung = contextvars.copy_context()
    hung.run(breaker.__enter__)  # a probe that never comes back
    clock.advance(4)
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(Op())
    assert info.value.retry_after == pytest.approx(6.0)
    clock.advance(6)
    assert breaker.call(Op()) == "ok"  # the permit was re-armed
    assert breaker.state == "closed"
    hung.run(breaker.__exit__, ConnectionResetError, ConnectionResetError("late"), None)
    assert breaker.state == "closed"  # a late outcome from an old period is ignored


async def test_cancelled_probe_releases_its_permit(store: StateStore) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        f"b-{uuid.uuid4().hex}", store=store, reset_timeout=10, clock=clock
    )
    breaker.trip()
    clock.advance(10)
    started = asyncio.Event()

    @breaker
    async def probe(hang: bool) -> str:
        if hang:
            started.set()
            await asyncio.sleep(60)
        return "ok"

    task = asyncio.ensure_future(probe(True))
    await asyncio.wait_for(started.wait(), 10)
    with pytest.raises(CircuitOpenError):
        await probe(False)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.state == "half_open"
    assert await probe(False) == "ok"  # no time passed: the permit came back
    assert breaker.state == "closed"


def test_ctrl_c_in_a_probe_releases_its_permit(store: StateStore) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        f"b-{uuid.uuid4().hex}", store=store, reset_timeout=10, clock=clock
    )
    breaker.trip()
    clock.advance(10)
    op = Op()
    op.error = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        breaker.call(op)
    assert breaker.state == "half_open"
    op.error = None
    assert breaker.call(op) == "ok"
    assert breaker.state == "closed"


def test_lock_is_not_held_during_the_call() -> None:
    breaker = CircuitBreaker("b")
    inside = threading.Event()
    leave = threading.Event()

    @breaker
    def slow() -> None:
        inside.set()
        assert leave.wait(20)

    t = threading.Thread(target=slow)
    t.start()
    assert inside.wait(20)
    try:
        breaker.trip()  # would deadlock if the call held the state lock
        breaker.reset()
        assert breaker.call(lambda: 7) == 7
    finally:
        leave.set()
        t.join(20)


def test_rejections_retain_no_memory() -> None:
    import gc
    import tracemalloc

    breaker = CircuitBreaker("b")
    breaker.trip()
    wrapped = breaker(Op())

    def reject(n: int) -> None:
        for _ in range(n):
            with contextlib.suppress(CircuitOpenError):
                wrapped()

    reject(200)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        reject(5000)
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(
        stat.size_diff
        for stat in after.compare_to(before, "filename")
        if "paios_reliability" in stat.traceback[0].filename
    )
    assert grown < 4096


def test_each_rejection_is_a_fresh_error() -> None:
    breaker = CircuitBreaker("b")
    breaker.trip()
    errors = []
    for _ in range(2):
        try:
            breaker.call(Op())
        except CircuitOpenError as exc:
            errors.append(exc)
    assert errors[0] is not errors[1]
    assert str(errors[0]) == "circuit breaker 'b' is open"
    # As if built by the public constructor: same fields, pickles.
    import pickle

    clone = pickle.loads(pickle.dumps(errors[0]))
    assert (clone.breaker_name, clone.code, clone.retry_after) == (
        "b",
        "CIRCUIT_OPEN",
        errors[0].retry_after,
    )


# -- several real processes on one store -------------------------------------------

WORKER = """
import sys
from paios_reliability import CircuitBreaker, CircuitOpenError, RedisStore, SQLiteStore
kind, target, prefix, name = sys.argv[1:5]
store = SQLiteStore(target) if kind == "sqlite" else RedisStore(target, prefix=prefix)
breaker = CircuitBreaker(name, store=store, failure_threshold=5, reset_timeout=600)
ran = 0

def op(ok):
    global ran
    ran += 1
    if not ok:
        raise ConnectionResetError("downstream is down")
    return "ok"

print("ready", flush=True)
for line in sys.stdin:
    command = line.strip()
    try:
        if command == "fail":
            out = breaker.call(op, False)
        elif command == "call":
            out = breaker.call(op, True)
        else:
            out = breaker.state
    except CircuitOpenError:
        out = "rejected"
    except ConnectionResetError:
        out = "failed"
    print(out, ran, flush=True)
"""


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_four_processes_share_one_breaker(
    kind: str, tmp_path: Any, spawn: Callable[..., Any], request: pytest.FixtureRequest
) -> None:
    target = (
        str(tmp_path / "state.db")
        if kind == "sqlite"
        else request.getfixturevalue("redis_url")
    )
    prefix, name = f"mp-{uuid.uuid4().hex}", "downstream"
    workers = [spawn(WORKER, kind, target, prefix, name) for _ in range(4)]
    for w in workers:
        assert w.read() == "ready"
    for w in workers:  # four failures, one per process
        assert w.ask("fail") == "failed 1"
    assert [w.ask("state") for w in workers] == ["closed 1"] * 4
    assert workers[2].ask("fail") == "failed 2"  # the fifth failure in total
    assert [w.ask("state") for w in workers] == ["open 1", "open 1", "open 2", "open 1"]
    assert [w.ask("call") for w in workers] == [
        "rejected 1",
        "rejected 1",
        "rejected 2",
        "rejected 1",
    ]
    late = spawn(WORKER, kind, target, prefix, name)  # a new process never resets it
    assert late.read() == "ready"
    assert late.ask("call") == "rejected 0"


# -- Hypothesis: the breaker against a small reference model ---------------------------


class BreakerModel:
    """The specification, written plainly: every call kept in a list, no counters."""

    def __init__(
        self,
        *,
        threshold: int | None,
        reset: int,
        reset_max: int | None,
        half_max: int,
        rate: float | None,
        window: int,
        min_calls: int,
    ) -> None:
        self.threshold, self.reset, self.reset_max = threshold, reset, reset_max
        self.half_max, self.rate, self.min_calls = half_max, rate, min_calls
        self.bucket = max(1, window // 10)
        self.phase = "closed"
        self.period = 0
        self.failures = 0
        self.calls: list[tuple[int, bool]] = []
        self.open_until = 0
        self.opens = 0
        self.probes: dict[int, int] = {}
        self.successes = 0
        self.permits = 0

    def _look(self, now: int) -> None:
        if self.phase == "open" and now >= self.open_until:
            self.phase, self.period = "half_open", self.period + 1
            self.probes, self.successes = {}, 0

    def state(self, now: int) -> str:
        if self.phase == "open" and now >= self.open_until:
            return "half_open"
        return self.phase

    def _open(self, now: int) -> None:
        self.opens = 1 if self.phase == "closed" else self.opens + 1
        duration = self.reset
        if self.reset_max is not None:
            duration = min(self.reset * 2 ** (self.opens - 1), self.reset_max)
        self.phase, self.period = "open", self.period + 1
        self.open_until = now + duration
        self.failures, self.calls, self.probes, self.successes = 0, [], {}, 0

    def _close(self) -> None:
        self.phase, self.period = "closed", self.period + 1
        self.failures, self.calls, self.probes, self.successes, self.opens = (
            0,
            [],
            {},
            0,
            0,
        )

    def admit(self, now: int) -> tuple[bool, Any]:
        self._look(now)
        if self.phase == "closed":
            return True, (self.period, None)
        if self.phase == "open":
            return False, self.open_until - now
        self.probes = {p: t for p, t in self.probes.items() if now - t < self.reset}
        if len(self.probes) < self.half_max:
            self.permits += 1
            self.probes[self.permits] = now
            return True, (self.period, self.permits)
        return False, min(self.probes.values()) + self.reset - now

    def finish(self, now: int, token: Any, outcome: str) -> None:
        period, permit = token
        if period != self.period:
            return
        if self.phase == "closed":
            if outcome == "ignored":
                return
            failed = outcome == "failure"
            self.failures = self.failures + 1 if failed else 0
            if self.threshold is not None and self.failures >= self.threshold:
                self._open(now)
                return
            if self.rate is not None:
                self.calls.append((now, failed))
                current = now // self.bucket
                self.calls = [
                    (t, f) for t, f in self.calls if t // self.bucket > current - 10
                ]
                failures = sum(f for _, f in self.calls)
                if (
                    len(self.calls) >= self.min_calls
                    and failures / len(self.calls) >= self.rate
                ):
                    self._open(now)
        elif self.phase == "half_open" and permit in self.probes:
            del self.probes[permit]
            if outcome == "failure":
                self._open(now)
            elif outcome == "success":
                self.successes += 1
                if self.successes >= self.half_max:
                    self._close()

    def trip(self, now: int) -> None:
        self._open(now)

    def reset_(self) -> None:
        self._close()


OUTCOMES = {
    "success": None,
    "failure": ConnectionResetError("down"),
    "ignored": ValueError("bad request"),
    "interrupt": KeyboardInterrupt(),
}


class BreakerMachine(RuleBasedStateMachine):
    """Drives a real CircuitBreaker through its public ``with`` form, in many
    interleaved contexts, and checks every answer against the model."""

    calls = Bundle("calls")

    def __init__(self, store: StateStore) -> None:
        super().__init__()
        self.store = store
        self.clock = FakeClock(start=1000.0)

    @initialize(
        threshold=st.sampled_from([None, 1, 2, 3]),
        reset=st.integers(1, 5),
        growing=st.booleans(),
        half_max=st.integers(1, 3),
        rate=st.sampled_from([None, 0.5, 0.34, 1.0]),
        min_calls=st.integers(1, 5),
        window=st.sampled_from([2, 5, 10]),
    )
    def setup(
        self,
        threshold: int | None,
        reset: int,
        growing: bool,
        half_max: int,
        rate: float | None,
        min_calls: int,
        window: int,
    ) -> None:
        if threshold is None and rate is None:
            threshold = 2
        reset_max = reset * 5 if growing else None
        self.breaker = CircuitBreaker(
            f"hyp-{uuid.uuid4().hex}",
            store=self.store,
            clock=self.clock,
            failure_threshold=threshold,
            reset_timeout=reset,
            reset_timeout_max=reset_max,
            half_open_max_calls=half_max,
            failure_rate=rate,
            window=float(window),
            minimum_calls=min_calls,
        )
        ns = 1_000_000_000
        self.model = BreakerModel(
            threshold=threshold,
            reset=reset * ns,
            reset_max=None if reset_max is None else reset_max * ns,
            half_max=half_max,
            rate=rate,
            window=window * ns,
            min_calls=min_calls,
        )

    def now(self) -> int:
        return now_ns(self.clock, self.store.shared)

    @rule(ms=st.integers(0, 4000))
    def advance(self, ms: int) -> None:
        self.clock.advance(ms / 1000)

    @rule()
    def advance_to_the_end_of_the_break(self) -> None:
        left = self.model.open_until - self.now()
        if left > 0:
            self.clock.advance(left / 1e9)

    @rule(target=calls)
    def start(self) -> Any:
        ctx = contextvars.copy_context()
        expected_ok, detail = self.model.admit(self.now())
        rejected: CircuitOpenError | None = None
        try:
            ctx.run(self.breaker.__enter__)
        except CircuitOpenError as exc:
            rejected = exc
        assert (rejected is None) == expected_ok, f"model admits: {expected_ok}"
        if rejected is not None:
            assert rejected.retry_after == pytest.approx(detail / 1e9, abs=1e-6)
            return None
        return (ctx, detail)

    @rule(call=consumes(calls), outcome=st.sampled_from(sorted(OUTCOMES)))
    def finish(self, call: Any, outcome: str) -> None:
        if call is None:
            return
        ctx, token = call
        error = OUTCOMES[outcome]
        if error is None:
            ctx.run(self.breaker.__exit__, None, None, None)
        else:
            ctx.run(self.breaker.__exit__, type(error), error, None)
        self.model.finish(
            self.now(), token, "ignored" if outcome == "interrupt" else outcome
        )

    # Whole calls, the common case, so closed stretches get long enough to
    # exercise the trip rules (start/finish above interleave calls).
    @rule(outcome=st.sampled_from(["success", "failure"]))
    def call(self, outcome: str) -> None:
        self.finish(self.start(), outcome)

    @rule(outcomes=st.lists(st.sampled_from(sorted(OUTCOMES)), min_size=1, max_size=4))
    def calls_in_a_row(self, outcomes: list[str]) -> None:
        for outcome in outcomes:
            self.finish(self.start(), outcome)

    @rule()
    def advance_one_reset_timeout(self) -> None:
        self.clock.advance(self.breaker.reset_timeout)

    @rule()
    def trip(self) -> None:
        self.breaker.trip()
        self.model.trip(self.now())

    @rule()
    def reset(self) -> None:
        self.breaker.reset()
        self.model.reset_()

    @invariant()
    def same_state(self) -> None:
        if hasattr(self, "breaker"):
            assert self.breaker.state == self.model.state(self.now())
            now = self.now()
            stats = self.breaker.stats
            model = self.model
            if model.phase == "closed":
                assert stats.consecutive_failures == model.failures
                if model.rate is not None:
                    current = now // model.bucket
                    window = [
                        f for t, f in model.calls if t // model.bucket > current - 10
                    ]
                    assert (stats.window_calls, stats.window_failures) == (
                        len(window),
                        sum(window),
                    )
            if model.state(now) == "half_open" and model.phase == "half_open":
                alive = [t for t in model.probes.values() if now - t < model.reset]
                assert stats.probes_in_flight == len(alive)


@pytest.mark.parametrize(
    ("kind", "examples"), [("memory", 150), ("sqlite", 20), ("redis", 25)]
)
def test_breaker_matches_the_reference_model(
    kind: str, examples: int, tmp_path: Any, request: pytest.FixtureRequest
) -> None:
    run_model(
        BreakerMachine,
        kind,
        examples=examples,
        steps=40,
        tmp_path=tmp_path,
        request=request,
    )


async def test_cancellation_racing_the_store_never_keeps_a_permit(
    store: StateStore,
) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        f"b-{uuid.uuid4().hex}", store=store, reset_timeout=10, clock=clock
    )
    breaker.trip()
    clock.advance(10)

    @breaker
    async def probe() -> str:
        await asyncio.sleep(0)
        return "ok"

    for delay in (0, 0, 1, 2, 3) * 4:  # cancel at different points of admission
        task = asyncio.ensure_future(probe())
        for _ in range(delay):
            await asyncio.sleep(0)
        task.cancel()
        (result,) = await asyncio.gather(task, return_exceptions=True)
        if result == "ok":
            break  # it got through before the cancel: closed, nothing to check
        assert isinstance(result, asyncio.CancelledError)
        assert breaker.stats.probes_in_flight == 0
    assert await probe() == "ok"
    assert breaker.state == "closed"


async def test_inside_resilient_with_limiter_and_bulkhead(mode: str) -> None:
    breaker = CircuitBreaker("tool-backend", failure_threshold=2)
    limiter = pr.RateLimiter("tool-backend", rate=100, per=1)
    bulkhead = pr.Bulkhead("tool-backend", max_concurrent=2)
    policy = pr.resilient(
        name="tool", breaker=breaker, limiter=limiter, bulkhead=bulkhead
    )
    op = Op()
    op.error = ConnectionResetError("down")

    if mode == "sync":

        def tool(query: str) -> str:
            return f"{query}:{op()}"

    else:

        async def tool(query: str) -> str:
            return f"{query}:{op()}"

    wrapped = policy(tool)
    assert inspect.signature(wrapped) == inspect.signature(tool)
    assert inspect.iscoroutinefunction(wrapped) == (mode == "async")
    for _ in range(2):
        with pytest.raises(ConnectionResetError):
            await invoke(wrapped, "q")
    with pytest.raises(CircuitOpenError):
        await invoke(wrapped, "q")
    assert op.runs == 2
    breaker.reset()
    op.error = None
    assert await invoke(wrapped, "q") == "q:ok"
    assert bulkhead.stats.in_use == 0


async def invoke(fn: Callable[..., Any], *args: Any) -> Any:
    result = fn(*args)
    return await result if inspect.isawaitable(result) else result
