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

import functools
import math
import random
import time
import warnings
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextvars import Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, cast

from . import _clock, _config
from ._clock import get_clock
from ._dispatch import callable_name, is_async_callable
from ._taxonomy import Failure, classify, is_retryable
from ._timeout import _current as _deadline_var
from ._timeout import current_deadline

if TYPE_CHECKING:
    from tenacity import AsyncRetrying, RetryCallState, Retrying
    from tenacity import AttemptManager as _TenacityAttempt

    from .typing import Clock

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

Jitter = Literal["full", "equal", "none"]
RetryOn = (
    type[BaseException] | tuple[type[BaseException], ...] | Callable[[Exception], bool]
)
_JITTERS = frozenset({"full", "equal", "none"})
_MAX_HISTORY = 20
_MAX_NOTES = 3
_NOTE_PREFIX = "paios_reliability.retry:"


# -- backoff ------------------------------------------------------------------


def compute_backoff(
    attempt: int,
    *,
    wait_initial: float,
    wait_max: float,
    wait_exp_base: float,
    jitter: Jitter,
    rand: Callable[[], float] = random.random,
) -> float:
    """The wait after failed attempt number ``attempt`` (1-based), in seconds.

    ``min(wait_max, wait_initial * wait_exp_base ** (attempt - 1))``, then
    jittered: ``"full"`` draws uniformly from ``[0, cap]``, ``"equal"`` from
    ``[cap/2, cap]``, ``"none"`` returns ``cap``. The exponent is clamped
    before it is computed, so no attempt number, however large, raises
    ``OverflowError``; the result is always within ``[0, wait_max]``.

    Args:
        attempt: The attempt that just failed (>= 1).
        wait_initial: Wait after the first failure, before jitter.
        wait_max: Upper bound of any wait.
        wait_exp_base: Growth factor per attempt (>= 1).
        jitter: ``"full"``, ``"equal"`` or ``"none"``.
        rand: Source of uniform numbers in ``[0, 1)`` (seeded for replay).
    """
    if wait_initial <= 0.0 or wait_max <= 0.0:
        return 0.0
    steps = attempt - 1 if attempt > 1 else 0
    if wait_exp_base <= 1.0 or steps == 0:
        cap = wait_initial
    elif steps >= math.log(wait_max / wait_initial) / math.log(wait_exp_base):
        cap = wait_max
    else:
        try:
            cap = wait_initial * wait_exp_base**steps
        except OverflowError:  # pragma: no cover - ruled out by the log bound
            cap = wait_max
    cap = min(cap, wait_max)
    if jitter == "full":
        wait = cap * rand()
    elif jitter == "equal":
        wait = cap / 2.0 + cap / 2.0 * rand()
    else:
        wait = cap
    return min(max(wait, 0.0), wait_max)


# -- settings -------------------------------------------------------------------


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"retry({what}=...) must be a number, got {value!r}")
    number = float(value)
    if math.isnan(number) or number < 0 or math.isinf(number):
        raise ValueError(
            f"retry({what}=...) must be a finite number >= 0, got {value!r}"
        )
    return number


def _is_positive_inf(value: object) -> bool:
    return isinstance(value, float) and math.isinf(value) and value > 0


def _predicate(on: RetryOn) -> Callable[[Exception], bool] | None:
    """Normalise ``on``; ``None`` means the default classifier."""
    if on is is_retryable:
        return None
    value: object = on  # checked at run time: callers may not use a type checker
    if isinstance(value, type) and issubclass(value, BaseException):
        exc_type = value
        return lambda exc: isinstance(exc, exc_type)
    if isinstance(value, tuple):
        if not value or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in value
        ):
            raise TypeError(
                f"retry(on=...) tuple must hold exception classes, got {on!r}"
            )
        types = cast(tuple[type[BaseException], ...], value)
        return lambda exc: isinstance(exc, types)
    if callable(value):
        return cast(Callable[[Exception], bool], value)
    raise TypeError(
        "retry(on=...) takes an exception class, a tuple of them or a "
        f"predicate callable, got {on!r}"
    )


