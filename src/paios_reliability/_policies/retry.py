"""Retries: ``@retry(...)`` and ``retry_context(...)``, on top of tenacity.

The shape follows stamina. Only failures the classifier calls *transient* are
retried (``on=is_retryable``), attempts and total time are bounded by default,
backoff is exponential with full jitter and clamped, and the caller always gets
the **last original exception** back, unchanged (the attempt history is added
as a note), never a wrapper.

How it is built:

- The first attempt is a plain call inside ``try``. A call that succeeds at
  once never touches tenacity; that is the success path, and it costs well
  under a microsecond.
- The first failure builds a per-call :class:`_Run` (the state machine: record
  the failure, decide retry/give up and how long to wait) and a tenacity
  ``Retrying`` / ``AsyncRetrying`` loop whose ``retry``/``stop``/``wait``/
  ``sleep`` callbacks all ask that :class:`_Run`. The failure that already
  happened is fed in as tenacity's first attempt, so attempt numbers line up.
- One iterator (:class:`_Attempts`) implements both ``__next__`` and
  ``__anext__``; the sync and async decorator drivers and ``retry_context``
  are a few lines each over it.

Nothing here is shared between calls: every call has its own :class:`_Run`,
so concurrent coroutines and threads never see each other's attempt counts.
"""

from __future__ import annotations

import copy
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, cast

from .._core import clock as _clock
from .._core import settings as _config
from .._core.dispatch import (
    callable_name,
    is_async_callable,
    through_method_descriptors,
)
from .._core.taxonomy import is_retryable
from .retry_policy import Jitter, RetryOn, _Policy, compute_backoff
from .retry_run import Attempt, ResultRejected, _Attempts, _Run
from .timeout import _current as _deadline_var

if TYPE_CHECKING:
    from .budget import RetryBudget

__all__ = [
    "Attempt",
    "Jitter",
    "RetryContext",
    "compute_backoff",
    "retry",
    "retry_context",
]

P = ParamSpec("P")
T = TypeVar("T")


# -- public API ------------------------------------------------------------------


class RetryContext:
    """Retry a block: ``for attempt in ...: with attempt:`` or ``async for``.

    Returned by :func:`retry_context`. Each iteration (each ``for`` loop) is an
    independent run with its own attempts, so one object can be reused.
    """

    __slots__ = ("_name", "_policy")

    def __init__(self, policy: _Policy, name: str) -> None:
        self._policy = policy
        self._name = name

    def __repr__(self) -> str:
        return f"<RetryContext {self._name!r} {self._policy!r}>"

    def __iter__(self) -> Iterator[Attempt]:
        return self._attempts() if _config.is_active() else _once()

    def __aiter__(self) -> AsyncIterator[Attempt]:
        return self._attempts() if _config.is_active() else _AsyncOnce()

    def _attempts(self) -> _Attempts:
        return _Attempts(_Run(self._policy, self._name))


