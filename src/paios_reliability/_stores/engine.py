"""The engine every store-backed primitive drives.

Breaker, rate limiter, bulkhead, locks and idempotency keep only their state
transitions, as sans-IO step machines (:data:`Steps`); this module runs them
against a store (:func:`drive`, :func:`adrive`), finishes store calls that a
cancelled caller must not abandon half-way (:func:`complete`), and holds the
time units, TTLs and argument checks they share.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any, TypeVar

from .._core.events import emit
from .._core.exceptions import StoreUnavailableError
from ._memory import MemoryStore

if TYPE_CHECKING:
    from ..typing import Clock, StateStore

R = TypeVar("R")

# Keys expire this long after the state they hold stops mattering: expiry is
# garbage collection, never semantics, and the margin keeps a test's FakeClock
# (which may lag real time) from seeing state vanish early.
GC_MARGIN = 60.0
NS = 1_000_000_000


def resolve_store(store: StateStore | None) -> StateStore:
    """``store``, or a fresh private :class:`MemoryStore` when ``None``."""
    if store is None:
        return MemoryStore()
    for method in ("get", "update", "aget", "aupdate"):
        if not callable(getattr(store, method, None)):
            raise TypeError(
                f"store must implement paios_reliability.typing.StateStore "
                f"(missing {method}()), got {store!r}"
            )
    return store


def seconds_to_ns(seconds: float) -> int:
    """``seconds`` in whole nanoseconds (the unit of every stored time), rounded."""
    return round(seconds * NS)


def now_ns(clock: Clock, shared: bool) -> int:
    """The current time for state in a store, in integer nanoseconds.

    Shared state uses the wall clock, which every process and host agrees on;
    process-local state uses the monotonic clock, which never jumps. Integer
    nanoseconds keep comparisons exact in every store and every language.
    """
    return int((clock.time() if shared else clock.monotonic()) * NS)


def ttl_seconds(seconds_that_matter: float) -> float:
    """A key's TTL: the time its state matters plus the GC margin."""
    return max(0.0, seconds_that_matter) + GC_MARGIN


# -- argument checks shared by the protection primitives ---------------------------


# -- a store that cannot be reached --------------------------------------------------


def store_down(
    primitive: str, name: str, exc: StoreUnavailableError, *, fail_open: bool
) -> None:
    """Decide what a primitive does when its store cannot be reached on entry.

    Raises ``exc`` unchanged unless the primitive was built with
    ``fail_open=True``; then it emits ``<primitive>.store_unavailable``
    (error, ``fail_open=True``) and returns, and the caller lets the call
    through as if the primitive were not there.
    """
    if not fail_open:
        raise exc
    emit(
        primitive,
        "store_unavailable",
        level="error",
        subject=name,
        exc=exc,
        fail_open=True,
    )


def report_lost_write(primitive: str, action: str, name: str, exc: Exception) -> None:
    """Report a store write after the call that was lost (``<primitive>.<action>``).

    The call already ran and its outcome goes back to the caller; what the
    store missed expires on its own (lease TTLs, GC margins), so this only
    reports, at error level, and never raises.
    """
    emit(primitive, action, level="error", subject=name, exc=exc)


# -- async store calls that must not be abandoned half-way ----------------------------


async def complete(
    operation: Awaitable[R],
    undo: Callable[[R], Awaitable[object]] | None = None,
) -> R:
    """Await a store operation; if the caller is cancelled meanwhile, finish it.

    Shared stores run in a worker thread, which cancellation cannot stop: the
    update may land after the caller gave up (a probe permit issued, a slot
    taken). So on cancellation this waits for the operation to end, runs
    ``undo(result)`` when it succeeded, and then lets the cancellation
    propagate unchanged.
    """
    import asyncio

    from .._core.aio import require_asyncio

    require_asyncio("a shared state store", discard=operation)  # trio: clear error
    task = asyncio.ensure_future(operation)
    try:
        return await asyncio.shield(task)
    except BaseException:
        if not task.done():
            with contextlib.suppress(BaseException):
                await asyncio.wait((task,))
        if (
            undo is not None
            and task.done()
            and not task.cancelled()
            and task.exception() is None
        ):
            with contextlib.suppress(Exception):
                await undo(task.result())
        raise