class _Policy:
    """Validated, immutable retry settings shared by every call of one decorator."""

    __slots__ = (
        "attempts",
        "budget",
        "deadline",
        "jitter",
        "on",
        "predicate",
        "seed",
        "wait_exp_base",
        "wait_initial",
        "wait_max",
    )

    def __init__(
        self,
        *,
        on: RetryOn,
        attempts: int | None,
        deadline: float | None,
        wait_initial: float,
        wait_max: float,
        wait_exp_base: float,
        jitter: Jitter,
        seed: int | None,
        stacklevel: int,
    ) -> None:
        self.on = on
        self.predicate = _predicate(on)
        given: object = attempts
        if given is not None and (
            isinstance(given, bool) or not isinstance(given, int) or given < 1
        ):
            raise ValueError(
                f"retry(attempts=...) must be an int >= 1 or None, got {attempts!r}"
            )
        if deadline is not None:
            if _is_positive_inf(deadline):
                deadline = None
            else:
                deadline = _number(deadline, "deadline")
        if attempts is None and deadline is None:
            raise ValueError(
                "retry(attempts=None, deadline=None) would retry forever; "
                "bound it with attempts=, deadline= or both"
            )
        if deadline == 0.0:
            warnings.warn(
                "retry(deadline=0) leaves no time for a second attempt: "
                "every call is tried once",
                UserWarning,
                stacklevel=stacklevel,
            )
        self.attempts = attempts
        self.deadline = deadline
        # The budget every attempt sees through remaining(); deadline=0 means
        # "try once", not "give the one attempt no time".
        self.budget = deadline if deadline else None
        self.wait_initial = _number(wait_initial, "wait_initial")
        self.wait_max = _number(wait_max, "wait_max")
        if self.wait_max < self.wait_initial:
            raise ValueError(
                f"retry(wait_max={wait_max!r}) is below wait_initial={wait_initial!r}"
            )
        self.wait_exp_base = _number(wait_exp_base, "wait_exp_base")
        if self.wait_exp_base < 1.0:
            raise ValueError(
                f"retry(wait_exp_base=...) must be >= 1, got {wait_exp_base!r}"
            )
        if jitter not in _JITTERS:
            raise ValueError(
                f"retry(jitter=...) must be 'full', 'equal' or 'none', got {jitter!r}"
            )
        self.jitter: Jitter = jitter
        given = seed
        if given is not None and (
            isinstance(given, bool) or not isinstance(given, int)
        ):
            raise TypeError(f"retry(seed=...) must be an int or None, got {seed!r}")
        self.seed = seed

    def __repr__(self) -> str:
        return (
            f"retry(attempts={self.attempts!r}, deadline={self.deadline!r}, "
            f"wait_initial={self.wait_initial!r}, wait_max={self.wait_max!r}, "
            f"wait_exp_base={self.wait_exp_base!r}, jitter={self.jitter!r}, "
            f"seed={self.seed!r})"
        )


# -- the per-call state machine ---------------------------------------------------


def _describe(exc: BaseException) -> str:
    """``Type: message`` for a retry note, redacted: notes are printed with tracebacks."""
    from ._taxonomy import redact_clip

    try:
        text = redact_clip(str(exc), 200)
    except Exception:  # noqa: BLE001 - a broken __str__ must not hide the error
        text = "<unprintable>"
    name = type(exc).__qualname__
    return f"{name}: {text}" if text else name


