"""What a retry policy is: its settings, checked once, and the backoff it waits.

:class:`_Policy` holds the validated settings of one ``@retry(...)`` or
``retry_context(...)`` (attempts, deadline, waits, jitter, what is retried);
:func:`compute_backoff` is the wait before an attempt. How one call runs
under a policy is in :mod:`.retry`.
"""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, cast

from .._core.taxonomy import is_retryable

if TYPE_CHECKING:
    from .budget import RetryBudget

__all__ = ["Jitter", "RetryOn", "compute_backoff"]

Jitter = Literal["full", "equal", "none"]
RetryOn = (
    type[BaseException] | tuple[type[BaseException], ...] | Callable[[Exception], bool]
)
_JITTERS = frozenset({"full", "equal", "none"})


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
        "on_result",
        "overlap_abandoned",
        "predicate",
        "raise_on_result",
        "retry_after_max",
        "retry_budget",
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
        on_result: Callable[[Any], bool] | None = None,
        raise_on_result: bool = False,
        retry_after_max: float | None = None,
        overlap_abandoned: bool = False,
        retry_budget: RetryBudget | None = None,
    ) -> None:
        self.on = on
        if retry_budget is not None:
            from .budget import RetryBudget

            if not isinstance(retry_budget, RetryBudget):
                raise TypeError(
                    f"retry(budget=...) must be a RetryBudget or None, got {retry_budget!r}"
                )
        self.retry_budget = retry_budget
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
        if on_result is not None and not callable(on_result):
            raise TypeError(
                "retry(on_result=...) must be a predicate taking the result "
                f"(True: retry), got {on_result!r}"
            )
        self.on_result = on_result
        for flag, value in (
            ("raise_on_result", raise_on_result),
            ("overlap_abandoned", overlap_abandoned),
        ):
            if not isinstance(value, bool):
                raise TypeError(f"retry({flag}=...) must be a bool, got {value!r}")
        self.raise_on_result = raise_on_result
        self.overlap_abandoned = overlap_abandoned
        self.retry_after_max = (
            self.wait_max
            if retry_after_max is None
            else _number(retry_after_max, "retry_after_max")
        )

    def __repr__(self) -> str:
        extra = ""
        if self.on_result is not None:
            extra += f", on_result={self.on_result!r}"
            extra += f", raise_on_result={self.raise_on_result!r}"
        if self.retry_after_max != self.wait_max:
            extra += f", retry_after_max={self.retry_after_max!r}"
        if self.overlap_abandoned:
            extra += ", overlap_abandoned=True"
        if self.retry_budget is not None:
            extra += f", budget={self.retry_budget!r}"
        return (
            f"retry(attempts={self.attempts!r}, deadline={self.deadline!r}, "
            f"wait_initial={self.wait_initial!r}, wait_max={self.wait_max!r}, "
            f"wait_exp_base={self.wait_exp_base!r}, jitter={self.jitter!r}, "
            f"seed={self.seed!r}{extra})"
        )
