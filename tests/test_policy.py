"""resilient(): layer order, per-attempt timeout, and a real MCP server and client."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import paios_reliability as pr
from paios_reliability.testing import FakeClock, capture_events

if TYPE_CHECKING:
    from mcp import Client
    from mcp.server.mcpserver import MCPServer

P = ParamSpec("P")
T = TypeVar("T")
MODES = ["sync", "async"]


async def invoke(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    result = fn(*args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


class Recorder:
    """A real call policy (decorator) that logs when a call passes through it."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        name, log = self.name, self.log
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def awrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                log.append(name)
                return await fn(*args, **kwargs)  # type: ignore[misc]

            return awrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            log.append(name)
            return fn(*args, **kwargs)

        return wrapper


def operation(
    mode: str, log: list[str], failures: list[BaseException]
) -> Callable[..., Any]:
    def op(x: int) -> int:
        log.append(f"op(remaining={'set' if pr.remaining() is not None else 'none'})")
        if failures:
            raise failures.pop(0)
        return x * 2

    if mode == "sync":
        return op

    @functools.wraps(op)
    async def aop(x: int) -> int:
        await asyncio.sleep(0)
        return op(x)

    return aop


@pytest.mark.parametrize("mode", MODES)
async def test_layers_run_in_the_documented_order(
    mode: str, fake_clock: FakeClock
) -> None:
    log: list[str] = []
    fn = pr.resilient(
        name="ordered",
        timeout=5.0,
        retry={"attempts": 3, "wait_initial": 0.0},
        breaker=Recorder("breaker", log),
        limiter=Recorder("limiter", log),
        bulkhead=Recorder("bulkhead", log),
    )(operation(mode, log, [ConnectionResetError("a"), ConnectionResetError("b")]))
    assert await invoke(fn, 21) == 42
    # retry is outside: every attempt passes breaker -> limiter -> bulkhead -> op.
    assert log == ["breaker", "limiter", "bulkhead", "op(remaining=set)"] * 3


@pytest.mark.parametrize("mode", MODES)
async def test_boundary_is_outermost_and_sees_only_the_final_outcome(
    mode: str, fake_clock: FakeClock
) -> None:
    log: list[str] = []
    failures: list[BaseException] = [ConnectionResetError(str(i)) for i in range(3)]
    last = failures[-1]
    seen: list[BaseException] = []

    def fallback(exc: BaseException) -> int:
        seen.append(exc)
        return -1

    fn = pr.resilient(name="guarded", retry={"attempts": 3}, fallback=fallback)(
        operation(mode, log, failures)
    )
    with capture_events() as events:
        assert await invoke(fn, 1) == -1
    assert seen == [last]
    assert len(events.of("error_boundary.caught")) == 1
    assert len(events.of("retry.attempt_failed")) == 3


@pytest.mark.parametrize("mode", MODES)
async def test_timeout_is_per_attempt_and_timeouts_are_retried(mode: str) -> None:
    calls = 0

    def slow_then_fast() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            threading_event_wait(2.0)
        return "fast"

    async def aslow_then_fast() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(2.0)
        return "fast"

    fn = pr.resilient(name="per_attempt", timeout=0.05, retry={"wait_initial": 0.001})(
        slow_then_fast if mode == "sync" else aslow_then_fast
    )
    with capture_events() as events:
        assert await invoke(fn) == "fast"
    assert calls == 2
    (failed,) = events.of("retry.attempt_failed")
    assert isinstance(failed.exc, pr.TimeoutExceeded)


def threading_event_wait(seconds: float) -> None:
    import threading

    threading.Event().wait(seconds)


@pytest.mark.parametrize("mode", MODES)
async def test_real_breaker_limiter_and_bulkhead_compose(
    mode: str, fake_clock: FakeClock
) -> None:
    breaker = pr.CircuitBreaker("dep", failure_threshold=3, reset_timeout=60.0)
    limiter = pr.RateLimiter("dep", rate=100, per=1.0)
    bulkhead = pr.Bulkhead("dep", max_concurrent=2)
    log: list[str] = []
    failures: list[BaseException] = [ConnectionResetError(str(i)) for i in range(10)]
    fn = pr.resilient(
        name="dep.call",
        timeout=5.0,
        retry={"attempts": 5, "deadline": 30.0},
        breaker=breaker,
        limiter=limiter,
        bulkhead=bulkhead,
    )(operation(mode, log, failures))
    # The breaker sits inside retry, so it counts every attempt: it opens after
    # the third, and its retry_after (60 s) exceeds the 30 s retry deadline,
    # so retrying stops at once with the CircuitOpenError.
    with pytest.raises(pr.CircuitOpenError) as info:
        await invoke(fn, 1)
    assert len(log) == 3
    assert breaker.state == "open"
    assert info.value.breaker_name == "dep"
    assert "gave up on dep.call after 4 attempts" in info.value.__notes__[-1]

    breaker.reset()
    failures.clear()
    assert await invoke(fn, 4) == 8