def add_note(exc: BaseException, note: str) -> None:
    """``exc.add_note(note)``, with a ``__notes__`` list on Python 3.10.

    Keeps at most a few retry notes per exception object, so an exception
    instance raised again and again cannot grow without bound.
    """
    try:
        notes = getattr(exc, "__notes__", None)
        if not isinstance(notes, list):
            notes = []
            exc.__notes__ = notes  # type: ignore[attr-defined, unused-ignore]
        ours = [n for n in notes if isinstance(n, str) and n.startswith(_NOTE_PREFIX)]
        for stale in ours[: max(0, len(ours) - _MAX_NOTES + 1)]:
            notes.remove(stale)
        notes.append(note)
    except (AttributeError, TypeError):  # pragma: no cover - exotic exception types
        pass


class _Run:
    """One call's retry state: attempts, history, decisions. Never shared."""

    __slots__ = (
        "clock",
        "failure",
        "first_error",
        "history",
        "max_attempts",
        "name",
        "next_reason",
        "next_wait",
        "omitted",
        "policy",
        "rand",
        "start",
        "testing",
    )

    def __init__(
        self,
        policy: _Policy,
        name: str,
        *,
        start: float | None = None,
        first_error: Exception | None = None,
    ) -> None:
        self.policy = policy
        self.name = name
        self.clock: Clock = get_clock()
        self.start = self.clock.monotonic() if start is None else start
        self.first_error = first_error
        self.testing = _config.is_testing()
        cap = _config.testing_attempts()
        attempts = policy.attempts
        if cap is not None:
            attempts = cap if attempts is None else min(attempts, cap)
        self.max_attempts = attempts
        self.rand: Callable[[], float] = (
            random.random if policy.seed is None else random.Random(policy.seed).random  # noqa: S311 - jitter, not crypto
        )
        self.history: deque[str] = deque(maxlen=_MAX_HISTORY)
        self.omitted = 0
        self.failure: Failure | None = None
        self.next_wait = 0.0
        self.next_reason: str | None = None

    # decisions ----------------------------------------------------------------

    def end(self) -> float | None:
        """The absolute deadline of this call: own budget or enclosing, tighter."""
        own = (
            None if self.policy.deadline is None else self.start + self.policy.deadline
        )
        outer = current_deadline()
        if own is None:
            return outer
        return own if outer is None or own < outer else outer

    def record_failure(self, exc: BaseException, attempt: int) -> bool:
        """Record a failed attempt and decide what comes next.

        Returns:
            Whether to retry; when it is False the run has given up (note and
            event done) or the exception is not ours to handle.
        """
        from ._events import emit

        if not isinstance(exc, Exception):
            return False  # KeyboardInterrupt, SystemExit, CancelledError: never retried
        policy = self.policy
        failure: Failure | None = None
        if policy.predicate is None:
            failure = classify(exc)
            retryable = failure.retryable
        else:
            retryable = bool(policy.predicate(exc))
        self.failure = failure
        elapsed = self.clock.monotonic() - self.start
        emit(
            "retry",
            "attempt_failed",
            level="info",
            subject=self.name,
            exc=exc,
            attempt=attempt,
            max_attempts=self.max_attempts,
            retryable=retryable,
            elapsed=round(elapsed, 6),
        )
        if not retryable:
            self._remember(attempt, exc, "not retryable")
            self.give_up(exc, attempt, "not_retryable")
            return False
        wait, reason = self._decide(exc, attempt)
        self.next_wait, self.next_reason = wait, reason
        self._remember(
            attempt,
            exc,
            f"retry in {wait:.3g}s" if reason is None else reason.replace("_", " "),
        )
        return True

    def _decide(self, exc: Exception, attempt: int) -> tuple[float, str | None]:
        policy = self.policy
        if self.max_attempts is not None and attempt >= self.max_attempts:
            return 0.0, "attempts_exhausted"
        failure = self.failure if self.failure is not None else classify(exc)
        wait = compute_backoff(
            attempt,
            wait_initial=policy.wait_initial,
            wait_max=policy.wait_max,
            wait_exp_base=policy.wait_exp_base,
            jitter=policy.jitter,
            rand=self.rand,
        )
        hint = failure.retry_after
        if hint is not None and hint > wait:
            wait = hint
        end = self.end()
        if end is not None:
            left = end - self.clock.monotonic()
            if left <= 0.0:
                return 0.0, "deadline_exceeded"
            if hint is not None and hint > left:
                return 0.0, "retry_after_exceeds_deadline"
            if wait >= left:
                # Sleeping to the deadline would start an attempt with no budget.
                return 0.0, "deadline_exceeded"
        return wait, None

    def _remember(self, attempt: int, exc: BaseException, outcome: str) -> None:
        if len(self.history) == self.history.maxlen:
            self.omitted += 1
        self.history.append(f"attempt {attempt}: {_describe(exc)} -> {outcome}")

    def give_up(self, exc: BaseException, attempt: int, reason: str) -> None:
        from ._events import emit

        elapsed = self.clock.monotonic() - self.start
        lines = [
            f"{_NOTE_PREFIX} gave up on {self.name} after {attempt} "
            f"attempt{'s' if attempt != 1 else ''} in {elapsed:.3g}s "
            f"({reason.replace('_', ' ')})"
        ]
        if self.omitted:
            lines.append(f"  ... {self.omitted} earlier attempts omitted")
        lines.extend(f"  {line}" for line in self.history)
        add_note(exc, "\n".join(lines))
        emit(
            "retry",
            "gave_up",
            level="info" if reason == "not_retryable" else "warning",
            subject=self.name,
            exc=exc,
            attempts=attempt,
            reason=reason,
            elapsed=round(elapsed, 6),
        )

    def succeeded(self, attempt: int) -> None:
        from ._events import emit

        emit(
            "retry",
            "succeeded",
            level="info",
            subject=self.name,
            attempts=attempt,
            elapsed=round(self.clock.monotonic() - self.start, 6),
        )

    # tenacity callbacks -------------------------------------------------------

    def _t_retry(self, rs: RetryCallState) -> bool:
        outcome = rs.outcome
        if outcome is None or not outcome.failed:
            return False
        exc = outcome.exception()
        return exc is not None and self.record_failure(exc, rs.attempt_number)

    def _t_wait(self, rs: RetryCallState) -> float:
        return self.next_wait

    def _t_stop(self, rs: RetryCallState) -> bool:
        return self.next_reason is not None

    def _t_before_sleep(self, rs: RetryCallState) -> None:
        from ._events import emit

        emit(
            "retry",
            "scheduled",
            level="info",
            subject=self.name,
            attempt=rs.attempt_number + 1,
            wait=round(self.next_wait, 6),
            max_attempts=self.max_attempts,
            retry_after=None if self.failure is None else self.failure.retry_after,
        )

    def _t_give_up(self, rs: RetryCallState) -> Any:
        outcome = rs.outcome
        assert outcome is not None
        exc = outcome.exception()
        assert exc is not None
        self.give_up(exc, rs.attempt_number, self.next_reason or "attempts_exhausted")
        raise exc

    def _sleep(self, seconds: float) -> None:
        if not self.testing:
            self.clock.sleep(seconds)

    async def _asleep(self, seconds: float) -> None:
        if not self.testing:
            await self.clock.asleep(seconds)
        else:
            await _yield_once()

    def _tenacity_options(self) -> dict[str, Any]:
        return {
            "stop": self._t_stop,
            "wait": self._t_wait,
            "retry": self._t_retry,
            "before_sleep": self._t_before_sleep,
            "retry_error_callback": self._t_give_up,
            "name": self.name,
        }

    def tenacity_sync(self) -> Retrying:
        from tenacity import Retrying

        return Retrying(sleep=self._sleep, **self._tenacity_options())

    def tenacity_async(self) -> AsyncRetrying:
        from tenacity.asyncio import AsyncRetrying

        return AsyncRetrying(sleep=self._asleep, **self._tenacity_options())


