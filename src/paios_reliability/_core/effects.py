"""One body for a sync and an async API: a generator of effects, two thin drivers.

The body is a generator. It yields each operation whose sync and async forms
differ (a store update, the caller's function, a wait for a child process)
and gets back the operation's result, or has its exception thrown in where
it yielded. :func:`run_effects` performs the operations with a function,
:func:`arun_effects` with a coroutine function; every decision between them
is written once, in the body.

An exception thrown in (a ``KeyboardInterrupt``, a cancellation) reaches
the body like one raised at the ``yield``: it can clean up (yield more
operations) and re-raise. One the body lets through reaches the caller
unchanged, a ``StopIteration`` included.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeGuard, TypeVar

__all__ = ["arun_effects", "run_effects"]

Op = TypeVar("Op")
R = TypeVar("R")


def _passed_on(
    thrown: BaseException | None, exc: RuntimeError
) -> TypeGuard[StopIteration]:
    """Whether ``exc`` is only the body letting the ``StopIteration`` thrown in through.

    A generator turns a ``StopIteration`` that leaves it into
    ``RuntimeError("generator raised StopIteration")`` (PEP 479); the
    drivers re-raise the operation's own error instead, as it was raised.
    """
    return isinstance(thrown, StopIteration) and exc.__cause__ is thrown


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
        except RuntimeError as exc:
            if not _passed_on(error, exc):
                raise
            stopped = error
            break
        value, error = None, None
        try:
            value = perform(op)
        except BaseException as exc:  # noqa: BLE001 - the body decides, then re-raises
            error = exc
    raise stopped  # outside the handler: no "during handling" chain to the RuntimeError


async def arun_effects(
    body: Generator[Op, Any, R], perform: Callable[[Op], Awaitable[Any]]
) -> R:
    """:func:`run_effects` with a coroutine function: never blocks the event loop.

    (A coroutine turns a ``StopIteration`` into a ``RuntimeError`` itself, so
    no ``StopIteration`` is thrown in here.)
    """
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
