"""retry() and retry_context(): policy, bounds, events, replay, sync and async."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import math
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import paios_reliability as pr
from paios_reliability._policies import retry as _retry
from paios_reliability.testing import CapturedEvents, FakeClock, capture_events

MODES = ["sync", "async"]


def decorate(mode: str, policy: Callable[[Any], Any], body: Callable[..., Any]) -> Any:
    """Apply ``policy`` to ``body`` itself (sync) or to an async twin of it."""
    if mode == "sync":
        return policy(body)

    @functools.wraps(body)
    async def abody(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0)
        return body(*args, **kwargs)

    return policy(abody)


async def invoke(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    result = fn(*args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


class HTTPError(Exception):
    """Duck-typed HTTP error, as httpx/requests raise it: ``.response.status_code``."""

    def __init__(self, status: int, retry_after: str | None = None) -> None:
        super().__init__(f"HTTP {status}")
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        self.response = type(
            "Response", (), {"status_code": status, "headers": headers}
        )()


class Script:
    """A callable that raises the given exceptions in turn, then returns ``value``."""

    def __init__(self, *failures: BaseException, value: object = "ok") -> None:
        self.failures = list(failures)
        self.value = value
        self.calls = 0
        self.raised: list[BaseException] = []

    def __call__(self, *args: Any, **kwargs: Any) -> object:
        self.calls += 1
        if self.failures:
            exc = self.failures.pop(0)
            self.raised.append(exc)
            raise exc
        return self.value


@pytest.fixture
def clock() -> Any:
    fake = FakeClock()
    with fake.install():
        yield fake


# -- the basic contract ------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_transient_failures_are_retried_until_success(
    mode: str, clock: FakeClock
) -> None:
    script = Script(ConnectionResetError("a"), TimeoutError("b"), value=42)
    fn = decorate(mode, pr.retry(attempts=5, seed=7), script)
    with capture_events() as events:
        assert await invoke(fn) == 42
    assert script.calls == 3
    assert len(clock.sleeps) == 2
    assert events.names() == [
        "paios_reliability.retry.attempt_failed",
        "paios_reliability.retry.scheduled",
        "paios_reliability.retry.attempt_failed",
        "paios_reliability.retry.scheduled",
        "paios_reliability.retry.succeeded",
    ]
    assert [e.fields["attempt"] for e in events.of("retry.attempt_failed")] == [1, 2]
    assert [e.fields["attempt"] for e in events.of("retry.scheduled")] == [2, 3]
    assert events.of("retry.succeeded")[0].fields["attempts"] == 3
    assert [e.fields["wait"] for e in events.of("retry.scheduled")] == [
        round(s, 6) for s in clock.sleeps
    ]


@pytest.mark.parametrize("mode", MODES)
async def test_first_attempt_success_emits_nothing_and_never_sleeps(
    mode: str, clock: FakeClock
) -> None:
    fn = decorate(mode, pr.retry(), Script(value="fast"))
    with capture_events() as events:
        assert await invoke(fn) == "fast"
    assert list(events) == []
    assert clock.sleeps == []


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "error",
    [
        HTTPError(400),
        HTTPError(401),
        HTTPError(403),
        HTTPError(404),
        HTTPError(422),
        ValueError("validation"),
        KeyError("bug"),
    ],
    ids=repr,
)
async def test_permanent_failures_fail_fast(
    mode: str, error: Exception, clock: FakeClock
) -> None:
    script = Script(error)
    fn = decorate(mode, pr.retry(), script)
    with capture_events() as events, pytest.raises(type(error)) as info:
        await invoke(fn)
    assert info.value is error
    assert script.calls == 1
    assert clock.sleeps == []
    (gave_up,) = events.of("retry.gave_up")
    assert gave_up.fields["reason"] == "not_retryable"
    assert gave_up.fields["attempts"] == 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("status", [429, 502, 503, 504])
async def test_transient_http_statuses_retry(
    mode: str, status: int, clock: FakeClock
) -> None:
    script = Script(HTTPError(status), value="ok")
    fn = decorate(mode, pr.retry(), script)
    assert await invoke(fn) == "ok"
    assert script.calls == 2


@pytest.mark.parametrize("mode", MODES)
async def test_gives_up_with_the_last_original_exception_unchanged(
    mode: str, clock: FakeClock
) -> None:
    errors = [ConnectionResetError(f"failure {i}") for i in range(3)]
    script = Script(*errors)
    fn = decorate(mode, pr.retry(attempts=3, seed=1), script)
    with capture_events() as events, pytest.raises(ConnectionResetError) as info:
        await invoke(fn)
    assert info.value is errors[-1]
    assert type(info.value) is ConnectionResetError
    assert info.value.args == ("failure 2",)
    assert info.value.__cause__ is None
    assert info.value.__context__ is None
    notes = info.value.__notes__
    assert len(notes) == 1
    assert "gave up on" in notes[0]
    assert "after 3 attempts" in notes[0]
    assert "attempt 1: ConnectionResetError: failure 0 -> retry in" in notes[0]
    assert (
        "attempt 3: ConnectionResetError: failure 2 -> attempts exhausted" in notes[0]
    )
    (gave_up,) = events.of("retry.gave_up")
    assert gave_up.fields["reason"] == "attempts_exhausted"
    assert gave_up.exc is errors[-1]
    assert script.calls == 3


@pytest.mark.parametrize("mode", MODES)
async def test_keyboard_interrupt_propagates_on_the_first_attempt(
    mode: str, clock: FakeClock
) -> None:
    seen: list[BaseException] = []

    def always(exc: BaseException) -> bool:
        seen.append(exc)
        return True

    script = Script(KeyboardInterrupt())
    fn = decorate(mode, pr.retry(on=always), script)
    with pytest.raises(KeyboardInterrupt):
        await invoke(fn)
    assert script.calls == 1
    assert seen == []


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "stop", [KeyboardInterrupt, SystemExit, asyncio.CancelledError]
)
async def test_stop_requests_propagate_in_a_later_attempt(
    mode: str, stop: type[BaseException], clock: FakeClock
) -> None:
    seen: list[BaseException] = []

    def always(exc: BaseException) -> bool:
        seen.append(exc)
        return True

    script = Script(ConnectionResetError("x"), stop())
    fn = decorate(mode, pr.retry(on=always), script)
    with pytest.raises(stop):
        await invoke(fn)
    assert script.calls == 2
    assert [type(e) for e in seen] == [ConnectionResetError]


# -- waits, deadlines, retry_after ------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_retry_after_hint_is_honoured(mode: str, clock: FakeClock) -> None:
    script = Script(
        pr.RateLimitedError("slow down", retry_after=2.5), HTTPError(503, "4")
    )
    fn = decorate(
        mode, pr.retry(wait_initial=0.01, wait_max=0.01, retry_after_max=5.0), script
    )
    assert await invoke(fn) == "ok"
    assert clock.sleeps == [2.5, 4.0]


@pytest.mark.parametrize("mode", MODES)
async def test_retry_after_beyond_the_deadline_gives_up_at_once(
    mode: str, clock: FakeClock
) -> None:
    error = HTTPError(429, "120")
    script = Script(error)
    fn = decorate(mode, pr.retry(deadline=30.0, retry_after_max=300.0), script)
    with capture_events() as events, pytest.raises(HTTPError) as info:
        await invoke(fn)
    assert info.value is error
    assert script.calls == 1
    assert clock.sleeps == []
    assert (
        events.of("retry.gave_up")[0].fields["reason"] == "retry_after_exceeds_deadline"
    )


@pytest.mark.parametrize("mode", MODES)
async def test_deadline_bounds_the_whole_call(mode: str, clock: FakeClock) -> None:
    def slow_failure() -> None:
        clock.advance(3.0)
        raise ConnectionResetError("slow")

    fn = decorate(
        mode,
        pr.retry(attempts=None, deadline=10.0, wait_initial=1.0, jitter="none"),
        slow_failure,
    )
    with capture_events() as events, pytest.raises(ConnectionResetError):
        await invoke(fn)
    # t=3 fail, wait 1 -> t=4..7 fail, wait 2 -> t=9..12 fail: past the deadline.
    assert clock.sleeps == [1.0, 2.0]
    assert clock.monotonic() == 12.0
    assert events.of("retry.gave_up")[0].fields["reason"] == "deadline_exceeded"


@pytest.mark.parametrize("mode", MODES)
async def test_sleeps_are_clamped_to_an_enclosing_deadline(
    mode: str, clock: FakeClock
) -> None:
    lefts: list[float | None] = []

    def failing() -> None:
        lefts.append(pr.remaining())
        raise ConnectionResetError("x")

    fn = decorate(
        mode,
        pr.retry(attempts=None, deadline=60.0, wait_initial=0.4, jitter="none"),
        failing,
    )
    with pr.deadline(1.0), pytest.raises(ConnectionResetError):
        await invoke(fn)
    # waits 0.4 then 0.8 > the 0.6 left: no sleep into the deadline.
    assert clock.sleeps == [0.4]
    assert lefts == [1.0, pytest.approx(0.6)]
    assert sum(clock.sleeps) <= 1.0


@pytest.mark.parametrize("mode", MODES)
async def test_every_attempt_sees_the_retry_deadline(
    mode: str, clock: FakeClock
) -> None:
    lefts: list[float | None] = []

    def failing() -> None:
        lefts.append(pr.remaining())
        raise ConnectionResetError("x")

    fn = decorate(
        mode,
        pr.retry(attempts=3, deadline=20.0, wait_initial=2.0, jitter="none"),
        failing,
    )
    with pytest.raises(ConnectionResetError):
        await invoke(fn)
    assert lefts == [20.0, 18.0, 14.0]
    assert pr.remaining() is None


async def test_deadline_zero_warns_and_tries_once(clock: FakeClock) -> None:
    with pytest.warns(UserWarning, match="deadline=0"):
        policy = pr.retry(deadline=0)
    script = Script(ConnectionResetError("x"))
    with pytest.raises(ConnectionResetError):
        policy(script)()
    assert script.calls == 1


def test_unbounded_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="forever"):
        pr.retry(attempts=None, deadline=None)
    with pytest.raises(ValueError, match="forever"):
        pr.retry_context(attempts=None, deadline=math.inf)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempts": 0},
        {"attempts": -1},
        {"attempts": True},
        {"deadline": -1.0},
        {"deadline": math.nan},
        {"wait_initial": -0.1},
        {"wait_max": math.inf},
        {"wait_initial": 2.0, "wait_max": 1.0},
        {"wait_exp_base": 0.5},
        {"jitter": "random"},
    ],
)
def test_invalid_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"retry\("):
        pr.retry(**kwargs)


@pytest.mark.parametrize(
    "kwargs", [{"deadline": "30"}, {"seed": 1.5}, {"on": 42}, {"on": (ValueError, 1)}]
)
def test_wrong_types_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(TypeError, match=r"retry\("):
        pr.retry(**kwargs)


# -- predicates, seeds, switches --------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "on",
    [LookupError, (OSError, LookupError), lambda exc: isinstance(exc, LookupError)],
    ids=["type", "tuple", "predicate"],
)
async def test_custom_on(mode: str, on: Any, clock: FakeClock) -> None:
    retried = Script(KeyError("k"), value="ok")
    assert await invoke(decorate(mode, pr.retry(on=on), retried)) == "ok"
    assert retried.calls == 2
    not_retried = Script(RuntimeError("r"))
    with pytest.raises(RuntimeError):
        await invoke(decorate(mode, pr.retry(on=on), not_retried))
    assert not_retried.calls == 1


@pytest.mark.parametrize("mode", MODES)
async def test_seed_replays_the_same_sleeps(mode: str, clock: FakeClock) -> None:
    sequences = []
    for seed in (11, 11, 12):
        start = len(clock.sleeps)
        script = Script(*[OSError("x") for _ in range(4)])
        await invoke(decorate(mode, pr.retry(attempts=5, seed=seed), script))
        sequences.append(clock.sleeps[start:])
    assert sequences[0] == sequences[1]
    assert sequences[0] != sequences[2]
    assert len(sequences[0]) == 4


@pytest.mark.parametrize("mode", MODES)
async def test_testing_mode_never_sleeps_and_caps_attempts(
    mode: str, clock: FakeClock
) -> None:
    script = Script(*[OSError("x") for _ in range(10)])
    fn = decorate(mode, pr.retry(attempts=10, wait_initial=5.0), script)
    with pr.testing.set_testing(True, attempts=3), pytest.raises(OSError):
        await invoke(fn)
    assert script.calls == 3
    assert clock.sleeps == []


@pytest.mark.parametrize("mode", MODES)
async def test_switched_off_calls_once_straight_through(
    mode: str, clock: FakeClock
) -> None:
    error = ConnectionResetError("x")
    script = Script(error)
    fn = decorate(mode, pr.retry(), script)
    with (
        pr.set_active(False),
        capture_events() as events,
        pytest.raises(ConnectionResetError),
    ):
        await invoke(fn)
    assert script.calls == 1
    assert not hasattr(error, "__notes__")
    assert list(events) == []


# -- shape of the decorated function -----------------------------------------------------


def test_signature_docstring_and_coroutine_nature_are_kept() -> None:
    def plain(a: int, *, b: str = "x") -> str:
        """Plain doc."""
        return f"{a}{b}"

    async def coro(a: int, *, b: str = "x") -> str:
        """Coro doc."""
        return f"{a}{b}"

    for fn in (plain, coro):
        wrapped = pr.retry()(fn)
        assert inspect.signature(wrapped) == inspect.signature(fn)
        assert wrapped.__doc__ == fn.__doc__
        assert wrapped.__name__ == fn.__name__
        assert wrapped.__wrapped__ is fn  # type: ignore[attr-defined]
        assert inspect.iscoroutinefunction(wrapped) is inspect.iscoroutinefunction(fn)


@pytest.mark.parametrize("mode", MODES)
async def test_methods_are_retried_with_their_instance(
    mode: str, clock: FakeClock
) -> None:
    class Client:
        def __init__(self) -> None:
            self.calls = 0

        @pr.retry(attempts=3)
        def get(self, key: str) -> str:
            self.calls += 1
            if self.calls < 2:
                raise ConnectionResetError(key)
            return key.upper()

        @pr.retry(attempts=3)
        async def aget(self, key: str) -> str:
            self.calls += 1
            if self.calls < 2:
                raise ConnectionResetError(key)
            return key.upper()

    client = Client()
    method = client.get if mode == "sync" else client.aget
    assert await invoke(method, "k") == "K"
    assert client.calls == 2


# -- retry_context ----------------------------------------------------------------------


async def loop_over(
    mode: str, context: Any, body: Callable[..., Any], *, pass_attempt: bool = False
) -> None:
    """Run ``body`` in a ``for``/``async for`` retry_context loop."""
    if mode == "sync":
        for attempt in context:
            with attempt:
                body(attempt) if pass_attempt else body()
    else:
        async for attempt in context:
            with attempt:
                body(attempt) if pass_attempt else body()


def test_retry_context_sync(clock: FakeClock) -> None:
    script = Script(OSError("a"), OSError("b"), value=1)
    nums = []
    for attempt in pr.retry_context(attempts=5, name="block"):
        with attempt:
            nums.append(attempt.num)
            script()
    assert nums == [1, 2, 3]
    assert len(clock.sleeps) == 2


async def test_retry_context_async(clock: FakeClock) -> None:
    script = Script(OSError("a"), OSError("b"), value=1)
    nums = []
    async for attempt in pr.retry_context(attempts=5, name="block"):
        with attempt:
            nums.append(attempt.num)
            script()
    assert nums == [1, 2, 3]
    assert len(clock.sleeps) == 2


@pytest.mark.parametrize("mode", MODES)
async def test_retry_context_reraises_the_last_error(
    mode: str, clock: FakeClock
) -> None:
    errors = [OSError(f"e{i}") for i in range(3)]
    script = Script(*errors)
    context = pr.retry_context(attempts=3, name="block")
    with capture_events() as events, pytest.raises(OSError) as info:
        await loop_over(mode, context, script)
    assert info.value is errors[-1]
    assert events.of("retry.gave_up")[0].subject == "block"


@pytest.mark.parametrize("mode", MODES)
async def test_retry_context_success_first_time_is_one_attempt(
    mode: str, clock: FakeClock
) -> None:
    nums = []
    context = pr.retry_context()
    if mode == "sync":
        for attempt in context:
            with attempt:
                nums.append(attempt.num)
    else:
        async for attempt in context:
            with attempt:
                nums.append(attempt.num)
    assert nums == [1]
    # the object is reusable: a second loop is a fresh run
    for attempt in context:
        with attempt:
            nums.append(attempt.num)
    assert nums == [1, 1]


@pytest.mark.parametrize("mode", MODES)
async def test_retry_context_switched_off_runs_once_and_raises(mode: str) -> None:
    nums = []

    def body(attempt: Any) -> None:
        nums.append(attempt.num)
        raise OSError("x")

    with pr.set_active(False), pytest.raises(OSError):
        await loop_over(mode, pr.retry_context(), body, pass_attempt=True)
    assert nums == [1]


# -- concurrency and cancellation ---------------------------------------------------------


def _per_call_view(events: CapturedEvents) -> dict[str, tuple[list[int], list[float]]]:
    view: dict[str, tuple[list[int], list[float]]] = {}
    for event in events:
        call = event.trace.get("call")
        assert call is not None
        attempts, waits = view.setdefault(call, ([], []))
        if event.name.endswith("attempt_failed"):
            attempts.append(event.fields["attempt"])
        elif event.name.endswith("scheduled"):
            waits.append(event.fields["wait"])
    return view


def _expected_waits(failures: int) -> list[float]:
    rand = random.Random(5).random
    return [
        round(
            _retry.compute_backoff(
                n,
                wait_initial=0.1,
                wait_max=10.0,
                wait_exp_base=2.0,
                jitter="full",
                rand=rand,
            ),
            6,
        )
        for n in range(1, failures + 1)
    ]


async def test_concurrent_tasks_keep_their_own_attempts(clock: FakeClock) -> None:
    counters: dict[int, int] = {}

    @pr.retry(attempts=6, seed=5)
    async def work(i: int) -> int:
        counters[i] = counters.get(i, 0) + 1
        await asyncio.sleep(0)
        if counters[i] <= i % 4:
            raise ConnectionResetError(f"call {i}")
        return i * 10

    async def one(i: int) -> int:
        with pr.trace(call=str(i)):
            return await work(i)

    with capture_events() as events:
        results = await asyncio.gather(*(one(i) for i in range(50)))
    assert results == [i * 10 for i in range(50)]
    assert counters == {i: i % 4 + 1 for i in range(50)}
    view = _per_call_view(events)
    for i in range(50):
        attempts, waits = view.get(str(i), ([], []))
        assert attempts == list(range(1, i % 4 + 1))
        assert waits == _expected_waits(i % 4)


def test_threads_keep_their_own_attempts(clock: FakeClock) -> None:
    counters: dict[int, int] = {}
    lock = threading.Lock()

    @pr.retry(attempts=6, seed=5)
    def work(i: int) -> int:
        with lock:
            counters[i] = counters.get(i, 0) + 1
            count = counters[i]
        if count <= i % 4:
            raise ConnectionResetError(f"call {i}")
        return i * 10

    def one(i: int) -> int:
        with pr.trace(call=str(i)):
            return work(i)

    with capture_events() as events, concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(64)))
    assert results == [i * 10 for i in range(64)]
    assert counters == {i: i % 4 + 1 for i in range(64)}
    view = _per_call_view(events)
    for i in range(64):
        attempts, waits = view.get(str(i), ([], []))
        assert attempts == list(range(1, i % 4 + 1))
        assert waits == _expected_waits(i % 4)


async def test_async_sleeps_do_not_block_the_event_loop() -> None:
    ticks = 0
    stop = asyncio.Event()

    async def heartbeat() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.002)

    @pr.retry(attempts=4, wait_initial=0.02, jitter="none")
    async def flaky() -> None:
        raise ConnectionResetError("x")

    beat = asyncio.ensure_future(heartbeat())
    await asyncio.sleep(0)
    before = ticks
    with pytest.raises(ConnectionResetError):
        await flaky()  # sleeps 0.02 + 0.04 + 0.08 s in total
    stop.set()
    await asyncio.wait_for(beat, 5)
    # A blocking sleep would freeze the heartbeat for the whole 0.14 s.
    assert ticks - before >= 5


async def test_outer_cancellation_stops_retrying_and_hides_nothing() -> None:
    seen: list[BaseException] = []

    def always(exc: BaseException) -> bool:
        seen.append(exc)
        return True

    @pr.retry(on=always, attempts=None, deadline=60.0, wait_initial=5.0, jitter="none")
    async def failing() -> None:
        await asyncio.sleep(0)
        raise ConnectionResetError("x")

    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(failing(), 0.05)
    # Correctness bound, not a speed goal: the 5 s backoff sleep was cancelled.
    assert time.monotonic() - started < 2.5
    assert seen
    assert all(isinstance(e, ConnectionResetError) for e in seen)


# -- Hypothesis: the backoff function and the state machine against a model ----------------


@settings(max_examples=200, deadline=None)
@given(
    attempt=st.integers(min_value=1, max_value=10**6),
    wait_initial=st.floats(min_value=0, max_value=1e6),
    extra=st.floats(min_value=0, max_value=1e6),
    base=st.floats(min_value=1, max_value=1e3),
    jitter=st.sampled_from(["full", "equal", "none"]),
    seed=st.integers(),
)
def test_backoff_is_bounded_and_reproducible(
    attempt: int, wait_initial: float, extra: float, base: float, jitter: Any, seed: int
) -> None:
    wait_max = wait_initial + extra
    kwargs = {
        "wait_initial": wait_initial,
        "wait_max": wait_max,
        "wait_exp_base": base,
        "jitter": jitter,
    }
    first = [
        _retry.compute_backoff(n, rand=random.Random(seed).random, **kwargs)
        for n in (attempt, 1, attempt + 1)
    ]
    again = [
        _retry.compute_backoff(n, rand=random.Random(seed).random, **kwargs)
        for n in (attempt, 1, attempt + 1)
    ]
    assert first == again
    assert all(0.0 <= w <= wait_max for w in first)
    if jitter == "none":
        if wait_initial == 0.0:
            expected = 0.0
        else:  # in log space, so the reference itself cannot overflow
            log_wait = math.log(wait_initial) + (attempt - 1) * math.log(base)
            expected = (
                wait_max if log_wait >= math.log(wait_max) else math.exp(log_wait)
            )
        assert first[0] == pytest.approx(expected, rel=1e-6, abs=1e-300)


@settings(max_examples=100, deadline=None)
@given(
    outcomes=st.lists(
        st.tuples(st.sampled_from(["transient", "permanent", "ok"]), st.floats(0, 5)),
        max_size=12,
    ),
    attempts=st.one_of(st.none(), st.integers(1, 8)),
    deadline=st.one_of(st.none(), st.floats(0.5, 40)),
    wait_initial=st.floats(0, 3),
    mode=st.sampled_from(MODES),
)
def test_retry_matches_a_reference_model(
    outcomes: list[tuple[str, float]],
    attempts: int | None,
    deadline: float | None,
    wait_initial: float,
    mode: str,
) -> None:
    if attempts is None and deadline is None:
        attempts = 3
    clock = FakeClock()

    # Reference model: which call ends the run, and how.
    expected_calls, expected_sleeps, expected_end = 0, [], ("ok", None)
    now = 0.0
    for index, (kind, duration) in enumerate([*outcomes, ("ok", 0.0)], start=1):
        expected_calls += 1
        now += duration
        if kind == "ok":
            expected_end = ("ok", None)
            break
        if kind == "permanent":
            expected_end = ("raise", index)
            break
        if attempts is not None and index >= attempts:
            expected_end = ("raise", index)
            break
        wait = min(10.0, wait_initial * 2.0 ** (index - 1))
        if deadline is not None and (now >= deadline or wait >= deadline - now):
            expected_end = ("raise", index)
            break
        expected_sleeps.append(wait)
        now += wait

    remaining_outcomes = list(outcomes)
    raised: list[BaseException] = []

    def body() -> str:
        kind, duration = (
            remaining_outcomes.pop(0) if remaining_outcomes else ("ok", 0.0)
        )
        clock.advance(duration)
        if kind == "ok":
            return "done"
        exc: Exception = (
            ConnectionResetError("t") if kind == "transient" else ValueError("p")
        )
        raised.append(exc)
        raise exc

    fn = decorate(
        mode,
        pr.retry(
            attempts=attempts,
            deadline=deadline,
            wait_initial=wait_initial,
            jitter="none",
        ),
        body,
    )

    async def run() -> object:
        return await invoke(fn)

    with clock.install():
        if expected_end[0] == "ok":
            assert asyncio.run(run()) == "done"
        else:
            with pytest.raises(Exception) as info:
                asyncio.run(run())
            assert info.value is raised[-1]
    assert len(outcomes) - len(remaining_outcomes) == min(expected_calls, len(outcomes))
    assert clock.sleeps == pytest.approx(expected_sleeps)


def test_notes_stay_bounded_for_a_reused_exception(clock: FakeClock) -> None:
    shared = ConnectionResetError("same object every time")

    @pr.retry(attempts=2)
    def failing() -> None:
        raise shared

    for _ in range(10):
        with pytest.raises(ConnectionResetError):
            failing()
    assert len(shared.__notes__) == 3


def test_notes_are_a_plain_list_on_every_python(clock: FakeClock) -> None:
    # 3.11+ has add_note(); on 3.10 the same __notes__ list is kept by hand.
    error = OSError("x")
    with pytest.raises(OSError):
        pr.retry(attempts=2)(Script(error, error))()
    assert isinstance(error.__notes__, list)
    assert error.__notes__[-1].startswith("paios_reliability.retry:")


# -- finding 16 and the fail-fast rules for retry_after --------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_finding_16_retry_after_is_capped_by_retry_after_max(
    mode: str, clock: FakeClock
) -> None:
    error = pr.RateLimitedError("come back tomorrow", retry_after=86400.0)
    script = Script(error, value="ok")
    fn = decorate(mode, pr.retry(attempts=2, deadline=None, wait_max=1.0), script)
    with capture_events() as events, pytest.raises(pr.RateLimitedError) as info:
        await invoke(fn)
    assert info.value is error
    assert clock.sleeps == []  # the 7-day sleep is gone: it gives up at once
    assert script.calls == 1
    (gave_up,) = events.of("retry.gave_up")
    assert gave_up.fields["reason"] == "retry_after_exceeds_max"
    assert "more than retry_after_max=1s" in info.value.__notes__[-1]


@pytest.mark.parametrize("mode", MODES)
async def test_retry_after_within_the_max_is_waited_for_when_it_fits(
    mode: str, clock: FakeClock
) -> None:
    script = Script(pr.CircuitOpenError(breaker_name="dep", retry_after=3.0))
    fn = decorate(mode, pr.retry(wait_max=5.0, deadline=10.0), script)
    assert await invoke(fn) == "ok"
    assert clock.sleeps == [3.0]
    # It does not fit: 3 s wait + 8 s still needed by an attempt > 10 s left.
    late = Script(pr.CircuitOpenError(breaker_name="dep", retry_after=3.0))
    policy: Any = pr.retry(wait_max=5.0, deadline=10.0)
    fn = decorate(mode, lambda f: policy.decorate(f, room=8.0), late)
    with pytest.raises(pr.CircuitOpenError) as info:
        await invoke(fn)
    assert "plus 8s for an attempt" in info.value.__notes__[-1]
    assert late.calls == 1


# -- retry on result -----------------------------------------------------------------


class Results:
    """Returns the given results in turn, then the last one forever."""

    def __init__(self, *results: object) -> None:
        self.results = list(results)
        self.calls = 0

    def __call__(self) -> object:
        self.calls += 1
        return self.results.pop(0) if len(self.results) > 1 else self.results[0]


@pytest.mark.parametrize("mode", MODES)
async def test_on_result_retries_unacceptable_results(
    mode: str, clock: FakeClock
) -> None:
    body = Results(None, None, {"status": "ready"})
    fn = decorate(mode, pr.retry(on_result=lambda r: r is None, seed=3), body)
    with capture_events() as events:
        assert await invoke(fn) == {"status": "ready"}
    assert body.calls == 3
    assert len(clock.sleeps) == 2
    failed = events.of("retry.attempt_failed")
    assert [e.fields.get("result_rejected") for e in failed] == [True, True]
    assert all(e.exc is None for e in failed)
    assert events.of("retry.succeeded")[0].fields["attempts"] == 3


@pytest.mark.parametrize("mode", MODES)
async def test_on_result_returns_the_last_result_when_attempts_run_out(
    mode: str, clock: FakeClock
) -> None:
    body = Results("pending")
    fn = decorate(mode, pr.retry(attempts=3, on_result=lambda r: r == "pending"), body)
    with capture_events() as events:
        assert await invoke(fn) == "pending"
    assert body.calls == 3
    (gave_up,) = events.of("retry.gave_up")
    assert gave_up.fields["reason"] == "attempts_exhausted"
    assert gave_up.fields["result_rejected"] is True


@pytest.mark.parametrize("mode", MODES)
async def test_raise_on_result_raises_retry_exhausted_error(
    mode: str, clock: FakeClock
) -> None:
    body = Results([], [], [])
    fn = decorate(
        mode,
        pr.retry(attempts=3, on_result=lambda r: not r, raise_on_result=True),
        body,
    )
    with pytest.raises(pr.RetryExhaustedError) as info:
        await invoke(fn)
    assert info.value.last_result == []
    assert info.value.attempts == 3
    assert info.value.code == "RETRY_EXHAUSTED"
    assert info.value.retryable
    assert "after 3 attempts" in info.value.__notes__[-1]
    assert info.value.__cause__ is None
    # An exception is still an exception: on_result never sees it.
    seen: list[object] = []
    failing = Script(KeyError("bug"))
    with pytest.raises(KeyError):
        await invoke(decorate(mode, pr.retry(on_result=seen.append), failing))
    assert seen == []


def test_on_result_and_new_flags_are_validated() -> None:
    with pytest.raises(TypeError, match="on_result"):
        pr.retry(on_result=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="raise_on_result"):
        pr.retry(raise_on_result="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="overlap_abandoned"):
        pr.retry(overlap_abandoned=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="retry_after_max"):
        pr.retry(retry_after_max=-1.0)
    assert "retry_after_max=60.0" in repr(pr.retry(retry_after_max=60.0))


# -- finding 4: never two copies of one attempt at once --------------------------------


class Charge:
    """A sync side effect whose first call hangs until released."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started = 0
        self.inside = 0
        self.peak = 0
        self.release = threading.Event()

    def __call__(self) -> str:
        with self.lock:
            self.started += 1
            first = self.started == 1
            self.inside += 1
            self.peak = max(self.peak, self.inside)
        try:
            if first:
                self.release.wait(30)
            return "charged"
        finally:
            with self.lock:
                self.inside -= 1