def test_retry_option_forms_and_validation(fake_clock: FakeClock) -> None:
    def flaky_factory() -> Callable[[], str]:
        state = {"n": 0}

        def fn() -> str:
            state["n"] += 1
            if state["n"] < 2:
                raise ConnectionResetError("x")
            return "ok"

        return fn

    for option in (True, {"attempts": 2}, pr.retry(attempts=2)):
        assert pr.resilient(name="forms", retry=option)(flaky_factory())() == "ok"
    for option in (None, False):
        with pytest.raises(ConnectionResetError):
            pr.resilient(name="forms", retry=option)(flaky_factory())()
    with pytest.raises(TypeError, match="retry"):
        pr.resilient(name="forms", retry=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="breaker"):
        pr.resilient(name="forms", breaker="not a policy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name"):
        pr.resilient(name="")
    with pytest.raises(ValueError, match="timeout"):
        pr.resilient(name="forms", timeout=0)


def test_fallback_none_is_a_fallback_and_unset_is_not() -> None:
    def broken() -> str | None:
        raise OSError("x")

    assert pr.resilient(name="none", fallback=None)(broken)() is None
    with pytest.raises(OSError):
        pr.resilient(name="unset")(broken)()


def test_a_layer_without_wraps_does_not_hide_the_signature() -> None:
    def careless(fn: Callable[P, T]) -> Callable[P, T]:
        def inner(*args: P.args, **kwargs: P.kwargs) -> T:
            return fn(*args, **kwargs)

        return inner

    def tool(city: str, days: int = 3) -> str:
        """Weather."""
        return city * days

    wrapped = pr.resilient(name="careless", limiter=careless, retry=True)(tool)
    assert inspect.signature(wrapped) == inspect.signature(tool)
    assert wrapped.__doc__ == "Weather."
    assert wrapped("a", 2) == "aa"


def test_signature_annotations_and_docstring_are_kept() -> None:
    def plain(city: str, days: int = 3) -> list[str]:
        """Forecast."""
        return [city] * days

    async def coro(city: str, days: int = 3) -> list[str]:
        """Forecast."""
        return [city] * days

    for fn in (plain, coro):
        wrapped = pr.resilient(name="kept", timeout=1.0, retry=True, fallback=[])(fn)
        assert inspect.signature(wrapped) == inspect.signature(fn)
        assert wrapped.__annotations__ == fn.__annotations__
        assert wrapped.__doc__ == "Forecast."
        assert wrapped.__name__ == fn.__name__
        assert inspect.iscoroutinefunction(wrapped) is inspect.iscoroutinefunction(fn)


# -- MCP adoption proof: the official SDK, in memory ---------------------------------------


class Faults:
    """Per-tool fault injection: each call pops the next planned fault."""

    def __init__(self) -> None:
        self.plan: dict[str, list[BaseException | float]] = {}
        self.calls: dict[str, int] = {}

    def next(self, tool: str) -> BaseException | float | None:
        self.calls[tool] = self.calls.get(tool, 0) + 1
        queue = self.plan.get(tool, [])
        return queue.pop(0) if queue else None


def make_tools(faults: Faults) -> list[Callable[..., Any]]:
    async def search(
        query: str, limit: int = 5, tags: list[str] | None = None
    ) -> list[str]:
        """Search the notes."""
        fault = faults.next("search")
        if isinstance(fault, BaseException):
            raise fault
        if isinstance(fault, float):
            await asyncio.sleep(fault)
        return [f"{query}-{i}" for i in range(limit)]

    def convert(amount: float, currency: str = "EUR") -> dict[str, float]:
        """Convert an amount."""
        fault = faults.next("convert")
        if isinstance(fault, BaseException):
            raise fault
        if isinstance(fault, float):
            threading_event_wait(fault)
        return {currency: amount * 2}

    async def summarize(text: str) -> str:
        """Summarize text."""
        fault = faults.next("summarize")
        if isinstance(fault, BaseException):
            raise fault
        return text[:10]

    return [search, convert, summarize]


