"""Adaptive concurrency: ``AdaptiveLimiter`` (Netflix concurrency-limits style).

A static bulkhead is sized for yesterday's capacity. An adaptive limiter
follows the dependency: the limit grows while latency stays near its best
and shrinks when latency climbs or the dependency says it is overloaded
(429, 503, :class:`RateLimitedError`, timeouts). Two algorithms, both pure
functions of the limit and one measured call:

- ``"aimd"``: additive increase (about +1 per ``limit`` successes),
  multiplicative decrease (``x backoff``) on overload.
- ``"gradient"`` (default): the limit follows ``long-term latency /
  short-term latency`` (clamped to [0.5, 1]) plus a queue allowance of
  ``sqrt(limit)``, smoothed; overload also multiplies by ``backoff``.

The state is this process's (concurrency is local); calls are admitted under
a lock that is never held while a call runs.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, cast

from .._core import settings as _config
from .._core.checks import check_count
from .._core.dispatch import is_async_callable
from .._core.events import emit
from .._core.exceptions import BulkheadFullError, TimeoutExceeded

if TYPE_CHECKING:
    from .._core.exc_info import ExcType, ExcValue, Traceback

__all__ = ["AdaptiveLimiter", "next_limit"]

P = ParamSpec("P")
T = TypeVar("T")
Algorithm = Literal["gradient", "aimd"]

_OVERLOAD_CODES = frozenset(
    {"RATE_LIMITED", "HTTP_TOO_MANY_REQUESTS", "HTTP_SERVICE_UNAVAILABLE"}
)
_LONG, _SHORT, _SMOOTHING, _BACKOFF = 0.05, 0.5, 0.2, 0.9


def next_limit(
    algorithm: Algorithm,
    limit: float,
    *,
    overload: bool,
    latency: float,
    long_rtt: float,
    short_rtt: float,
    min_limit: int,
    max_limit: int,
) -> float:
    """The limit after one measured call (pure: the state machine's one step).

    Args:
        algorithm: ``"gradient"`` or ``"aimd"``.
        limit: The current (fractional) limit.
        overload: The call said the dependency is overloaded.
        latency: The call's latency in seconds (ignored on overload).
        long_rtt: The slow moving average of latency (the "no load" baseline).
        short_rtt: The fast moving average of latency.
        min_limit: Lower bound.
        max_limit: Upper bound.
    """
    if overload:
        new = limit * _BACKOFF
    elif algorithm == "aimd":
        new = limit + 1.0 / max(limit, 1.0)
    else:
        gradient = 1.0 if short_rtt <= 0 else max(0.5, min(1.0, long_rtt / short_rtt))
        target = limit * gradient + math.sqrt(limit)
        new = limit * (1 - _SMOOTHING) + target * _SMOOTHING
    return float(min(max_limit, max(min_limit, new)))


class _Slot:
    __slots__ = ("started",)

    def __init__(self, started: float) -> None:
        self.started = started


class AdaptiveLimiter:
    """A concurrency limit that follows measured latency and overload signals.

    Use it where a :class:`Bulkhead` goes: as a decorator (sync or async),
    as ``with limiter.slot():`` / ``async with limiter.slot():``, or as
    ``bulkhead=`` of :func:`resilient`. A call beyond the limit is refused at once with
    :class:`BulkheadFullError` (so retry and breakers treat it as local
    back-pressure). Each finished call updates the limit: a success feeds
    its latency, an overload signal (HTTP 429/503, :class:`RateLimitedError`,
    a timeout) shrinks it, any other failure leaves it alone.

    **Priorities.** ``priority`` (:meth:`prioritized`, :meth:`slot`,
    :meth:`acquire`) sheds
    low-priority work first as the limit is reached: ``priority < 0``
    (background) is admitted only below half the limit, ``0`` (normal)
    below the limit less a reserve of 10% (at least one slot once the
    limit is 2 or more), ``> 0`` (interactive) up to the limit.

    Args:
        name: Identifies the limiter in events and errors.
        initial: The starting limit.
        min_limit: The limit never goes below this (>= 1).
        max_limit: Nor above this.
        algorithm: ``"gradient"`` (default) or ``"aimd"``.

    Raises:
        ValueError: Bounds out of order, or another algorithm.

    Events (``paios_reliability.adaptive_limiter.*``): ``limit_changed``
    (debug; ``limit``, ``reason``) whenever the whole-number limit moves,
    ``rejected`` (info; ``in_flight``, ``limit``, ``priority``).
    """

    __slots__ = (
        "_in_flight",
        "_limit",
        "_lock",
        "_long_rtt",
        "_short_rtt",
        "algorithm",
        "max_limit",
        "min_limit",
        "name",
    )

    def __init__(
        self,
        name: str,
        *,
        initial: int = 8,
        min_limit: int = 1,
        max_limit: int = 64,
        algorithm: Algorithm = "gradient",
    ) -> None:
        label_of: object = name
        if not isinstance(label_of, str) or not label_of:
            raise ValueError(
                f"AdaptiveLimiter name must be a non-empty string, got {name!r}"
            )
        numbers: tuple[tuple[str, object], ...] = (
            ("initial", initial),
            ("min_limit", min_limit),
            ("max_limit", max_limit),
        )
        for label, value in numbers:
            check_count("AdaptiveLimiter", label, value)
        if not min_limit <= initial <= max_limit:
            raise ValueError(
                "AdaptiveLimiter needs min_limit <= initial <= max_limit, got "
                f"{min_limit} <= {initial} <= {max_limit}"
            )
        if algorithm not in ("gradient", "aimd"):
            raise ValueError(
                f"AdaptiveLimiter(algorithm=...) must be 'gradient' or 'aimd', got {algorithm!r}"
            )
        self.name = name
        self.min_limit = min_limit
        self.max_limit = max_limit
        self.algorithm: Algorithm = algorithm
        self._limit = float(initial)
        self._in_flight = 0
        self._long_rtt = 0.0
        self._short_rtt = 0.0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"AdaptiveLimiter({self.name!r}, limit={self.limit}, "
            f"in_flight={self.in_flight}, algorithm={self.algorithm!r})"
        )

    @property
    def limit(self) -> int:
        """The current whole-number limit."""
        return int(self._limit)

    @property
    def in_flight(self) -> int:
        """Calls admitted and not finished."""
        return self._in_flight

    # -- the state machine -----------------------------------------------------------

    def _room(self, limit: int, priority: int) -> int:
        if priority > 0:
            return limit
        if priority < 0:
            return max(1, limit // 2)
        return limit - max(1, math.ceil(limit * 0.1)) if limit >= 2 else limit

    def acquire(self, priority: int = 0) -> _Slot:
        """Take a slot now, or raise :class:`BulkheadFullError` (never waits)."""
        with self._lock:
            limit = int(self._limit)
            if self._in_flight >= self._room(limit, priority):
                in_flight = self._in_flight
                refused = True
            else:
                self._in_flight += 1
                refused = False
        if refused:
            emit(
                "adaptive_limiter",
                "rejected",
                subject=self.name,
                in_flight=in_flight,
                limit=limit,
                priority=priority,
            )
            raise BulkheadFullError(
                f"adaptive limiter {self.name!r} is at its limit ({in_flight} of "
                f"{limit} in flight, priority {priority})",
                context={"limiter": self.name},
            )
        return _Slot(time.monotonic())

    def release(self, slot: _Slot, error: BaseException | None = None) -> None:
        """Give the slot back and learn from the call (its latency or its error)."""
        latency = time.monotonic() - slot.started
        overload = error is not None and _is_overload(error)
        with self._lock:
            self._in_flight -= 1
            if error is not None and not overload:
                return  # says nothing about capacity
            before = int(self._limit)
            if not overload:
                if self._long_rtt == 0.0:
                    self._long_rtt = self._short_rtt = latency
                else:
                    self._long_rtt += (latency - self._long_rtt) * _LONG
                    self._short_rtt += (latency - self._short_rtt) * _SHORT
            self._limit = next_limit(
                self.algorithm,
                self._limit,
                overload=overload,
                latency=latency,
                long_rtt=self._long_rtt,
                short_rtt=self._short_rtt,
                min_limit=self.min_limit,
                max_limit=self.max_limit,
            )
            after = int(self._limit)
        if after != before:
            emit(
                "adaptive_limiter",
                "limit_changed",
                level="debug",
                subject=self.name,
                limit=after,
                reason="overload" if overload else "latency",
            )

    # -- drivers ----------------------------------------------------------------------

    def _run(self, fn: Callable[..., T], priority: int, args: Any, kwargs: Any) -> T:
        slot = self.acquire(priority)
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self.release(slot, exc)
            raise
        self.release(slot)
        return result

    async def _arun(
        self, fn: Callable[..., Awaitable[T]], priority: int, args: Any, kwargs: Any
    ) -> T:
        slot = self.acquire(priority)
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self.release(slot, exc)
            raise
        self.release(slot)
        return result

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` in a slot (normal priority)."""
        return self._run(fn, 0, args, kwargs)

    async def acall(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Await ``fn(*args, **kwargs)`` in a slot (normal priority)."""
        return await self._arun(fn, 0, args, kwargs)

    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        """Decorate a sync or async function (normal priority)."""
        return self.prioritized(0)(fn)

    def prioritized(self, priority: int) -> Callable[[Callable[P, T]], Callable[P, T]]:
        """A decorator whose calls take slots of ``priority`` (see the class)."""
        given: object = priority
        if isinstance(given, bool) or not isinstance(given, int):
            raise TypeError(f"priority must be an int, got {priority!r}")

        def decorate(fn: Callable[P, T]) -> Callable[P, T]:
            if is_async_callable(fn):
                afn = cast(Callable[P, Awaitable[Any]], fn)

                @functools.wraps(fn)
                async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                    if not _config._state.active:
                        return await afn(*args, **kwargs)
                    return await self._arun(afn, priority, args, kwargs)

                return cast(Callable[P, T], async_wrapper)

            @functools.wraps(fn)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
                if not _config._state.active:
                    return fn(*args, **kwargs)
                return self._run(fn, priority, args, kwargs)

            return wrapper

        return decorate

    def slot(self, priority: int = 0) -> _Held:
        """``with limiter.slot(priority):`` / ``async with``: a slot for a block."""
        return _Held(self, priority)


class _Held:
    __slots__ = ("_limiter", "_priority", "_slot")

    def __init__(self, limiter: AdaptiveLimiter, priority: int) -> None:
        self._limiter = limiter
        self._priority = priority
        self._slot: _Slot | None = None

    def __enter__(self) -> _Held:
        self._slot = self._limiter.acquire(self._priority)
        return self

    def __exit__(self, exc_type: ExcType, exc: ExcValue, tb: Traceback) -> None:
        slot, self._slot = self._slot, None
        if slot is not None:
            self._limiter.release(slot, exc)

    async def __aenter__(self) -> _Held:
        return self.__enter__()

    async def __aexit__(self, exc_type: ExcType, exc: ExcValue, tb: Traceback) -> None:
        self.__exit__(exc_type, exc, tb)


def _is_overload(error: BaseException) -> bool:
    if isinstance(error, TimeoutExceeded):
        return True
    if not isinstance(error, Exception):
        return False
    from .._core.taxonomy import classify

    return classify(error).code in _OVERLOAD_CODES
