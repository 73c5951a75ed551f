"""The sync and async effect drivers shared by one-body primitives."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import pytest

from paios_reliability._core.effects import arun_effects, run_effects


def _passes_on() -> Generator[str, Any, str]:
    """A body that lets its operation's error through untouched."""
    return (yield "op")


def _recovers() -> Generator[str, Any, str]:
    """A body that answers an operation's error itself."""
    try:
        yield "op"
    except StopIteration:
        return "recovered"
    return "done"


def _sync(error: BaseException) -> Callable[[str], Any]:
    def perform(op: str) -> Any:
        raise error

    return perform


def _async(error: BaseException) -> Callable[[str], Awaitable[Any]]:
    async def perform(op: str) -> Any:
        raise error

    return perform


@pytest.mark.parametrize(
    "error", [StopIteration("boom"), ValueError("bad"), KeyboardInterrupt()]
)
def test_an_error_the_body_lets_through_reaches_the_caller_unchanged(
    error: BaseException,
) -> None:
    with pytest.raises(type(error)) as raised:
        run_effects(_passes_on(), _sync(error))
    assert raised.value is error
    # Not chained to the RuntimeError a generator makes of a StopIteration.
    assert not isinstance(raised.value.__context__, RuntimeError)

    if isinstance(error, StopIteration):
        return  # a coroutine makes a RuntimeError of it before the driver sees it
    with pytest.raises(type(error)) as araised:
        asyncio.run(arun_effects(_passes_on(), _async(error)))
    assert araised.value is error


def test_a_body_can_still_answer_a_stop_iteration() -> None:
    assert run_effects(_recovers(), _sync(StopIteration())) == "recovered"


def test_a_stop_iteration_the_body_raises_itself_stays_a_runtime_error() -> None:
    def body() -> Generator[str, Any, None]:
        yield "op"
        raise StopIteration("a bug in the body")

    with pytest.raises(RuntimeError, match="generator raised StopIteration"):
        run_effects(body(), lambda op: None)