def mcp_client(server: MCPServer) -> Client:
    from mcp import Client

    return Client(server)


def build_server(faults: Faults, *, resilient: bool) -> MCPServer:
    # Imported here so the module collects without mcp (the lowest-versions
    # session cannot install it and deselects the mcp tests).
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("paios-test")
    search, convert, summarize = make_tools(faults)
    if resilient:
        search = pr.resilient(
            name="search", timeout=0.2, retry={"attempts": 3, "wait_initial": 0.001}
        )(search)
        convert = pr.resilient(
            name="convert", timeout=0.2, retry={"attempts": 3, "wait_initial": 0.001}
        )(convert)
        summarize = pr.resilient(
            name="summarize",
            retry={"attempts": 2, "wait_initial": 0.001},
            fallback="summary unavailable",
        )(summarize)
    for tool in (search, convert, summarize):
        server.tool()(tool)
    return server


async def test_mcp_tool_schemas_are_identical_with_and_without_resilient() -> None:
    bare = build_server(Faults(), resilient=False)
    wrapped = build_server(Faults(), resilient=True)
    async with mcp_client(bare) as bare_client, mcp_client(wrapped) as wrapped_client:
        bare_tools = {t.name: t for t in (await bare_client.list_tools()).tools}
        wrapped_tools = {t.name: t for t in (await wrapped_client.list_tools()).tools}
    assert (
        sorted(bare_tools)
        == sorted(wrapped_tools)
        == ["convert", "search", "summarize"]
    )
    for name, tool in bare_tools.items():
        assert wrapped_tools[name].input_schema == tool.input_schema
        assert wrapped_tools[name].output_schema == tool.output_schema
        assert wrapped_tools[name].description == tool.description
    assert bare_tools["search"].input_schema["required"] == ["query"]


def _text(result: Any) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


@pytest.mark.parametrize(
    ("tool", "args"),
    [("search", {"query": "q", "limit": 2}), ("convert", {"amount": 1.5})],
)
async def test_mcp_transient_faults_are_absorbed_by_retry(
    tool: str, args: dict[str, Any]
) -> None:
    faults = Faults()
    faults.plan[tool] = [ConnectionResetError("reset"), TimeoutError("slow")]
    async with mcp_client(build_server(faults, resilient=True)) as client:
        result = await client.call_tool(tool, args)
    assert not result.is_error, _text(result)
    assert faults.calls[tool] == 3
    expected = {"result": ["q-0", "q-1"]} if tool == "search" else {"EUR": 3.0}
    assert result.structured_content == expected


@pytest.mark.parametrize(
    ("tool", "args"), [("search", {"query": "q"}), ("convert", {"amount": 1.0})]
)
async def test_mcp_permanent_faults_fail_once_without_retry(
    tool: str, args: dict[str, Any]
) -> None:
    faults = Faults()
    faults.plan[tool] = [ValueError("bad input")]
    with capture_events() as events:
        async with mcp_client(build_server(faults, resilient=True)) as client:
            result = await client.call_tool(tool, args)
            calls_after_fault = faults.calls[tool]
            follow_up = await client.call_tool(tool, args)
    assert result.is_error
    assert tool in _text(result)
    assert calls_after_fault == 1
    (gave_up,) = events.of("retry.gave_up")
    assert gave_up.fields["reason"] == "not_retryable"
    assert isinstance(gave_up.exc, ValueError)
    assert not follow_up.is_error


@pytest.mark.parametrize(
    ("tool", "args"), [("search", {"query": "q"}), ("convert", {"amount": 1.0})]
)
async def test_mcp_timeouts_become_error_results_and_the_server_keeps_serving(
    tool: str, args: dict[str, Any]
) -> None:
    faults = Faults()
    faults.plan[tool] = [2.0, 2.0, 2.0]  # every attempt overruns the 0.2 s timeout
    with capture_events() as events:
        async with mcp_client(build_server(faults, resilient=True)) as client:
            result = await client.call_tool(tool, args)
            calls_after_fault = faults.calls[tool]
            follow_up = await client.call_tool(tool, args)
    assert result.is_error
    # One timeout is retried (retry_timeouts=1), the second ends the call.
    assert calls_after_fault == 2
    (gave_up,) = events.of("retry.gave_up")
    assert isinstance(gave_up.exc, pr.TimeoutExceeded)
    assert not follow_up.is_error