def test_finding_04_retry_waits_for_the_abandoned_attempt_to_end() -> None:
    charge = Charge()
    fn = pr.retry(attempts=4, wait_initial=0.01, wait_max=0.02)(
        pr.timeout(0.05)(charge)
    )
    timer = threading.Timer(0.3, charge.release.set)
    timer.start()
    try:
        assert fn() == "charged"
    finally:
        timer.cancel()
        charge.release.set()
    assert charge.started == 2
    assert charge.peak == 1  # the old code had 4 copies running at once


def test_finding_04_retry_gives_up_while_the_abandoned_attempt_runs() -> None:
    charge = Charge()
    fn = pr.retry(attempts=4, deadline=0.3, wait_initial=0.01)(pr.timeout(0.05)(charge))
    try:
        with capture_events() as events, pytest.raises(pr.TimeoutExceeded) as info:
            fn()
        assert charge.started == 1
        assert events.of("retry.gave_up")[0].fields["reason"] == (
            "abandoned_attempt_running"
        )
        assert "would run the operation twice" in info.value.__notes__[-1]
        assert info.value.worker is not None
    finally:
        charge.release.set()
    assert info.value.worker.wait(10)


def test_overlap_abandoned_opts_in_to_concurrent_attempts() -> None:
    charge = Charge()
    fn = pr.retry(attempts=2, wait_initial=0.0, overlap_abandoned=True)(
        pr.timeout(0.05)(charge)
    )
    try:
        assert fn() == "charged"
        assert charge.started == 2
        assert charge.peak == 2
    finally:
        charge.release.set()


# -- trio ----------------------------------------------------------------------------


def test_async_retry_runs_under_trio() -> None:
    import trio

    script = Script(ConnectionResetError("a"), ConnectionResetError("b"), value=7)

    @pr.retry(attempts=5, wait_initial=0.001, wait_max=0.002)
    async def work() -> object:
        await trio.sleep(0)
        return script()

    assert trio.run(work) == 7
    assert script.calls == 3


def test_async_retry_under_trio_with_a_fake_clock() -> None:
    import trio

    clock = FakeClock()
    script = Script(ConnectionResetError("a"), value="ok")

    @pr.retry(attempts=3, wait_initial=5.0, jitter="none")
    async def work() -> object:
        return script()

    with clock.install():
        assert trio.run(work) == "ok"
    assert clock.sleeps == [5.0]  # fake time, no real 5 s wait