async def _yield_once() -> None:
    import asyncio

    await asyncio.sleep(0)  # a skipped sleep is still a scheduling point


# -- attempts: one iterator for sync and async -----------------------------------


def _enter_budget(budget: float | None, start: float) -> Token[float | None] | None:
    """Make the retry deadline visible to the attempt through ``remaining()``."""
    if budget is None:
        return None
    mine = start + budget
    outer = _deadline_var.get()
    return _deadline_var.set(mine if outer is None or mine < outer else outer)


class Attempt:
    """One attempt of a :func:`retry_context` loop; use it as ``with attempt:``.

    Leaving the ``with`` block with an :class:`Exception` records the failure
    and suppresses it (the loop decides whether to go round again); the last
    one is re-raised by the loop when retrying ends. ``KeyboardInterrupt``,
    ``SystemExit`` and ``asyncio.CancelledError`` are never suppressed.

    Attributes:
        num: The attempt number, starting at 1.
    """

    __slots__ = ("_manager", "_run", "_token", "num")

    def __init__(self, run: _Run, num: int, manager: _TenacityAttempt | None) -> None:
        self._run = run
        self.num = num
        self._manager = manager
        self._token: Token[float | None] | None = None

    def __repr__(self) -> str:
        return f"<Attempt num={self.num}>"

    def __enter__(self) -> None:
        run = self._run
        self._token = _enter_budget(run.policy.budget, run.start)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        token, self._token = self._token, None
        if token is not None:
            _deadline_var.reset(token)
        manager = self._manager
        if exc is None:
            if manager is not None:
                manager.__exit__(None, None, None)
            if self.num > 1:
                self._run.succeeded(self.num)
            return False
        if not isinstance(exc, Exception):
            return False
        if manager is None:
            self._run.first_error = exc
            return True
        return bool(manager.__exit__(exc_type, exc, tb))