async def test_mcp_fallback_is_returned_as_a_normal_result() -> None:
    faults = Faults()
    faults.plan["summarize"] = [
        KeyError("broken"),
        ConnectionResetError("x"),
        ConnectionResetError("y"),
    ]
    async with mcp_client(build_server(faults, resilient=True)) as client:
        permanent = await client.call_tool("summarize", {"text": "a long text"})
        transient = await client.call_tool("summarize", {"text": "a long text"})
        healthy = await client.call_tool("summarize", {"text": "a long text"})
    assert not permanent.is_error
    assert permanent.structured_content == {"result": "summary unavailable"}
    assert transient.structured_content == {"result": "summary unavailable"}
    assert healthy.structured_content == {"result": "a long tex"}
    assert faults.calls["summarize"] == 4  # 1 (permanent) + 2 (retried) + 1


# -- a fake-time event loop: sleeps and deadlines move the FakeClock, never wait ----------


class _FakeTimeSelector:
    """Wraps the loop's selector: when nothing is ready, jump the clock instead."""

    def __init__(self, real: Any, clock: FakeClock) -> None:
        self._real = real
        self._clock = clock

    def select(self, timeout: float | None = None) -> Any:
        events = self._real.select(0)
        if events:
            return events
        if timeout is None:
            raise AssertionError("the loop would block for ever: nothing is scheduled")
        if timeout > 0:
            self._clock.advance(timeout)
        return []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def run_in_fake_time(clock: FakeClock, coro: Any) -> Any:
    """Run ``coro`` on an asyncio loop whose time is ``clock`` (installed)."""
    loop = asyncio.SelectorEventLoop()
    loop._selector = _FakeTimeSelector(loop._selector, clock)  # type: ignore[attr-defined]
    loop.time = clock.monotonic  # type: ignore[method-assign]
    try:
        with clock.install():
            return loop.run_until_complete(coro)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


# -- item 1: one budget for the whole call, fail fast while open ---------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_an_open_breaker_fails_the_call_at_once(
    mode: str, fake_clock: FakeClock
) -> None:
    breaker = pr.CircuitBreaker("down", reset_timeout=30.0)
    breaker.trip()
    fake_clock.advance(0.03)  # opened by an earlier call: 29.97 s to go
    log: list[str] = []
    fn = pr.resilient(name="tool", retry=True, timeout=10.0, breaker=breaker)(
        operation(mode, log, [])
    )
    with capture_events() as events, pytest.raises(pr.CircuitOpenError) as info:
        await invoke(fn, 1)
    # Before: ~30 s of retrying CircuitOpenError (29.97 s measured). Now no
    # wait at all: the breaker's retry_after is longer than retry_after_max.
    assert fake_clock.sleeps == []
    assert fake_clock.monotonic() == 0.03
    assert log == []
    assert "exceeds retry_after_max" in info.value.__notes__[-1]
    (gave_up,) = events.of("retry.gave_up")
    assert gave_up.fields["attempts"] == 1


def _hanging_async() -> Callable[..., Any]:
    async def hang() -> str:
        await asyncio.sleep(1e9)
        return "never"

    return hang


def test_a_hanging_async_downstream_returns_within_the_deadline() -> None:
    clock = FakeClock()
    fn = pr.resilient(name="hang", timeout=1.0, deadline=3.0, retry=True)(
        _hanging_async()
    )
    assert fn.policy.worst_case_seconds == 3.0
    outcomes = [run_in_fake_time(clock, fn.outcome()) for _ in range(20)]
    for outcome in outcomes:
        assert not outcome.ok
        assert outcome.failure is not None
        assert outcome.failure.code == "TIMEOUT"
        assert outcome.elapsed <= 3.0
        assert outcome.attempts == 2  # one timed-out attempt is retried, once
    # Before: timeout=1 with the default retry took 5.5 s; timeout=10 took 30 s.


def test_a_deadline_without_timeout_cancels_an_async_attempt() -> None:
    clock = FakeClock()
    fn = pr.resilient(name="hang", deadline=2.0)(_hanging_async())
    assert fn.policy.worst_case_seconds == 2.0
    outcome = run_in_fake_time(clock, fn.outcome())
    assert isinstance(outcome.error, pr.TimeoutExceeded)
    assert outcome.elapsed == 2.0


def test_an_enclosing_deadline_is_honoured() -> None:
    clock = FakeClock()
    fn = pr.resilient(name="hang", timeout=10.0, deadline=30.0, retry=True)(
        _hanging_async()
    )

    async def within() -> Any:
        with pr.deadline(1.5):
            return await fn.outcome()

    outcome = run_in_fake_time(clock, within())
    assert isinstance(outcome.error, pr.TimeoutExceeded)
    assert outcome.elapsed == 1.5


