"""Time budgets: ``deadline()`` blocks, ``remaining()`` and the ``timeout()`` decorator.

The innermost deadline lives in a :mod:`contextvars` variable as an absolute
reading of the clock's ``monotonic()``. Nested deadlines take the tighter one,
so an inner ``deadline(10)`` inside an outer ``deadline(1)`` still ends after
one second. Every primitive that waits (retry backoff, rate-limit waits,
bulkhead queues, breakers, subprocesses) reads :func:`remaining` and never
waits past it.

- ``async with deadline(s)`` really cancels the block when the budget runs out
  and raises :class:`TimeoutExceeded`; a cancellation that comes from outside
  the block passes through as :class:`asyncio.CancelledError`, untouched.
- ``with deadline(s)`` is cooperative: Python cannot interrupt a running
  thread, so it only sets the budget everything inside honours.
- ``@timeout(s)`` on a coroutine function is ``async with deadline(s)``; on a
  plain function it runs the call on a pooled worker thread and gives control
  back to the caller when the budget is spent (the worker is abandoned, still
  accounted for, and an event says so; see :mod:`._workers`).
- Under trio (through anyio) ``async with deadline(s)`` is an anyio cancel
  scope with the same budget; every other rule is the same.
"""

from __future__ import annotations

import contextvars
import functools
import math
import sys
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from .._core import clock as _clock
from .._core import settings as _config
from .._core.aio import library, running_asyncio_loop
from .._core.clock import get_clock
from .._core.dispatch import through_method_descriptors
from .._core.exceptions import TimeoutExceeded

if TYPE_CHECKING:
    import asyncio

    from .._core.exc_info import ExcType, ExcValue, Traceback

__all__ = ["deadline", "remaining", "timeout"]

P = ParamSpec("P")
T = TypeVar("T")

# Absolute deadline on the default clock's monotonic scale; None = no budget.
_current: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "paios_reliability_deadline", default=None
)
# The innermost deadline that will really cancel: (task, absolute deadline).
# A nested ``async with`` that is not tighter arms no timer of its own, so
# exactly one block - the one whose budget ran out - reports the timeout.
_armed: contextvars.ContextVar[tuple[object, float] | None] = contextvars.ContextVar(
    "paios_reliability_armed_deadline", default=None
)

if sys.version_info >= (3, 11):

    def _cancelling(task: asyncio.Task[Any]) -> int:
        return task.cancelling()

    def _is_ours(task: asyncio.Task[Any], cancelling_at_entry: int) -> bool:
        # Only our cancel is left to account for: anything above the count at
        # entry is someone else's cancellation, which must pass through.
        return task.uncancel() <= cancelling_at_entry

else:  # Python 3.10 has no cancel counting: our flag is all we can go by.

    def _cancelling(task: asyncio.Task[Any]) -> int:
        return 0

    def _is_ours(task: asyncio.Task[Any], cancelling_at_entry: int) -> bool:
        return True


_ASYNCIO: Any = None
_INF = math.inf


def _asyncio() -> Any:
    """The asyncio module, imported once it is needed (never at import time)."""
    global _ASYNCIO  # noqa: PLW0603 - a cache of a module reference
    if _ASYNCIO is None:
        import asyncio

        _ASYNCIO = asyncio
    return _ASYNCIO


def remaining() -> float | None:
    """Seconds left in the innermost deadline, or ``None`` when there is none.

    Never negative: a passed deadline reads ``0.0``. Cheap enough to call on
    every operation (one context-variable read and one clock read).
    """
    at = _current.get()
    if at is None:
        return None
    left = at - get_clock().monotonic()
    return left if left > 0.0 else 0.0


def current_deadline() -> float | None:
    """The innermost absolute deadline on the clock's monotonic scale, if any."""
    return _current.get()


def _check_number(seconds: float | None, what: str) -> float | None:
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"{what} must be a number of seconds, got {seconds!r}")
    if math.isnan(seconds) or seconds < 0:
        raise ValueError(f"{what} must be >= 0, got {seconds!r}")
    return float(seconds)