class _Attempts:
    """Yields :class:`Attempt` objects; ``__next__`` and ``__anext__`` over one state.

    The first attempt is ours and costs nothing; only after it failed is the
    tenacity loop built, with that failure fed in as its first attempt.
    """

    __slots__ = ("_async_loop", "_first_done", "_run", "_sync_loop")

    def __init__(self, run: _Run) -> None:
        self._run = run
        self._first_done = run.first_error is not None
        self._sync_loop: Iterator[_TenacityAttempt] | None = None
        self._async_loop: AsyncRetrying | None = None

    def _first(self) -> Attempt | None:
        """The free first attempt, or None once it is over."""
        if self._first_done:
            return None
        self._first_done = True
        return Attempt(self._run, 1, None)

    def _replay(self, manager: _TenacityAttempt) -> None:
        error, self._run.first_error = self._run.first_error, None
        assert error is not None
        manager.retry_state.set_exception((type(error), error, error.__traceback__))

    def __iter__(self) -> Iterator[Attempt]:
        return self

    def __next__(self) -> Attempt:
        loop = self._sync_loop
        if loop is None:
            first = self._first()
            if first is not None:
                return first
            if self._run.first_error is None:
                raise StopIteration
            loop = self._sync_loop = iter(self._run.tenacity_sync())
            self._replay(next(loop))
        manager = next(loop)
        return Attempt(self._run, manager.retry_state.attempt_number, manager)

    def __aiter__(self) -> AsyncIterator[Attempt]:
        return self

    async def __anext__(self) -> Attempt:
        loop = self._async_loop
        if loop is None:
            first = self._first()
            if first is not None:
                return first
            if self._run.first_error is None:
                raise StopAsyncIteration
            loop = self._async_loop = self._run.tenacity_async().__aiter__()
            self._replay(await loop.__anext__())
        manager = await loop.__anext__()
        return Attempt(self._run, manager.retry_state.attempt_number, manager)


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

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
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
) -> RetryContext:
    """Retry a block of code with the same policy as :func:`retry`.

    Example::

        for attempt in retry_context(attempts=3):
            with attempt:
                fetch()

    ``async for`` works the same and sleeps without blocking the event loop.
    Arguments are those of :func:`retry`, plus ``name`` for events and notes.

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
    )
    return RetryContext(policy, name)


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
) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Retry a sync or async function on transient failures.

    Attempt ``n`` that fails with a retryable error is followed by a wait of
    ``min(wait_max, wait_initial * wait_exp_base ** (n - 1))``, jittered. A
    ``retry_after`` the failure carries (HTTP 429/503 ``Retry-After``, our
    :class:`RateLimitedError`, :class:`CircuitOpenError`) is honoured as a
    minimum wait. Retrying ends when ``attempts`` are used up, when the
    ``deadline`` (total seconds since the first attempt started, or an
    enclosing :func:`deadline`, whichever is tighter) would be passed by the
    next wait, when a ``retry_after`` hint exceeds what is left of it, or at
    once on a failure ``on`` rejects. Then the **last exception is re-raised
    unchanged**, with the attempt history added as a note (``add_note``;
    ``__notes__`` on Python 3.10). ``KeyboardInterrupt``, ``SystemExit`` and
    ``asyncio.CancelledError`` are never retried and never shown to ``on``.

    The first attempt is a plain call; tenacity is used only after a failure.
    Every call has its own state, so concurrent calls (threads or tasks) never
    share attempt counts. Coroutine functions sleep with ``await`` (the event
    loop keeps running); in testing mode (:func:`set_testing`) nothing sleeps
    and attempts may be capped; with the policies switched off
    (:func:`set_active(False) <paios_reliability.set_active>`) the function is
    called once, straight through.

    Events: ``retry.attempt_failed`` for every failed attempt,
    ``retry.scheduled`` before each wait, ``retry.gave_up`` and
    ``retry.succeeded`` (success after at least one retry). A first attempt
    that succeeds emits nothing.

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

    Returns:
        A decorator that keeps the function's signature and sync/async nature.

    Raises:
        ValueError: On unbounded (``attempts=None, deadline=None``) or invalid
            settings. ``deadline=0`` only warns: it means "never retry".
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
    )

    def decorate(fn: Callable[P, T]) -> Callable[P, T]:
        label = name or callable_name(fn)
        budget = policy.budget
        # The success path reads the switches, the clock and the deadline
        # directly (no helper calls): it is what every healthy call pays.
        config, clocks, var = _config, _clock, _deadline_var
        system, monotonic = _clock.SYSTEM_CLOCK, time.monotonic

        if is_async_callable(fn):
            afn = cast(Callable[P, Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                if not config._state.active:
                    return await afn(*args, **kwargs)
                clock = clocks._default
                start = monotonic() if clock is system else clock.monotonic()
                token = None
                if budget is not None:
                    mine, outer = start + budget, var.get()
                    token = var.set(mine if outer is None or mine < outer else outer)
                try:
                    return await afn(*args, **kwargs)
                except Exception as exc:  # noqa: BLE001 - decided by the policy
                    error = exc
                finally:
                    if token is not None:
                        _deadline_var.reset(token)
                async for attempt in _Attempts(
                    _Run(policy, label, start=start, first_error=error)
                ):
                    with attempt:
                        return await afn(*args, **kwargs)
                raise AssertionError(
                    "unreachable: retrying ends by return or raise"
                )  # pragma: no cover

            return cast(Callable[P, T], async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            if not config._state.active:
                return fn(*args, **kwargs)
            clock = clocks._default
            start = monotonic() if clock is system else clock.monotonic()
            token = None
            if budget is not None:
                mine, outer = start + budget, var.get()
                token = var.set(mine if outer is None or mine < outer else outer)
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - decided by the policy
                error = exc
            finally:
                if token is not None:
                    _deadline_var.reset(token)
            for attempt in _Attempts(
                _Run(policy, label, start=start, first_error=error)
            ):
                with attempt:
                    return fn(*args, **kwargs)
            raise AssertionError(
                "unreachable: retrying ends by return or raise"
            )  # pragma: no cover

        return wrapper

    return decorate