def test_a_hanging_sync_downstream_returns_within_the_deadline() -> None:
    release = threading.Event()
    started: list[int] = []

    def hang() -> str:
        started.append(1)
        release.wait(30)
        return "late"

    fn = pr.resilient(name="hang", timeout=0.05, deadline=0.3, retry=True)(hang)
    began = time.monotonic()
    try:
        with pytest.raises(pr.TimeoutExceeded) as info:
            fn()
        # Not a speed goal: proof that it did not hang for the 30 s of work.
        assert time.monotonic() - began < 0.3 * 5
        assert started == [1]  # no second copy while the first still runs
        assert "still runs in its worker thread" in info.value.__notes__[-1]
    finally:
        release.set()


def test_finding_04_an_abandoned_attempt_keeps_its_bulkhead_slot() -> None:
    inside = 0
    peak = 0
    lock = threading.Lock()
    release = threading.Event()

    def work() -> str:
        nonlocal inside, peak
        with lock:
            inside += 1
            peak = max(peak, inside)
        release.wait(30)
        with lock:
            inside -= 1
        return "done"

    bulkhead = pr.Bulkhead("db", max_concurrent=1)
    op = pr.resilient(name="op", timeout=0.05, bulkhead=bulkhead)(work)
    with pytest.raises(pr.TimeoutExceeded) as first:
        op()
    # The worker still runs, so the slot is still taken.
    assert bulkhead.stats.in_use == 1
    for _ in range(3):
        with pytest.raises(pr.BulkheadFullError):
            op()
    assert peak == 1  # before: 4 executions in flight with max_concurrent=1
    release.set()
    assert first.value.worker.wait(10)
    assert bulkhead.stats.in_use == 0
    assert op() == "done"


# -- item 2: say the worst case --------------------------------------------------------------


def test_policy_describes_every_layer_and_its_worst_case() -> None:
    breaker = pr.CircuitBreaker("dep", reset_timeout=10.0)
    limiter = pr.RateLimiter("dep", rate=100, per=1.0, max_wait=0.5)
    bulkhead = pr.Bulkhead("dep", max_concurrent=2)

    def tool(x: int) -> int:
        return x

    fn = pr.resilient(
        name="dep.call",
        timeout=5.0,
        retry={"attempts": 3, "wait_max": 2.0},
        breaker=breaker,
        limiter=limiter,
        bulkhead=bulkhead,
        fallback=None,
    )(tool)
    policy = fn.policy
    roles = [layer.role for layer in policy.layers]
    assert roles == [
        "deadline",
        "error_boundary",
        "retry",
        "breaker",
        "limiter",
        "bulkhead",
        "timeout",
        "operation",
    ]
    text = policy.describe()
    assert len(text.splitlines()) == 1 + len(roles)
    # 3 attempts x (0.5 s limiter wait + 5 s timeout) + 2 gaps of at most
    # 2 s: 20.5 s, inside the 30 s budget of the retry deadline.
    assert "worst case 20.5s per call" in text.splitlines()[0]
    assert policy.worst_case_seconds == 20.5
    assert policy.deadline == 30.0
    with pytest.raises(AttributeError):
        policy.worst_case_seconds = 1.0  # type: ignore[misc]
    # Without a deadline it is the sum of every attempt and every gap.
    bare = pr.resilient(
        name="x", timeout=1.0, retry={"attempts": 3, "deadline": None, "wait_max": 2.0}
    )(tool)
    assert bare.policy.deadline is None
    assert bare.policy.worst_case_seconds == 3 * 1.0 + 2 * 2.0
    assert pr.resilient(name="y")(tool).policy.worst_case_seconds == math.inf


def test_contradictions_are_logged_when_decorating() -> None:
    def tool() -> None:
        return None

    with capture_events() as events:
        fn = pr.resilient(
            name="odd",
            timeout=20.0,
            retry={"deadline": 10.0},
            breaker=pr.CircuitBreaker("odd", reset_timeout=60.0),
        )(tool)
    problems = [e.fields["problem"] for e in events.of("resilient.contradiction")]
    assert all(e.level == "warning" for e in events.of("resilient.contradiction"))
    assert problems == list(fn.policy.warnings)
    assert any("shorter than one timeout" in p for p in problems)
    assert any("breaker stays open 60s" in p for p in problems)
    with capture_events() as quiet:
        pr.resilient(name="fine", timeout=1.0, retry=True)(tool)
    assert quiet.of("resilient.contradiction") == []
    with capture_events() as sync_budget:
        pr.resilient(name="nosync", deadline=5.0)(tool)
    (event,) = sync_budget.of("resilient.contradiction")
    assert "cannot stop a running attempt" in event.fields["problem"]
    with capture_events() as implicit:  # the retry deadline alone: no warning
        pr.resilient(name="implicit", retry=True)(tool)
    assert implicit.of("resilient.contradiction") == []


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"deadline": 0}, ValueError),
        ({"deadline": "5"}, TypeError),
        ({"retry_timeouts": -1}, ValueError),
        ({"retry_timeouts": True}, ValueError),
    ],
)
def test_new_options_are_validated(kwargs: dict[str, Any], error: type) -> None:
    with pytest.raises(error, match="resilient"):
        pr.resilient(name="bad", **kwargs)


