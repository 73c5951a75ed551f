"""deadline(), remaining() and timeout(): budgets, cancellation, abandoned workers."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import pickle
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import paios_reliability as pr
from paios_reliability.testing import FakeClock, capture_events

MODES = ["sync", "async"]


async def invoke(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    result = fn(*args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


def sleeper(mode: str, seconds: float, value: object = "done") -> Callable[[], Any]:
    """A function that takes ``seconds`` of real time, sync or async."""
    if mode == "sync":

        def work() -> object:
            time.sleep(seconds)
            return value

        return work

    async def awork() -> object:
        await asyncio.sleep(seconds)
        return value

    return awork


# -- deadline and remaining ---------------------------------------------------------------


def test_remaining_is_none_without_a_deadline() -> None:
    assert pr.remaining() is None


def test_nested_deadlines_take_the_tighter(fake_clock: FakeClock) -> None:
    with pr.deadline(5.0) as outer:
        assert pr.remaining() == 5.0
        with pr.deadline(1.0):
            assert pr.remaining() == 1.0
            with pr.deadline(10.0) as loose:
                assert pr.remaining() == 1.0
                assert loose.expires_at == 1.0
            fake_clock.advance(0.25)
            assert pr.remaining() == 0.75
        assert pr.remaining() == 4.75
        assert outer.remaining() == 4.75
        fake_clock.advance(10)
        assert pr.remaining() == 0.0
        assert outer.expired
    assert pr.remaining() is None


def test_none_and_inf_add_no_budget_of_their_own(fake_clock: FakeClock) -> None:
    with pr.deadline(None):
        assert pr.remaining() is None
    with pr.deadline(float("inf")):
        assert pr.remaining() is None
    with pr.deadline(3.0), pr.deadline(None):
        assert pr.remaining() == 3.0


@pytest.mark.parametrize("bad", [-1.0, float("nan")])
def test_invalid_budgets_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="deadline"):
        pr.deadline(bad)
    with pytest.raises(ValueError, match="timeout"):
        pr.timeout(bad)
    with pytest.raises(ValueError, match="timeout"):
        pr.timeout(0)
    with pytest.raises(TypeError, match="deadline"):
        pr.deadline("1")  # type: ignore[arg-type]


def test_a_deadline_object_cannot_be_entered_twice_at_once() -> None:
    block = pr.deadline(1.0)
    with block, pytest.raises(RuntimeError, match="already entered"), block:
        pass
    with block:  # but it can be reused after leaving
        assert pr.remaining() is not None


async def test_concurrent_tasks_have_their_own_deadlines(fake_clock: FakeClock) -> None:
    seen: dict[int, float | None] = {}

    async def task(i: int) -> None:
        with pr.deadline(float(i)):
            await asyncio.sleep(0)
            seen[i] = pr.remaining()

    await asyncio.gather(*(task(i) for i in range(1, 21)))
    assert seen == {i: float(i) for i in range(1, 21)}
    assert pr.remaining() is None


def test_threads_have_their_own_deadlines(fake_clock: FakeClock) -> None:
    seen: dict[int, float | None] = {}
    barrier = threading.Barrier(8)

    def work(i: int) -> None:
        with pr.deadline(float(i)):
            barrier.wait(5)
            seen[i] = pr.remaining()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert seen == {i: float(i) for i in range(1, 9)}


@settings(max_examples=100, deadline=None)
@given(
    budgets=st.lists(
        st.one_of(st.none(), st.floats(0, 1e6), st.just(float("inf"))),
        min_size=1,
        max_size=6,
    )
)
def test_remaining_is_the_tightest_enclosing_budget(
    budgets: list[float | None],
) -> None:
    clock = FakeClock(start=100.0)
    with clock.install():

        def nest(level: int) -> None:
            if level == len(budgets):
                finite = [b for b in budgets if b is not None and b != float("inf")]
                left = pr.remaining()
                if finite:
                    assert left == pytest.approx(min(finite), abs=1e-6)
                else:
                    assert left is None
                return
            with pr.deadline(budgets[level]):
                nest(level + 1)

        nest(0)
        assert pr.remaining() is None


# -- async deadline: real cancellation ------------------------------------------------------


async def test_async_deadline_cancels_and_raises_timeout_exceeded() -> None:
    with capture_events() as events, pytest.raises(pr.TimeoutExceeded) as info:
        async with pr.deadline(0.02):
            await asyncio.sleep(30)
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value.__cause__, asyncio.CancelledError)
    assert info.value.seconds == 0.02
    assert events.names() == ["paios_reliability.timeout.exceeded"]
    assert pr.remaining() is None


async def test_async_deadline_already_spent_cancels_at_the_first_await(
    fake_clock: FakeClock,
) -> None:
    with pr.deadline(1.0):
        fake_clock.advance(2.0)
        with pytest.raises(pr.TimeoutExceeded, match="enclosing deadline"):
            async with pr.deadline(10.0):
                await asyncio.sleep(30)


async def test_outer_cancellation_passes_through_untouched() -> None:
    entered = asyncio.Event()
    converted = []

    async def body() -> None:
        try:
            async with pr.deadline(30.0):
                entered.set()
                await asyncio.sleep(30)
        except pr.TimeoutExceeded:
            converted.append(True)
            raise

    task = asyncio.ensure_future(body())
    await asyncio.wait_for(entered.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert converted == []
    assert task.cancelled()


async def test_outer_deadline_fires_through_a_looser_inner_one() -> None:
    inner_saw: list[type[BaseException]] = []
    outer = pr.deadline(0.02)

    async def nested() -> None:
        async with outer:
            try:
                async with pr.deadline(30.0):
                    await asyncio.sleep(30)
            except BaseException as exc:
                inner_saw.append(type(exc))
                raise

    with pytest.raises(pr.TimeoutExceeded) as info:
        await nested()
    # The inner block inherits the tighter outer budget but arms no timer of
    # its own: the cancellation passes through it and the outer block reports.
    assert info.value.seconds == outer.seconds
    assert inner_saw == [asyncio.CancelledError]
    if sys.version_info >= (3, 11):
        task = asyncio.current_task()
        assert task is not None
        assert task.cancelling() == 0


async def test_a_child_task_gets_its_own_timer_under_an_inherited_deadline() -> None:
    async def child() -> None:
        async with pr.deadline(30.0):  # inherits the parent's 0.05 s budget
            await asyncio.sleep(30)

    async with pr.deadline(5.0):
        async with pr.deadline(0.05):
            task = asyncio.ensure_future(child())
        with pytest.raises(pr.TimeoutExceeded):
            await asyncio.wait_for(task, 5)


async def test_inner_deadline_fires_and_the_outer_block_continues() -> None:
    async with pr.deadline(30.0):
        with pytest.raises(pr.TimeoutExceeded):
            async with pr.deadline(0.02):
                await asyncio.sleep(30)
        await asyncio.sleep(0)  # still running: the outer block was not cancelled
        assert pr.remaining() is not None


# -- the timeout decorator --------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_timeout_returns_results_in_time(mode: str) -> None:
    fn = pr.timeout(5.0)(sleeper(mode, 0.0, value=7))
    assert await invoke(fn) == 7


@pytest.mark.parametrize("mode", MODES)
async def test_timeout_raises_timeout_exceeded_when_work_overruns(mode: str) -> None:
    fn = pr.timeout(0.05)(sleeper(mode, 2.0))
    started = time.monotonic()
    with capture_events() as events, pytest.raises(pr.TimeoutExceeded) as info:
        await invoke(fn)
    # Correctness bound (not a speed goal): we did not wait for the 2 s of work.
    assert time.monotonic() - started < 1.5
    assert isinstance(info.value, TimeoutError)
    assert "work" in str(info.value)
    action = "abandoned" if mode == "sync" else "exceeded"
    assert [e.action for e in events] == [action]
    assert events[0].subject is not None
    assert events[0].subject.endswith("work")


@pytest.mark.parametrize("mode", MODES)
async def test_timeout_lets_errors_through_unchanged(mode: str) -> None:
    error = KeyError("k")

    def failing() -> None:
        raise error

    async def afailing() -> None:
        raise error

    fn = pr.timeout(5.0)(failing if mode == "sync" else afailing)
    with pytest.raises(KeyError) as info:
        await invoke(fn)
    assert info.value is error


@pytest.mark.parametrize("mode", MODES)
async def test_timeout_uses_the_tighter_enclosing_deadline(mode: str) -> None:
    fn = pr.timeout(30.0)(sleeper(mode, 2.0))
    started = time.monotonic()
    with pr.deadline(0.05), pytest.raises(pr.TimeoutExceeded):
        await invoke(fn)
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize("mode", MODES)
async def test_the_wrapped_call_sees_the_budget_and_the_context(mode: str) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    seen: list[object] = []

    def probe() -> None:
        seen.extend(
            [pr.remaining() is not None, var.get(), pr.current_trace().get("run")]
        )

    async def aprobe() -> None:
        probe()

    fn = pr.timeout(5.0)(probe if mode == "sync" else aprobe)
    var.set("caller")
    with pr.trace(run="r-1"):
        await invoke(fn)
    assert seen == [True, "caller", "r-1"]


def test_sync_timeout_runs_in_a_worker_thread_and_abandons_it() -> None:
    release = threading.Event()
    finished = threading.Event()
    threads: list[str] = []

    @pr.timeout(0.05)
    def stuck() -> None:
        threads.append(threading.current_thread().name)
        release.wait(10)
        finished.set()

    with pytest.raises(pr.TimeoutExceeded, match="abandoned"):
        stuck()
    assert not finished.is_set()  # still running in the background
    release.set()
    assert finished.wait(10)
    assert threads[0].startswith("paios-timeout:")


@pytest.mark.parametrize("mode", MODES)
async def test_switched_off_timeout_calls_straight_through(mode: str) -> None:
    names: list[str] = []

    def probe() -> str:
        names.append(threading.current_thread().name)
        return "ok"

    async def aprobe() -> str:
        return probe()

    fn = pr.timeout(0.01)(probe if mode == "sync" else aprobe)
    with pr.set_active(False):
        assert await invoke(fn) == "ok"
    assert names == [threading.current_thread().name]


def test_timeout_keeps_signature_docstring_and_coroutine_nature() -> None:
    def plain(a: int, b: str = "x") -> str:
        """Plain."""
        return b * a

    async def coro(a: int, b: str = "x") -> str:
        """Coro."""
        return b * a

    for fn in (plain, coro):
        wrapped = pr.timeout(1.0)(fn)
        assert inspect.signature(wrapped) == inspect.signature(fn)
        assert wrapped.__doc__ == fn.__doc__
        assert inspect.iscoroutinefunction(wrapped) is inspect.iscoroutinefunction(fn)


async def test_timeout_of_a_partial_coroutine_function_stays_async() -> None:
    async def add(a: int, b: int) -> int:
        return a + b

    wrapped = pr.timeout(1.0)(functools.partial(add, 1))
    assert inspect.iscoroutinefunction(wrapped)
    assert await wrapped(2) == 3


# -- finding 14: a spent budget never starts the work ------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_finding_14_spent_budget_never_starts_the_work(
    mode: str, fake_clock: FakeClock
) -> None:
    side_effects: list[str] = []

    def write_row() -> str:
        side_effects.append("row written")
        return "ok"

    async def awrite_row() -> str:
        side_effects.append("row written")
        await asyncio.sleep(0)
        return "ok"

    fn = pr.timeout(5.0)(write_row if mode == "sync" else awrite_row)
    with pr.deadline(1.0):
        fake_clock.advance(2.0)
        with pytest.raises(pr.TimeoutExceeded, match="not started") as info:
            await invoke(fn)
    assert side_effects == []
    assert info.value.context["started"] is False
    assert info.value.worker is None


# -- the sync worker pool: reuse, accounting, bound -----------------------------------


def test_sync_timeouts_reuse_their_worker_threads() -> None:
    seen: list[threading.Thread] = []

    @pr.timeout(5.0)
    def where() -> None:
        seen.append(threading.current_thread())

    for _ in range(50):
        where()
    # One call at a time: a worker goes back idle and takes the next call.
    # (Starting a thread per call gave 50 distinct threads.)
    assert len(seen) == 50
    assert len({id(t) for t in seen}) <= 2
    assert all(t is not threading.current_thread() for t in seen)


def _hung(release: threading.Event, started: list[str]) -> Callable[[], str]:
    @pr.timeout(0.05)
    def hung() -> str:
        started.append("started")
        release.wait(30)
        return "late"

    return hung


def test_abandoned_worker_travels_on_the_error_and_is_accounted_for() -> None:
    from paios_reliability._policies import workers as _workers

    release = threading.Event()
    started: list[str] = []
    finished = threading.Event()
    metrics = pr.MetricsRegistry()
    hung = _hung(release, started)
    before = _workers.abandoned_count()
    with (
        capture_events() as events,
        pr.set_metrics(metrics),
        pytest.raises(pr.TimeoutExceeded, match="abandoned worker") as info,
    ):
        hung()
    worker = info.value.worker
    assert worker is not None
    assert not worker.done()
    assert not worker.wait(0.01)
    assert _workers.abandoned_count() == before + 1
    worker.add_done_callback(finished.set)
    with capture_events() as later, pr.set_metrics(metrics):
        release.set()
        assert worker.wait(10)
        assert finished.wait(10)
    assert worker.done()
    assert _workers.abandoned_count() == before
    assert [e.action for e in events] == ["abandoned"]
    assert events[0].fields["running"] == before + 1
    assert [e.action for e in later] == ["abandoned_finished"]
    assert metrics.value("paios_reliability_timeout_abandoned_workers") == before
    # A late callback runs at once; the handle pickles as a finished one.
    late: list[bool] = []
    worker.add_done_callback(lambda: late.append(True))
    assert late == [True]
    clone = pickle.loads(pickle.dumps(info.value))
    assert isinstance(clone, pr.TimeoutExceeded)
    assert clone.worker.done()


def test_a_done_callback_runs_when_a_job_ends_even_if_it_was_never_abandoned() -> None:
    # Worker.add_done_callback promised "when it ends"; only abandoned jobs
    # ran their callbacks.
    from paios_reliability._policies import workers as _workers

    release = threading.Event()
    ended: list[str] = []
    job = _workers.Worker("job", release.wait, (10,), {}, contextvars.copy_context())
    job.add_done_callback(lambda: ended.append("callback"))
    _workers._POOL.start(job)
    assert not job.done()
    release.set()
    assert job.wait(10)
    deadline = time.monotonic() + 10
    while not ended and time.monotonic() < deadline:
        time.sleep(0.001)
    assert ended == ["callback"]
    assert job.value is True


def test_abandoned_workers_are_bounded_and_refused_beyond_the_bound() -> None:
    from paios_reliability._policies import workers as _workers

    release = threading.Event()
    started: list[str] = []
    hung = _hung(release, started)
    base = _workers.abandoned_count()
    with _workers.set_max_abandoned(base + 2):
        errors = []
        for _ in range(2):
            with pytest.raises(pr.TimeoutExceeded) as info:
                hung()
            errors.append(info.value)
        with capture_events() as events, pytest.raises(pr.BulkheadFullError) as full:
            hung()
        assert "was not started" in str(full.value)
        assert len(started) == 2  # the refused call never ran
        assert [e.action for e in events] == ["refused"]
        release.set()
        for error in errors:
            assert error.worker.wait(10)
        assert _workers.abandoned_count() == base
        quick = pr.timeout(5.0)(lambda: "fine")
        assert quick() == "fine"
    with pytest.raises(ValueError, match="set_max_abandoned"):
        _workers.set_max_abandoned(0)


# -- any event loop: trio through anyio, a clear error elsewhere -------------------------


def test_trio_deadline_cancels_and_raises_timeout_exceeded() -> None:
    import trio

    outcome: list[object] = []

    async def sleep_past(seconds: float) -> None:
        async with pr.deadline(seconds):
            outcome.append(pr.remaining() is not None)
            await trio.sleep(30)

    async def main() -> None:
        with pytest.raises(pr.TimeoutExceeded) as info:
            await sleep_past(0.02)
        outcome.append(info.value.seconds)
        # An inner deadline that fires leaves the outer block running.
        async with pr.deadline(30.0):
            with pytest.raises(pr.TimeoutExceeded):
                async with pr.deadline(0.01):
                    await trio.sleep(30)
            await trio.sleep(0)
            outcome.append(pr.remaining() is not None)

    trio.run(main)
    assert outcome == [True, 0.02, True]


def test_trio_timeout_decorator_and_outer_cancellation() -> None:
    import trio

    @pr.timeout(0.02)
    async def slow() -> str:
        await trio.sleep(30)
        return "late"

    @pr.timeout(5.0)
    async def fast() -> str:
        await trio.sleep(0)
        return "fast"

    converted: list[bool] = []

    async def main() -> None:
        assert await fast() == "fast"
        with pytest.raises(pr.TimeoutExceeded):
            await slow()
        # A cancellation from outside passes through untouched.
        with trio.move_on_after(0.02) as scope:
            try:
                async with pr.deadline(30.0):
                    await trio.sleep(30)
            except pr.TimeoutExceeded:
                converted.append(True)
        assert scope.cancelled_caught

    trio.run(main)
    assert converted == []


def test_an_unsupported_loop_gets_a_clear_error_on_the_first_call() -> None:
    @pr.timeout(1.0)
    async def work() -> str:
        return "never"

    coro = work()
    # Driven by hand, as an unknown event loop would: no asyncio, no trio.
    with pytest.raises(pr.UnsupportedEventLoopError, match="event loop") as info:
        coro.send(None)
    assert isinstance(info.value, RuntimeError)
    assert info.value.code == "UNSUPPORTED_EVENT_LOOP"
    assert pr.CATALOG[info.value.code].kind == "permanent"
