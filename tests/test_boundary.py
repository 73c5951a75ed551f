"""error_boundary(): catches Exception only, records it, returns the fallback."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
from collections.abc import Callable
from typing import Any

import pytest

import paios_reliability as pr
from paios_reliability.testing import capture_events

MODES = ["sync", "async"]


def raising(mode: str, exc: BaseException, value: object = "ok") -> Callable[..., Any]:
    """A function (sync or async) raising ``exc``, or returning ``value`` if exc is None."""

    def work(*args: Any) -> object:
        if exc is not None:
            raise exc
        return value

    if mode == "sync":
        return work

    @functools.wraps(work)
    async def awork(*args: Any) -> object:
        await asyncio.sleep(0)
        return work(*args)

    return awork


async def invoke(fn: Callable[..., Any], *args: Any) -> Any:
    result = fn(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


@pytest.mark.parametrize("mode", MODES)
async def test_success_passes_through(mode: str) -> None:
    fn = pr.error_boundary(fallback="fallback")(raising(mode, None, value=5))  # type: ignore[arg-type]
    with capture_events() as events:
        assert await invoke(fn) == 5
    assert list(events) == []


@pytest.mark.parametrize("mode", MODES)
async def test_exception_becomes_fallback_value_and_an_audited_event(mode: str) -> None:
    error = ConnectionResetError(
        "upstream reset, token=sk-abcdefghijklmnopqrstuvwxyz123456"
    )
    fn = pr.error_boundary(fallback={"ok": False}, name="tool.fetch")(
        raising(mode, error)
    )
    with pr.trace(run_id="run-7") as span, capture_events() as events:
        assert await invoke(fn) == {"ok": False}
    (event,) = events
    assert event.name == "paios_reliability.error_boundary.caught"
    assert event.level == "error"
    assert event.subject == "tool.fetch"
    assert event.exc is error
    assert event.trace["run_id"] == "run-7"
    assert event.trace["trace_id"] == span["trace_id"]
    audit = event.fields["audit"]
    json.dumps(audit)  # JSON-safe
    assert audit["code"] == "CONNECTION_RESET"
    assert audit["kind"] == "transient"
    assert audit["run_id"] == "run-7"
    assert audit["context"]["boundary"] == "tool.fetch"
    assert "sk-abcdefghijklmnopqrstuvwxyz123456" not in json.dumps(audit)
    assert event.fields["code"] == "CONNECTION_RESET"
    assert event.fields["mode"] == mode


@pytest.mark.parametrize("mode", MODES)
async def test_callable_fallback_gets_the_exception(mode: str) -> None:
    error = ValueError("bad input")
    fn = pr.error_boundary(fallback=lambda exc: f"error: {exc}")(raising(mode, error))
    assert await invoke(fn) == "error: bad input"


async def test_async_fallback_is_awaited() -> None:
    async def fallback(exc: BaseException) -> str:
        await asyncio.sleep(0)
        return type(exc).__name__

    fn = pr.error_boundary(fallback=fallback)(raising("async", KeyError("k")))
    assert await fn() == "KeyError"


@pytest.mark.parametrize("mode", MODES)
async def test_a_failing_fallback_propagates_chained(mode: str) -> None:
    error = OSError("first")

    def fallback(exc: BaseException) -> None:
        raise RuntimeError("fallback broke")

    fn = pr.error_boundary(fallback=fallback)(raising(mode, error))
    with pytest.raises(RuntimeError, match="fallback broke") as info:
        await invoke(fn)
    assert info.value.__context__ is error


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "stop", [KeyboardInterrupt, SystemExit, asyncio.CancelledError, GeneratorExit]
)
async def test_stop_requests_always_propagate(
    mode: str, stop: type[BaseException]
) -> None:
    fn = pr.error_boundary(fallback="nope")(raising(mode, stop()))
    with capture_events() as events, pytest.raises(stop):
        await invoke(fn)
    assert list(events) == []


@pytest.mark.parametrize("mode", MODES)
async def test_switched_off_lets_errors_propagate(mode: str) -> None:
    fn = pr.error_boundary(fallback="nope")(raising(mode, OSError("x")))
    with pr.set_active(False), pytest.raises(OSError):
        await invoke(fn)


def test_block_suppresses_and_records() -> None:
    boundary = pr.error_boundary(name="nightly.cleanup")
    with capture_events() as events, boundary as caught:
        raise OSError("disk hiccup")
    assert caught is boundary
    assert isinstance(boundary.error, OSError)
    (event,) = events
    assert event.subject == "nightly.cleanup"
    assert event.fields["mode"] == "block"
    with boundary:
        pass
    assert boundary.error is None


async def test_async_block_suppresses_and_records() -> None:
    with capture_events() as events:
        async with pr.error_boundary() as boundary:
            await asyncio.sleep(0)
            raise KeyError("k")
    assert isinstance(boundary.error, KeyError)
    assert events[0].subject == "error_boundary"


@pytest.mark.parametrize(
    "stop", [KeyboardInterrupt, SystemExit, asyncio.CancelledError]
)
async def test_block_never_swallows_stop_requests(stop: type[BaseException]) -> None:
    with pytest.raises(stop), pr.error_boundary():
        raise stop()
    with pytest.raises(stop):
        async with pr.error_boundary():
            raise stop()


def test_block_switched_off_propagates() -> None:
    with pr.set_active(False), pytest.raises(OSError), pr.error_boundary():
        raise OSError("x")


def test_signature_docstring_and_coroutine_nature_are_kept() -> None:
    def plain(a: int, *, b: str = "x") -> str:
        """Plain."""
        return b * a

    async def coro(a: int, *, b: str = "x") -> str:
        """Coro."""
        return b * a

    for fn in (plain, coro):
        wrapped = pr.error_boundary(fallback="")(fn)
        assert inspect.signature(wrapped) == inspect.signature(fn)
        assert wrapped.__doc__ == fn.__doc__
        assert wrapped.__annotations__ == fn.__annotations__
        assert inspect.iscoroutinefunction(wrapped) is inspect.iscoroutinefunction(fn)


@pytest.mark.parametrize("mode", MODES)
async def test_an_unsupported_event_loop_is_never_turned_into_a_fallback(
    mode: str,
) -> None:
    error = pr.UnsupportedEventLoopError("no loop here", library="curio")
    fn = pr.error_boundary(fallback="FALLBACK")(raising(mode, error))
    with capture_events() as events, pytest.raises(pr.UnsupportedEventLoopError):
        await invoke(fn)
    with pytest.raises(pr.UnsupportedEventLoopError), pr.error_boundary():
        raise error
    assert list(events) == []


def test_the_boundary_works_under_trio() -> None:
    import trio

    @pr.error_boundary(fallback=lambda exc: f"caught {type(exc).__name__}")
    async def tool() -> str:
        await trio.sleep(0)
        raise ConnectionResetError("x")

    async def main() -> tuple[str, Exception | None]:
        async with pr.error_boundary() as block:
            await trio.sleep(0)
            raise KeyError("k")
        return await tool(), block.error

    value, error = trio.run(main)
    assert value == "caught ConnectionResetError"
    assert isinstance(error, KeyError)