# -- item 5: outcomes ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_outcome_of_a_success_after_retries(
    mode: str, fake_clock: FakeClock
) -> None:
    log: list[str] = []
    failures: list[BaseException] = [
        ConnectionResetError("a"),
        ConnectionResetError("b"),
    ]
    fn = pr.resilient(name="ok", retry={"attempts": 5})(operation(mode, log, failures))
    with pr.trace(run="r-1") as span:
        outcome = await invoke(fn.outcome, 21)
    assert outcome.ok
    assert outcome.value == 42
    assert outcome.failure is None
    assert outcome.attempts == 3
    assert outcome.fallback_used is False
    assert outcome.trace_id == span["trace_id"]
    assert outcome.elapsed == sum(fake_clock.sleeps)
    data = outcome.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["ok"] is True
    assert data["attempts"] == 3


@pytest.mark.parametrize("mode", MODES)
async def test_outcome_of_a_failure_with_and_without_fallback(
    mode: str, fake_clock: FakeClock
) -> None:
    def failing() -> list[BaseException]:
        return [OSError(f"token=sk-{i}abcdefghijklmnopqrstuvwx") for i in range(3)]

    log: list[str] = []
    bare = pr.resilient(name="bare", retry={"attempts": 3})(
        operation(mode, log, failing())
    )
    outcome = await invoke(bare.outcome, 1)
    assert not outcome.ok
    assert outcome.value is None
    assert outcome.failure is not None
    assert outcome.failure.kind == "transient"
    assert outcome.attempts == 3
    assert not outcome.fallback_used
    assert outcome.trace_id  # a trace of its own when none is active
    data = outcome.to_dict()
    assert data["failure"]["code"] == outcome.failure.code
    assert data["error_type"] == "OSError"
    assert "abcdefghijklmnopqrstuvwx" not in json.dumps(data)

    with capture_events() as events:
        guarded = pr.resilient(name="guarded", retry={"attempts": 2}, fallback=-1)(
            operation(mode, log, failing())
        )
        fell_back = await invoke(guarded.outcome, 1)
    assert not fell_back.ok
    assert fell_back.value == -1
    assert fell_back.fallback_used
    assert fell_back.attempts == 2
    assert isinstance(fell_back.error, OSError)
    assert len(events.of("error_boundary.caught")) == 1


async def test_outcome_attempts_are_per_call_and_per_stack(
    fake_clock: FakeClock,
) -> None:
    inner_failures: list[BaseException] = [
        ConnectionResetError(str(i)) for i in range(3)
    ]
    log: list[str] = []
    inner = pr.resilient(name="inner", retry={"attempts": 5})(
        operation("async", log, inner_failures)
    )

    @pr.resilient(name="outer", retry={"attempts": 5})
    async def outer(x: int) -> int:
        return int(await inner(x)) + 1

    results = await asyncio.gather(*(outer.outcome(i) for i in range(5)))
    # The nested stack retried 3 times in the first call: none of it counts
    # as an attempt of the outer stack.
    assert [o.attempts for o in results] == [1] * 5
    assert [o.value for o in results] == [i * 2 + 1 for i in range(5)]


async def test_on_result_through_resilient(fake_clock: FakeClock) -> None:
    answers = [None, None, "ready"]

    @pr.resilient(name="poll", retry={"on_result": lambda r: r is None})
    async def poll() -> str | None:
        return answers.pop(0)

    outcome = await poll.outcome()
    assert outcome.value == "ready"
    assert outcome.attempts == 3


# -- item 7: any event loop ------------------------------------------------------------------


