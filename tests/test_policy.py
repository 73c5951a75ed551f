"""resilient(): layer order, per-attempt timeout, and a real MCP server and client."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import pytest

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
    assert calls_after_fault == 3
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