Steps = Generator[tuple[str, Any], Any, R]
"""A sans-IO step machine: yields ``("sleep", seconds)`` or ``("update", fn)``
(``("update", (fn, ttl))`` to give that update its own TTL), receives the
reply of each update, and returns its result."""


def _update_args(arg: Any, ttl: float) -> tuple[Any, float]:
    return arg if isinstance(arg, tuple) else (arg, ttl)


def drive(
    steps: Steps[R],
    store: StateStore,
    key: str,
    *,
    ttl: float,
    clock: Clock,
    undo: Callable[[Any], tuple[Any, Any]] | None = None,
    catch: tuple[type[Exception], ...] = (),
) -> R:
    """Run ``steps`` against ``store`` (sync driver): sleeps and atomic updates.

    Args:
        steps: The step machine.
        store: Where the updates run.
        key: The one key every update of the machine changes.
        ttl: The key's TTL for updates that do not name their own.
        clock: Sleeps go through it.
        undo: A step that takes back whatever the machine's updates may have
            done for this caller. It runs when the machine is *interrupted*
            (``KeyboardInterrupt``, ``SystemExit``: anything not an
            ``Exception``), which can land after an update took effect but
            before its answer reached the caller: a lock or claim nobody
            would hold. Ordinary errors do not run it (the machine raises
            them knowing what it did; a store error leaves at most what a
            crash leaves: a lease that expires).
        catch: Store errors handed to the machine (thrown into it at its
            ``yield``) instead of ending the run, for machines that retry.
    """
    reply: Any = None
    error: BaseException | None = None
    try:
        while True:
            if error is None:
                kind, arg = steps.send(reply)
            else:
                kind, arg = steps.throw(error)
                error = None
            if kind == "sleep":
                clock.sleep(arg)
                reply = None
                continue
            fn, update_ttl = _update_args(arg, ttl)
            try:
                reply = store.update(key, fn, ttl=update_ttl)
            except catch as exc:
                error = exc
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    except BaseException as exc:
        if undo is not None and not isinstance(exc, Exception):
            with contextlib.suppress(Exception):
                store.update(key, undo, ttl=ttl)
        raise


async def adrive(
    steps: Steps[R],
    store: StateStore,
    key: str,
    *,
    ttl: float,
    clock: Clock,
    finish_on_cancel: bool = False,
    undo: Callable[[Any], tuple[Any, Any]] | None = None,
    catch: tuple[type[Exception], ...] = (),
) -> R:
    """:func:`drive` without blocking the event loop.

    With ``finish_on_cancel`` (implied by ``undo``), an update in flight when
    the caller is cancelled is still finished (see :func:`complete`), so
    clean-up sees what it did; ``undo`` then runs (also to completion) before
    the cancellation propagates.
    """
    finish = finish_on_cancel or undo is not None
    reply: Any = None
    error: BaseException | None = None
    try:
        while True:
            if error is None:
                kind, arg = steps.send(reply)
            else:
                kind, arg = steps.throw(error)
                error = None
            if kind == "sleep":
                await clock.asleep(arg)
                reply = None
                continue
            fn, update_ttl = _update_args(arg, ttl)
            try:
                if finish:
                    reply = await complete(store.aupdate(key, fn, ttl=update_ttl))
                else:
                    reply = await store.aupdate(key, fn, ttl=update_ttl)
            except catch as exc:
                error = exc
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    except BaseException as exc:
        if undo is not None and not isinstance(exc, Exception):
            with contextlib.suppress(Exception):
                await complete(store.aupdate(key, undo, ttl=ttl))
        raise