def test_resilient_under_trio_answers_for_real() -> None:
    import trio

    calls = 0

    @pr.resilient(name="tool", timeout=1.0, retry=True, fallback="FALLBACK")
    async def tool(q: str) -> str:
        nonlocal calls
        calls += 1
        await trio.sleep(0)
        if calls == 1:
            raise ConnectionResetError("once")
        return f"real answer to {q}"

    async def main() -> tuple[str, Any]:
        with pr.testing.set_testing(True):
            return await tool("q"), await tool.outcome("r")

    answer, outcome = trio.run(main)
    assert answer == "real answer to q"  # before: "FALLBACK" on every call
    assert outcome.ok
    assert outcome.value == "real answer to r"


def test_resilient_under_trio_cancels_a_hanging_attempt() -> None:
    import trio

    @pr.resilient(name="tool", timeout=0.02, deadline=0.2, retry=True)
    async def hang() -> str:
        await trio.sleep(30)
        return "never"

    outcome = trio.run(hang.outcome)
    assert isinstance(outcome.error, pr.TimeoutExceeded)
    assert outcome.attempts == 2


def test_asyncio_only_layers_fail_loudly_under_trio_never_a_fallback() -> None:
    import trio

    ran: list[int] = []

    @pr.resilient(
        name="tool",
        retry=True,
        bulkhead=pr.Bulkhead("trio-bh", max_concurrent=1),
        fallback="FALLBACK",
    )
    async def tool() -> str:
        ran.append(1)
        return "real"

    with pytest.raises(pr.UnsupportedEventLoopError, match="Bulkhead 'trio-bh'"):
        trio.run(tool)
    assert ran == []


def test_an_unknown_loop_is_never_hidden_behind_a_fallback() -> None:
    @pr.resilient(name="tool", timeout=1.0, retry=True, fallback="FALLBACK")
    async def tool() -> str:
        return "real"

    coro = tool()
    with capture_events() as events, pytest.raises(pr.UnsupportedEventLoopError):
        coro.send(None)
    assert events.of("error_boundary.caught") == []
    # Permanent: one attempt, not retried (before: retried 5 times as
    # "UNCLASSIFIED", then hidden behind the fallback).
    failed = events.of("retry.attempt_failed")
    assert [e.fields["retryable"] for e in failed] == [False]
    with pytest.raises(pr.UnsupportedEventLoopError), pr.error_boundary():
        raise pr.UnsupportedEventLoopError(library="curio")


# -- property: the measured elapsed never exceeds the stated worst case ----------------------

_BEHAVIOURS = st.lists(
    st.one_of(
        st.tuples(st.just("ok"), st.floats(0, 3)),
        st.tuples(st.just("fail"), st.floats(0, 3)),
        st.tuples(st.just("permanent"), st.floats(0, 1)),
        st.tuples(st.just("retry_after"), st.floats(0, 40)),
        st.tuples(st.just("hang"), st.just(0.0)),
    ),
    min_size=1,
    max_size=6,
)
_RETRY = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {
            "attempts": st.one_of(st.none(), st.integers(1, 5)),
            "deadline": st.one_of(st.none(), st.floats(0.5, 20)),
            "wait_initial": st.floats(0, 2),
            "wait_extra": st.floats(0, 5),
            "jitter": st.sampled_from(["full", "equal", "none"]),
            "retry_after_max": st.one_of(st.none(), st.floats(0, 30)),
        }
    ),
)


def _retry_options(drawn: dict[str, Any] | None) -> dict[str, Any] | None:
    if drawn is None:
        return None
    options = dict(drawn)
    if options["attempts"] is None and options["deadline"] is None:
        options["attempts"] = 3
    options["wait_max"] = options["wait_initial"] + options.pop("wait_extra")
    options["seed"] = 1
    return options


def _scripted(
    behaviours: list[tuple[str, float]], clock: FakeClock, mode: str
) -> Callable[..., Any]:
    plan = list(behaviours)

    def step() -> tuple[str, float]:
        return plan.pop(0) if plan else ("ok", 0.0)

    def outcome_of(kind: str, value: float) -> str:
        if kind == "fail":
            raise ConnectionResetError("scripted")
        if kind == "permanent":
            raise ValueError("scripted")
        if kind == "retry_after":
            raise pr.RateLimitedError("scripted", retry_after=value)
        return "done"

    async def aop() -> str:
        kind, value = step()
        if kind == "hang":
            await asyncio.sleep(1e9)
        elif kind in ("ok", "fail", "permanent"):
            await asyncio.sleep(value)
        return outcome_of(kind, value)

    def op() -> str:
        # Sync code cannot be stopped: it is cooperative here, as documented
        # (it takes at most what is left of its budget, then times out).
        kind, value = step()
        left = pr.remaining()
        if kind == "hang":
            assert left is not None
            clock.advance(left)
            raise pr.TimeoutExceeded("scripted hang")
        if kind in ("ok", "fail", "permanent"):
            if left is not None and value > left:
                clock.advance(left)
                raise pr.TimeoutExceeded("scripted overrun")
            clock.advance(value)
        return outcome_of(kind, value)

    return aop if mode == "async" else op


