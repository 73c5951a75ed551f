"""One body for a sync and an async API: a generator of effects, two thin drivers.

The body is a generator. It yields each operation whose sync and async forms
differ (a store update, the caller's function, a wait for a child process)
and gets back the operation's result, or has its exception thrown in where
it yielded. :func:`run_effects` performs the operations with a function,
:func:`arun_effects` with a coroutine function; every decision between them
is written once, in the body.

An exception thrown in (a ``KeyboardInterrupt``, a cancellation) reaches
the body like one raised at the ``yield``: it can clean up (yield more
operations) and re-raise.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

__all__ = ["arun_effects", "run_effects"]

Op = TypeVar("Op")
R = TypeVar("R")


def run_effects(body: Generator[Op, Any, R], perform: Callable[[Op], Any]) -> R:
    """Run ``body``, performing each operation it yields with ``perform``."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            op = body.send(value) if error is None else body.throw(error)
        except StopIteration as stop:
            result: R = stop.value
            return result
        value, error = None, None
        try:
            value = perform(op)
        except BaseException as exc:  # noqa: BLE001 - the body decides, then re-raises
            error = exc


async def arun_effects(
    body: Generator[Op, Any, R], perform: Callable[[Op], Awaitable[Any]]
) -> R:
    """:func:`run_effects` with a coroutine function: never blocks the event loop."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            op = body.send(value) if error is None else body.throw(error)
        except StopIteration as stop:
            result: R = stop.value
            return result
        value, error = None, None
        try:
            value = await perform(op)
        except BaseException as exc:  # noqa: BLE001 - the body decides, then re-raises
            error = exc
