"""One retried call: its state machine (:class:`_Run`) and the attempts it hands out.

Tenacity drives the attempts; :class:`_Run` decides what is retried, waits
through the clock seam, respects deadlines and retry budgets, and keeps the
notes and history. :class:`_Attempts` is the one iterator behind the sync
and async decorators and ``retry_context``.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextvars import Token
from typing import TYPE_CHECKING, Any

from .._core import settings as _config
from .._core.clock import get_clock
from .._core.exceptions import RetryExhaustedError, TimeoutExceeded
from .._core.taxonomy import Failure, classify
from . import outcome as _outcome
from .retry_policy import _Policy, compute_backoff
from .timeout import _current as _deadline_var
from .timeout import current_deadline

if TYPE_CHECKING:
    from tenacity import AsyncRetrying, RetryCallState, Retrying
    from tenacity import AttemptManager as _TenacityAttempt

    from .._core.exc_info import ExcType, ExcValue, Traceback
    from ..typing import Clock
    from .budget import BudgetDecision, RetryBudget

__all__ = ["Attempt", "ResultRejected"]

_MAX_HISTORY = 20
_MAX_NOTES = 3
_NOTE_PREFIX = "paios_reliability.retry:"


# -- the per-call state machine ---------------------------------------------------


def _describe(exc: BaseException) -> str:
    """``Type: message`` for a retry note, redacted: notes are printed with tracebacks."""
    from .._core.redaction import redact_clip

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


class ResultRejected(Exception):
    """An attempt returned a result ``on_result`` rejected (internal signal).

    It never reaches the caller: when retrying ends, the last result is
    returned, or :class:`RetryExhaustedError` is raised.
    """

    def __init__(self, value: object) -> None:
        super().__init__("the result was rejected by on_result")
        self.value = value


_WHY = {
    "not_retryable": "not retryable",
    "attempts_exhausted": "attempts exhausted",
    "deadline_exceeded": "deadline exceeded",
    "retry_after_exceeds_deadline": "retry_after does not fit the remaining budget",
    "retry_after_exceeds_max": "retry_after exceeds retry_after_max",
    "timeouts_exhausted": "timed out too often",
    "abandoned_attempt_running": "an abandoned attempt still runs",
    "budget_exhausted": "retry budget exhausted",
}


class _Run:
    """One call's retry state: attempts, history, decisions. Never shared."""

    __slots__ = (
        "clock",
        "detail",
        "failure",
        "first_error",
        "history",
        "is_async",
        "last_attempt",
        "max_attempts",
        "name",
        "next_reason",
        "next_wait",
        "omitted",
        "policy",
        "rand",
        "record",
        "retry_timeouts",
        "room",
        "start",
        "testing",
        "timeouts",
    )

    def __init__(
        self,
        policy: _Policy,
        name: str,
        *,
        start: float | None = None,
        first_error: Exception | None = None,
        room: float = 0.0,
        retry_timeouts: int | None = None,
        stack: object = None,
        is_async: bool = False,
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
        self.detail = ""
        self.room = room
        self.retry_timeouts = retry_timeouts
        self.timeouts = 0
        self.is_async = is_async
        self.last_attempt = 0
        self.record = _outcome.record_for(stack)

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
        from .._core.events import emit

        if not isinstance(exc, Exception):
            return False  # KeyboardInterrupt, SystemExit, CancelledError: never retried
        self.last_attempt = attempt
        if self.record is not None:
            self.record.attempts = attempt
        policy = self.policy
        failure: Failure | None = None
        rejected = isinstance(exc, ResultRejected)
        if rejected:
            retryable = True  # on_result asked for it, whatever `on` says
        elif policy.predicate is None:
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
            exc=None if rejected else exc,
            attempt=attempt,
            max_attempts=self.max_attempts,
            retryable=retryable,
            elapsed=round(elapsed, 6),
            **({"result_rejected": True} if rejected else {}),
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

    def _stop(self, reason: str, detail: str = "") -> tuple[float, str]:
        self.detail = detail
        return 0.0, reason

    def _decide(self, exc: Exception, attempt: int) -> tuple[float, str | None]:
        policy = self.policy
        if self.max_attempts is not None and attempt >= self.max_attempts:
            return self._stop("attempts_exhausted")
        worker = None
        if isinstance(exc, TimeoutExceeded):
            self.timeouts += 1
            limit = self.retry_timeouts
            if limit is not None and self.timeouts > limit:
                return self._stop(
                    "timeouts_exhausted",
                    f"{self.timeouts} attempts timed out; retry_timeouts={limit}",
                )
            worker = exc.worker
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
        end = self.end()
        left = None if end is None else end - self.clock.monotonic()
        if left is not None and left <= 0.0:
            return self._stop("deadline_exceeded", "no time is left")
        if hint is not None:
            if hint > policy.retry_after_max:
                return self._stop(
                    "retry_after_exceeds_max",
                    f"asked to wait {hint:.3g}s, more than retry_after_max="
                    f"{policy.retry_after_max:g}s",
                )
            if left is not None and hint + self.room >= left:
                room = f" plus {self.room:.3g}s for an attempt" if self.room else ""
                return self._stop(
                    "retry_after_exceeds_deadline",
                    f"asked to wait {hint:.3g}s{room}, but only {left:.3g}s are left",
                )
            wait = max(wait, hint)
        if left is not None and wait >= left:
            # Sleeping to the deadline would start an attempt with no budget.
            return self._stop(
                "deadline_exceeded",
                f"the next wait of {wait:.3g}s would reach the end of the "
                f"{left:.3g}s left",
            )
        if worker is not None and not worker.done() and not policy.overlap_abandoned:
            return self._await_worker(worker, attempt, wait, end)
        return wait, None

    def _await_worker(
        self, worker: Any, attempt: int, wait: float, end: float | None
    ) -> tuple[float, str | None]:
        """Hold the next attempt back until the abandoned one has ended.

        The wait counts as (part of) the backoff and never crosses the budget
        less the room an attempt needs; coroutines and testing mode do not
        block here and give up at once instead.
        """
        clock = self.clock
        began = clock.monotonic()
        if self.is_async or self.testing:
            limit = 0.0
        elif end is not None:
            limit = end - began - self.room
        else:
            limit = max(wait, self.policy.wait_max)
        if limit <= 0.0 or not worker.wait(limit):
            return self._stop(
                "abandoned_attempt_running",
                f"attempt {attempt} timed out but still runs in its worker thread; "
                "another attempt would run the operation twice at once "
                "(overlap_abandoned=False)",
            )
        waited = clock.monotonic() - began
        wait = max(0.0, wait - waited)
        if end is not None and wait >= end - clock.monotonic():
            return self._stop(
                "deadline_exceeded",
                "waiting for the abandoned attempt used the time left",
            )
        return wait, None

    def _remember(self, attempt: int, exc: BaseException, outcome: str) -> None:
        if len(self.history) == self.history.maxlen:
            self.omitted += 1
        self.history.append(f"attempt {attempt}: {_describe(exc)} -> {outcome}")

    def note(self, attempt: int, reason: str) -> str:
        """The attempt history, as added to the exception that ends the run."""
        elapsed = self.clock.monotonic() - self.start
        why = _WHY.get(reason, reason.replace("_", " "))
        if self.detail:
            why = f"{why}: {self.detail}"
        lines = [
            f"{_NOTE_PREFIX} gave up on {self.name} after {attempt} "
            f"attempt{'s' if attempt != 1 else ''} in {elapsed:.3g}s ({why})"
        ]
        if self.omitted:
            lines.append(f"  ... {self.omitted} earlier attempts omitted")
        lines.extend(f"  {line}" for line in self.history)
        return "\n".join(lines)

    def give_up(self, exc: BaseException, attempt: int, reason: str) -> None:
        from .._core.events import emit

        if self.record is not None:
            self.record.attempts = attempt
        rejected = isinstance(exc, ResultRejected)
        add_note(exc, self.note(attempt, reason))
        emit(
            "retry",
            "gave_up",
            level="info" if reason == "not_retryable" else "warning",
            subject=self.name,
            exc=None if rejected else exc,
            attempts=attempt,
            reason=reason,
            elapsed=round(self.clock.monotonic() - self.start, 6),
            **({"result_rejected": True} if rejected else {}),
        )

    def succeeded(self, attempt: int) -> None:
        from .._core.events import emit

        if self.record is not None:
            self.record.attempts = attempt
        emit(
            "retry",
            "succeeded",
            level="info",
            subject=self.name,
            attempts=attempt,
            elapsed=round(self.clock.monotonic() - self.start, 6),
        )

    def exhausted(self, rejected: ResultRejected) -> Any:
        """Retrying ended on a rejected result: return it, or raise."""
        if not self.policy.raise_on_result:
            return rejected.value
        notes = getattr(rejected, "__notes__", None) or [""]
        error = RetryExhaustedError(
            f"{self.name}: every attempt returned a result on_result rejected",
            last_result=rejected.value,
            attempts=self.last_attempt,
            context={"function": self.name},
        )
        add_note(error, notes[-1])
        raise error from None

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
        if self.next_reason is not None:
            return True
        budget = self.policy.retry_budget
        return budget is not None and self._refused(budget, budget.withdraw())

    async def _t_astop(self, rs: RetryCallState) -> bool:
        if self.next_reason is not None:
            return True
        budget = self.policy.retry_budget
        return budget is not None and self._refused(budget, await budget.awithdraw())

    def _refused(self, budget: RetryBudget, decision: BudgetDecision) -> bool:
        """Stop when the shared retry budget refused this retry."""
        if decision[0]:
            return False
        self.next_wait, self.next_reason = self._stop(
            "budget_exhausted", budget.explain(decision)
        )
        return True

    def _t_before_sleep(self, rs: RetryCallState) -> None:
        from .._core.events import emit

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

        options = self._tenacity_options()
        options["stop"] = self._t_astop
        return AsyncRetrying(sleep=self._asleep, **options)


async def _yield_once() -> None:
    from .._core.aio import checkpoint

    await checkpoint()  # a skipped sleep is still a scheduling point


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

    def __exit__(self, exc_type: ExcType, exc: ExcValue, tb: Traceback) -> bool:
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