class deadline:  # noqa: N801 - used like a function: `with deadline(2.0):`
    """A time budget for a block: ``with`` (cooperative) or ``async with`` (cancels).

    Entering computes ``now + seconds`` and keeps the tighter of that and any
    enclosing deadline, so :func:`remaining` inside never exceeds an outer
    budget. Each ``with`` gets its own copy of the context: concurrent tasks
    and threads never see each other's deadlines.

    ``async with`` schedules a real cancellation of the current task at the
    deadline; the block's :class:`asyncio.CancelledError` is then turned into
    :class:`TimeoutExceeded`. A cancellation that did not come from this
    deadline (the caller cancelled the task, or an outer deadline fired) is
    re-raised untouched. On Python 3.10, which lacks ``Task.uncancel()``, an
    outer cancel arriving in the same instant as the timeout cannot be told
    apart and is reported as the timeout.

    Plain ``with`` cannot interrupt running code; it sets the budget that
    retries, rate limiters, bulkheads, breakers and :func:`run_process` inside
    the block honour. Use ``@timeout`` to bound an uncooperative sync call.

    Args:
        seconds: The budget, ``>= 0``; ``None`` adds no budget of its own (an
            enclosing one still applies) and ``math.inf`` means unbounded.
        name: What the block does, for the error message and the event.

    Attributes:
        seconds: The budget as given.
        expires_at: The effective absolute deadline (clock ``monotonic()``
            scale) while entered, else ``None``.

    Raises:
        TimeoutExceeded: From ``async with`` when the budget runs out.
        ValueError: If ``seconds`` is negative or NaN.
    """

    __slots__ = (
        "_own",
        "_scope",
        "_timer",
        "_token",
        "expires_at",
        "name",
        "seconds",
    )

    def __init__(self, seconds: float | None, *, name: str | None = None) -> None:
        self.seconds = _check_number(seconds, "deadline(seconds)")
        self.name = name
        self.expires_at: float | None = None
        self._token: contextvars.Token[float | None] | None = None
        self._timer: _Timer | None = None
        self._own = False
        self._scope: Any = None

    @classmethod
    def _checked(cls, seconds: float, name: str) -> deadline:
        """A new block for a number already validated (the timeout hot path)."""
        block = cls.__new__(cls)
        block.seconds, block.name, block.expires_at = seconds, name, None
        block._token = block._timer = block._scope = None
        block._own = False
        return block

    def __repr__(self) -> str:
        return f"deadline({self.seconds!r})"

    def remaining(self) -> float | None:
        """Seconds left in this block's effective budget (``None`` if unbounded)."""
        if self.expires_at is None:
            return None
        return max(0.0, self.expires_at - get_clock().monotonic())

    @property
    def expired(self) -> bool:
        """Whether the effective budget has run out (False when unbounded)."""
        left = self.remaining()
        return left is not None and left <= 0.0

    # -- sync -----------------------------------------------------------------

    def __enter__(self) -> deadline:
        if self._token is not None:
            raise RuntimeError(f"{self!r} is already entered; make a new one per block")
        outer = _current.get()
        at = outer
        self._own = False
        if self.seconds is not None and not math.isinf(self.seconds):
            mine = get_clock().monotonic() + self.seconds
            if outer is None or mine < outer:
                at, self._own = mine, True
        self.expires_at = at
        self._token = _current.set(at)
        return self

    def __exit__(self, *exc_info: object) -> None:
        token, self._token = self._token, None
        if token is not None:
            _current.reset(token)

    def _describe(self) -> str:
        if self._own and self.seconds is not None:
            return f"{self.seconds:g}s"
        return "an enclosing deadline"

    # -- async ----------------------------------------------------------------

    async def __aenter__(self) -> deadline:
        loop = running_asyncio_loop()
        if loop is None:
            return self._enter_scope()
        self.__enter__()
        at = self.expires_at
        if at is not None:
            self._timer = _arm(loop, at, get_clock().monotonic())
        return self

    def _enter_scope(self) -> deadline:
        """``async with`` under trio: an anyio cancel scope ending at our deadline."""
        library("async with deadline(...)")  # a clear error on other loops
        import anyio

        self.__enter__()
        at = self.expires_at
        if at is not None:
            delay = max(0.0, at - get_clock().monotonic())
            scope = anyio.CancelScope(deadline=anyio.current_time() + delay)
            scope.__enter__()
            self._scope = scope
        return self

    def _exit_scope(
        self,
        scope: Any,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            scope.__exit__(exc_type, exc, tb)
        finally:
            self.__exit__(None, None, None)
        # Only a cancellation of this very scope is ours; an outer one passes.
        if scope.cancelled_caught:
            self._raise_exceeded("anyio", exc)

    def _raise_exceeded(self, mode: str, exc: BaseException | None) -> None:
        raise _exceeded(self.name, self.seconds, self._describe(), mode) from exc

    async def __aexit__(self, exc_type: ExcType, exc: ExcValue, tb: Traceback) -> None:
        scope, self._scope = self._scope, None
        if scope is not None:
            self._exit_scope(scope, exc_type, exc, tb)
            return
        timer, self._timer = self._timer, None
        self.__exit__(exc_type, exc, tb)
        if timer is not None and _disarm(timer, exc):
            self._raise_exceeded("async", exc)


class _Timer:
    """One armed asyncio deadline: cancels its task when it fires."""

    __slots__ = ("armed_token", "cancelling", "fired", "handle", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.fired = False
        self.cancelling = _cancelling(task)
        self.handle: asyncio.Handle | None = None
        self.armed_token: contextvars.Token[tuple[object, float] | None] | None = None

    def __call__(self) -> None:
        task = self.task
        if not task.done():
            self.fired = True
            task.cancel()


def _arm(loop: asyncio.AbstractEventLoop, at: float, now: float) -> _Timer | None:
    """Cancel the current task at ``at`` (clock scale), unless an enclosing
    block of the same task already cancels no later (one timer, one report).
    """
    task = _asyncio().current_task(loop)
    if task is None:  # pragma: no cover - only outside a task (raw coroutine)
        raise RuntimeError("an asyncio deadline must run inside an asyncio task")
    armed = _armed.get()
    if armed is not None and armed[0] is task and armed[1] <= at:
        return None
    timer = _Timer(task)
    timer.armed_token = _armed.set((task, at))
    delay = at - now
    # Already spent: cancel at the first await, as asyncio.timeout does.
    timer.handle = (
        loop.call_soon(timer)
        if delay <= 0
        else loop.call_at(loop.time() + delay, timer)
    )
    return timer


def _disarm(timer: _Timer, exc: BaseException | None) -> bool:
    """Stop the timer; True when ``exc`` is the cancellation it caused."""
    assert timer.handle is not None
    timer.handle.cancel()
    if timer.armed_token is not None:
        _armed.reset(timer.armed_token)
    if not timer.fired:
        return False
    # Only our cancel is left to account for; a cancellation from outside
    # (caller, outer deadline) must pass through untouched.
    ours = _is_ours(timer.task, timer.cancelling)
    return ours and isinstance(exc, _asyncio().CancelledError)


def _exceeded(
    name: str | None, seconds: float | None, budget: str, mode: str
) -> TimeoutExceeded:
    from .._core.events import emit

    emit(
        "timeout", "exceeded", level="warning", subject=name, seconds=seconds, mode=mode
    )
    what = f"{name}()" if name else "block"
    return TimeoutExceeded(
        f"{what} ran past its deadline of {budget}",
        seconds=seconds,
        context={"function": name} if name else None,
    )


class timeout:  # noqa: N801 - used like a function: `@timeout(2.0)`
    """Bound every call of a function to ``seconds`` (and any enclosing deadline).

    Coroutine functions run under ``async with deadline(seconds)``: the call is
    really cancelled when the budget runs out and :class:`TimeoutExceeded` is
    raised; a cancellation of the caller passes through as
    :class:`asyncio.CancelledError` (under trio: its own ``Cancelled``).

    Plain functions run on a pooled daemon worker thread (with a copy of the
    caller's context, so the deadline, trace ids and other context variables
    are visible inside). The caller waits at most the budget; when it runs out
    the worker is *abandoned* - Python cannot kill a thread, so it keeps
    running to completion in the background and its result is dropped - a
    ``timeout.abandoned`` event is emitted and :class:`TimeoutExceeded` is
    raised with the still-running job in its ``worker`` attribute
    (``done()``, ``wait()``, ``add_done_callback()``). ``timeout.abandoned_finished``
    follows when the job really ends. Control returns within the budget plus
    thread wake-up latency (well under 50 ms). Prefer cooperative code (read
    :func:`remaining`, pass it to your client's timeout) so abandoned work
    does not pile up: at most 32 abandoned calls may run at once per process
    (the gauge ``paios_reliability_timeout_abandoned_workers`` counts them);
    past that a call is refused with :class:`BulkheadFullError` before it
    starts. A call whose budget is already spent (an enclosing deadline ran
    out) is not started at all.

    With the policies switched off (:func:`set_active(False)
    <paios_reliability.set_active>`) the function is called straight through.

    Args:
        seconds: The per-call budget, ``> 0`` (``math.inf``: only an enclosing
            deadline applies).

    Raises:
        TimeoutExceeded: From the decorated function when a call runs out of
            time, or is not started because its budget was already spent.
        BulkheadFullError: Sync only: too many abandoned calls still run.
        ValueError: If ``seconds`` is not positive.
    """

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        checked = _check_number(seconds, "timeout(seconds)")
        if checked is None or checked <= 0:
            raise ValueError(f"timeout(seconds) must be > 0, got {seconds!r}")
        self.seconds = checked

    def __repr__(self) -> str:
        return f"timeout({self.seconds!r})"

    @through_method_descriptors
    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        from .._core.dispatch import callable_name, is_async_callable

        seconds = self.seconds
        name = callable_name(fn)
        config, var, clocks = _config, _current, _clock
        new_block = deadline._checked
        running_loop, arm, disarm = running_asyncio_loop, _arm, _disarm

        if is_async_callable(fn):
            afn = cast(Callable[P, Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                if not config._state.active:
                    return await afn(*args, **kwargs)
                loop = running_loop()
                now = clocks._default.monotonic()
                outer = var.get()
                if outer is not None and outer <= now:
                    raise _not_started(name, seconds)
                if loop is None:  # trio, or a clear error for other loops
                    async with new_block(seconds, name):
                        return await afn(*args, **kwargs)
                # asyncio: the same timer as `async with deadline`, without
                # the two extra coroutines of the `async with` protocol.
                mine = now + seconds
                own = outer is None or mine < outer
                at = mine if outer is None or mine < outer else outer
                if at == _INF:
                    return await afn(*args, **kwargs)
                token = var.set(at)
                timer = arm(loop, at, now)
                try:
                    result = await afn(*args, **kwargs)
                except BaseException as exc:
                    var.reset(token)
                    if timer is not None and disarm(timer, exc):
                        budget = f"{seconds:g}s" if own else "an enclosing deadline"
                        raise _exceeded(name, seconds, budget, "async") from exc
                    raise
                var.reset(token)
                if timer is not None:
                    disarm(timer, None)
                return result

            return cast(Callable[P, T], async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            if not config._state.active:
                return fn(*args, **kwargs)
            return call_in_thread(fn, seconds, name, args, kwargs)

        return wrapper


def _not_started(name: str, seconds: float) -> TimeoutExceeded:
    return TimeoutExceeded(
        f"{name}() was not started: the enclosing deadline was already spent",
        seconds=seconds,
        context={"function": name, "started": False},
    )


def call_in_thread(
    fn: Callable[..., T],
    seconds: float,
    name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> T:
    """Run ``fn`` on a pooled worker thread; wait at most the effective budget.

    Raises:
        TimeoutExceeded: When the budget runs out first (the worker is
            abandoned and travels on the error), or was spent before the start.
        BulkheadFullError: Too many abandoned calls still run in this process.
    """
    from .workers import run_bounded

    outer = _current.get()
    now = _clock._default.monotonic()
    mine = now + seconds
    own = outer is None or mine < outer
    at = mine if own else outer
    assert at is not None
    budget = at - now
    if own and math.isinf(seconds):
        budget = math.inf
    token = _current.set(at if not math.isinf(at) else outer)
    try:
        ctx = contextvars.copy_context()
    finally:
        _current.reset(token)
    if math.isinf(budget):
        # No budget at all: run on the caller's thread, nothing to bound.
        return ctx.run(fn, *args, **kwargs)
    return run_bounded(
        fn,
        name,
        args,
        kwargs,
        seconds=seconds,
        budget=budget,
        ctx=ctx,
        describe=lambda: _fmt_budget(seconds, budget, own=own),
    )


def _fmt_budget(seconds: float, budget: float | None, *, own: bool) -> str:
    if not own and budget is not None:
        return f"the {budget:.3g}s left of an enclosing deadline"
    return f"{seconds:g}s"