@settings(max_examples=150, deadline=None)
@given(
    mode=st.sampled_from(MODES),
    timeout=st.one_of(st.none(), st.floats(0.1, 5)),
    deadline=st.one_of(st.none(), st.floats(0.5, 20)),
    retry=_RETRY,
    retry_timeouts=st.integers(0, 3),
    fallback=st.booleans(),
    behaviours=_BEHAVIOURS,
)
def test_elapsed_never_exceeds_the_stated_worst_case(
    mode: str,
    timeout: float | None,
    deadline: float | None,
    retry: dict[str, Any] | None,
    retry_timeouts: int,
    fallback: bool,
    behaviours: list[tuple[str, float]],
) -> None:
    clock = FakeClock()
    options: dict[str, Any] = {"fallback": "fb"} if fallback else {}
    with capture_events():  # contradictions are expected among random configs
        fn = pr.resilient(
            name="prop",
            timeout=timeout,
            deadline=deadline,
            retry=_retry_options(retry),
            retry_timeouts=retry_timeouts,
            **options,
        )(_scripted(behaviours, clock, mode))
    policy = fn.policy
    worst = policy.worst_case_seconds
    hangs = any(kind == "hang" for kind, _ in behaviours)
    slow = any(kind in ("ok", "fail", "permanent") and v > 0 for kind, v in behaviours)
    # An unbounded stack with a hanging operation would hang the test itself.
    assume(not math.isinf(worst) or not hangs)
    if mode == "sync":
        # The cooperative sync script needs a budget to time out against.
        assume(not (hangs or slow) or policy.deadline is not None)
    roles = [layer.role for layer in policy.layers]
    assert roles[-1] == "operation"
    assert ("retry" in roles) is (retry is not None)
    assert ("error_boundary" in roles) is fallback
    assert ("deadline" in roles) is (policy.deadline is not None)
    assert ("timeout" in roles) is (
        timeout is not None or (mode == "async" and policy.deadline is not None)
    )
    assert len(policy.describe().splitlines()) == 1 + len(roles) + len(policy.warnings)
    with pr.testing.set_testing(False), capture_events():
        if mode == "async":
            outcome = run_in_fake_time(clock, fn.outcome())
        else:
            with clock.install():
                outcome = fn.outcome()
    assert outcome.elapsed <= worst + 1e-9, policy.describe()
    assert outcome.fallback_used is (fallback and not outcome.ok)


def test_store_backed_primitives_fail_loudly_under_trio(tmp_path: Any) -> None:
    import trio

    store = pr.SQLiteStore(tmp_path / "state.db")
    breaker = pr.CircuitBreaker("trio-store", store=store)
    limiter = pr.RateLimiter("trio-store", rate=10, per=1.0, store=store)
    ran: list[int] = []

    async def work() -> None:
        ran.append(1)

    async def main() -> list[str]:
        errors = []
        for call in (lambda: breaker.acall(work), limiter.aacquire):
            try:
                await call()
            except pr.UnsupportedEventLoopError as exc:
                errors.append(str(exc))
        return errors

    try:
        errors = trio.run(main)
    finally:
        store.close()
    assert len(errors) == 2
    assert all("supports only asyncio" in e for e in errors)
    assert ran == []


async def test_resilient_methods_bind_and_outcome_takes_the_instance() -> None:
    class Tools:
        def __init__(self) -> None:
            self.seen: list[str] = []

        @pr.resilient(name="tools.count", retry=True)
        def count(self, items: list[str]) -> int:
            self.seen.extend(items)
            return len(items)

        @pr.resilient(name="tools.acount", timeout=1.0)
        async def acount(self, items: list[str]) -> int:
            return len(items) * 2

    tools = Tools()
    assert tools.count(["a", "b"]) == 2
    assert await tools.acount(["a"]) == 2
    assert Tools.count.outcome(tools, ["c"]).value == 1
    assert (await Tools.acount.outcome(tools, ["c"])).value == 2
    assert tools.seen == ["a", "b", "c"]
    assert tools.count.policy is Tools.count.policy