class _PassThrough(Attempt):
    """The single attempt of a switched-off policy: nothing is suppressed."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> Literal[False]:
        return False


def _once() -> Iterator[Attempt]:
    yield _PassThrough(cast(_Run, None), 1, None)


class _AsyncOnce:
    __slots__ = ("_done",)

    def __init__(self) -> None:
        self._done = False

    def __aiter__(self) -> _AsyncOnce:
        return self

    async def __anext__(self) -> Attempt:
        if self._done:
            raise StopAsyncIteration
        self._done = True
        return _PassThrough(cast(_Run, None), 1, None)


def retry_context(
    *,
    on: RetryOn = is_retryable,
    attempts: int | None = 5,
    deadline: float | None = 30.0,
    wait_initial: float = 0.1,
    wait_max: float = 10.0,
    wait_exp_base: float = 2.0,
    jitter: Jitter = "full",
    seed: int | None = None,
    name: str = "retry_context",
    retry_after_max: float | None = None,
    overlap_abandoned: bool = False,
) -> RetryContext:
    """Retry a block of code with the same policy as :func:`retry`.

    Example::

        for attempt in retry_context(attempts=3):
            with attempt:
                fetch()

    ``async for`` works the same and sleeps without blocking the event loop.
    Arguments are those of :func:`retry` (except ``on_result``, which a block
    has no result for), plus ``name`` for events and notes.

    Raises:
        Exception: The last exception of the block, unchanged, when retrying ends.
        ValueError: On unbounded or invalid settings.
    """
    policy = _Policy(
        on=on,
        attempts=attempts,
        deadline=deadline,
        wait_initial=wait_initial,
        wait_max=wait_max,
        wait_exp_base=wait_exp_base,
        jitter=jitter,
        seed=seed,
        stacklevel=3,
        retry_after_max=retry_after_max,
        overlap_abandoned=overlap_abandoned,
    )
    return RetryContext(policy, name)


class _Retry:
    """What :func:`retry` returns: a decorator that also tells its settings."""

    __slots__ = ("name", "policy")

    def __init__(self, policy: _Policy, name: str | None) -> None:
        self.policy = policy
        self.name = name

    def __repr__(self) -> str:
        return repr(self.policy)

    @through_method_descriptors
    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        return self.decorate(fn)

    def with_deadline(self, seconds: float) -> _Retry:
        """The same settings with another deadline (``resilient``'s budget)."""
        policy = copy.copy(self.policy)
        policy.deadline = seconds
        policy.budget = seconds or None
        return _Retry(policy, self.name)

    def with_budget(self, budget: RetryBudget) -> _Retry:
        """The same settings drawing on a shared :class:`RetryBudget`."""
        policy = copy.copy(self.policy)
        policy.retry_budget = budget
        return _Retry(policy, self.name)

    def decorate(
        self,
        fn: Callable[P, T],
        *,
        room: float = 0.0,
        retry_timeouts: int | None = None,
        stack: object = None,
    ) -> Callable[P, T]:
        """Wrap ``fn``; ``resilient`` passes what it knows about the stack.

        Args:
            fn: The function.
            room: Seconds an attempt needs (the per-attempt timeout): a
                ``retry_after`` wait must leave that much of the budget.
            retry_timeouts: Give up after this many timed-out attempts.
            stack: Identity of the ``resilient`` stack, so ``outcome()``
                learns the attempt count of this call (and of no other).
        """
        policy = self.policy
        label = self.name or callable_name(fn)
        budget = policy.budget
        check = policy.on_result

        def run_for(start: float, error: Exception, is_async: bool) -> _Run:
            return _Run(
                policy,
                label,
                start=start,
                first_error=error,
                room=room,
                retry_timeouts=retry_timeouts,
                stack=stack,
                is_async=is_async,
            )

        spend = policy.retry_budget
        if is_async_callable(fn):
            return _async_driver(fn, budget, check, run_for, spend)
        return _sync_driver(fn, budget, check, run_for, spend)


# The drivers' success path reads the switches, the clock and the deadline
# directly (no helper calls): it is what every healthy call pays.


def _async_driver(
    fn: Callable[P, T],
    budget: float | None,
    check: Callable[[Any], bool] | None,
    run_for: Callable[[float, Exception, bool], _Run],
    spend: RetryBudget | None = None,
) -> Callable[P, T]:
    afn = cast(Callable[P, Awaitable[Any]], fn)
    config, clocks, var = _config, _clock, _deadline_var
    system, monotonic = _clock.SYSTEM_CLOCK, time.monotonic

    @functools.wraps(fn)
    async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        if not config._state.active:
            return await afn(*args, **kwargs)
        if spend is not None:
            due = spend._count_call()
            if due is not None:
                await spend._aflush(due)
        clock = clocks._default
        start = monotonic() if clock is system else clock.monotonic()
        token = None
        if budget is not None:
            mine, outer = start + budget, var.get()
            token = var.set(mine if outer is None or mine < outer else outer)
        try:
            result = await afn(*args, **kwargs)
            if check is None or not check(result):
                return result
            error: Exception = ResultRejected(result)
        except Exception as exc:  # noqa: BLE001 - decided by the policy
            error = exc
        finally:
            if token is not None:
                var.reset(token)
        run = run_for(start, error, True)
        try:
            async for attempt in _Attempts(run):
                with attempt:
                    result = await afn(*args, **kwargs)
                    if check is not None and check(result):
                        raise ResultRejected(result)
                    return result
        except ResultRejected as rejected:
            return run.exhausted(rejected)
        raise AssertionError(
            "unreachable: retrying ends by return or raise"
        )  # pragma: no cover

    return cast(Callable[P, T], async_wrapper)


def _sync_driver(
    fn: Callable[P, T],
    budget: float | None,
    check: Callable[[Any], bool] | None,
    run_for: Callable[[float, Exception, bool], _Run],
    spend: RetryBudget | None = None,
) -> Callable[P, T]:
    config, clocks, var = _config, _clock, _deadline_var
    system, monotonic = _clock.SYSTEM_CLOCK, time.monotonic

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        if not config._state.active:
            return fn(*args, **kwargs)
        if spend is not None:
            spend.deposit()
        clock = clocks._default
        start = monotonic() if clock is system else clock.monotonic()
        token = None
        if budget is not None:
            mine, outer = start + budget, var.get()
            token = var.set(mine if outer is None or mine < outer else outer)
        try:
            result = fn(*args, **kwargs)
            if check is None or not check(result):
                return result
            error: Exception = ResultRejected(result)
        except Exception as exc:  # noqa: BLE001 - decided by the policy
            error = exc
        finally:
            if token is not None:
                var.reset(token)
        run = run_for(start, error, False)
        try:
            for attempt in _Attempts(run):
                with attempt:
                    result = fn(*args, **kwargs)
                    if check is not None and check(result):
                        raise ResultRejected(result)
                    return result
        except ResultRejected as rejected:
            return cast(T, run.exhausted(rejected))
        raise AssertionError(
            "unreachable: retrying ends by return or raise"
        )  # pragma: no cover

    return wrapper


def retry(
    *,
    on: RetryOn = is_retryable,
    attempts: int | None = 5,
    deadline: float | None = 30.0,
    wait_initial: float = 0.1,
    wait_max: float = 10.0,
    wait_exp_base: float = 2.0,
    jitter: Jitter = "full",
    seed: int | None = None,
    name: str | None = None,
    on_result: Callable[[Any], bool] | None = None,
    raise_on_result: bool = False,
    retry_after_max: float | None = None,
    overlap_abandoned: bool = False,
    budget: RetryBudget | None = None,
) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Retry a sync or async function on transient failures.

    Attempt ``n`` that fails with a retryable error is followed by a wait of
    ``min(wait_max, wait_initial * wait_exp_base ** (n - 1))``, jittered. A
    ``retry_after`` the failure carries (HTTP 429/503 ``Retry-After``, our
    :class:`RateLimitedError`, :class:`CircuitOpenError`,
    :class:`BulkheadFullError`) is honoured as a minimum wait, but only when
    it is at most ``retry_after_max`` and fits what is left of the deadline;
    otherwise retrying ends **at once** (an open breaker fails fast instead
    of holding the caller for its reset time). Retrying ends when
    ``attempts`` are used up, when the ``deadline`` (total seconds since the
    first attempt started, or an enclosing :func:`deadline`, whichever is
    tighter) would be reached by the next wait, or at once on a failure ``on``
    rejects. Then the **last exception is re-raised unchanged**, with the
    attempt history and the reason added as a note (``add_note``;
    ``__notes__`` on Python 3.10). ``KeyboardInterrupt``, ``SystemExit`` and
    ``asyncio.CancelledError`` are never retried and never shown to ``on``.

    A :class:`TimeoutExceeded` from a sync ``timeout`` whose worker thread
    still runs (the attempt was abandoned, not stopped) holds the next
    attempt back until that worker ends - within the backoff and the
    deadline; if it does not end in time, retrying ends with a note saying
    so. Two copies of one side effect never run at once, unless
    ``overlap_abandoned=True``.

    With ``on_result``, a *result* the predicate rejects is retried like a
    transient failure; when retrying ends the last result is returned, or
    :class:`RetryExhaustedError` (carrying ``last_result``) is raised with
    ``raise_on_result=True``.

    The first attempt is a plain call; tenacity is used only after a failure.
    Every call has its own state, so concurrent calls (threads or tasks) never
    share attempt counts. Coroutine functions sleep with ``await`` (the event
    loop keeps running; asyncio or trio); in testing mode
    (:func:`set_testing`) nothing sleeps and attempts may be capped; with the
    policies switched off (:func:`set_active(False)
    <paios_reliability.set_active>`) the function is called once, straight
    through.

    Events: ``retry.attempt_failed`` for every failed attempt,
    ``retry.scheduled`` before each wait, ``retry.gave_up`` (with the
    ``reason``) and ``retry.succeeded`` (success after at least one retry). A
    first attempt that succeeds emits nothing.

    Args:
        on: What to retry: an exception class, a tuple of them, or a predicate
            taking the exception. Default :func:`is_retryable` (transient only:
            429/5xx/timeouts/connection errors yes, 400/401/403/404/422 and
            programming errors no).
        attempts: Maximum attempts including the first (>= 1), or ``None``.
        deadline: Maximum total seconds, or ``None``. Not both ``None``.
        wait_initial: Wait after the first failure, before jitter.
        wait_max: Upper bound of every computed wait.
        wait_exp_base: Growth factor of the wait per attempt (>= 1).
        jitter: ``"full"`` (default, uniform in ``[0, wait]``), ``"equal"``
            (uniform in ``[wait/2, wait]``) or ``"none"``.
        seed: Make the jitter sequence of every call reproducible (replay).
        name: Name for events and notes (default: the function's qualified name).
        on_result: Predicate on a successful attempt's result; ``True`` means
            "not acceptable, retry".
        raise_on_result: When retrying ends on a rejected result, raise
            :class:`RetryExhaustedError` instead of returning it.
        retry_after_max: The longest ``retry_after`` hint to wait for
            (default: ``wait_max``); a longer one ends retrying at once.
        overlap_abandoned: Start the next attempt even while a timed-out sync
            attempt still runs in its abandoned worker thread.
        budget: A :class:`RetryBudget` shared with other functions, threads
            and (on a shared store) processes: every call counts once, and
            each retry must be allowed by it before its wait; when it is
            not, retrying ends at once (reason ``budget_exhausted``).

    Returns:
        A decorator that keeps the function's signature and sync/async nature.

    Raises:
        ValueError: On unbounded (``attempts=None, deadline=None``) or invalid
            settings. ``deadline=0`` only warns: it means "never retry".
        TypeError: On arguments of the wrong type.
    """
    policy = _Policy(
        on=on,
        attempts=attempts,
        deadline=deadline,
        wait_initial=wait_initial,
        wait_max=wait_max,
        wait_exp_base=wait_exp_base,
        jitter=jitter,
        seed=seed,
        stacklevel=3,
        on_result=on_result,
        raise_on_result=raise_on_result,
        retry_after_max=retry_after_max,
        overlap_abandoned=overlap_abandoned,
        retry_budget=budget,
    )
    return _Retry(policy, name)
