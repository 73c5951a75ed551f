"""Chaos strategies: ``chaos(...)``, ``set_chaos(...)``, ``PAIOS_CHAOS``.

Failure handling that is never rehearsed does not work when it is needed. A
``chaos(...)`` layer injects failures, delays or fake results at a rate, so
a test, a staging run or ``paios-reliability doctor --chaos`` can watch the
retries, breakers, fallbacks and failovers around it do their job.

It is **off** unless switched on at run time (``PAIOS_CHAOS=1`` in the
environment when the library is imported, or :func:`set_chaos`), and off it
costs one list lookup per call: production code can keep the decorator.
"""

from __future__ import annotations

import functools
import math
import os
import random
import threading
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, cast

from .._core.clock import get_clock
from .._core.dispatch import callable_name, is_async_callable
from .._core.events import emit
from .._core.settings import Restorer

__all__ = ["Chaos", "chaos", "chaos_enabled", "set_chaos"]

P = ParamSpec("P")
T = TypeVar("T")

_TRUE = frozenset({"1", "true", "yes", "on"})
# One cell read by every wrapper: a list item is the cheapest switch to test.
_SWITCH = [os.environ.get("PAIOS_CHAOS", "").strip().lower() in _TRUE]
_switch_lock = threading.Lock()


def set_chaos(enabled: bool) -> Restorer:
    """Switch every ``chaos(...)`` layer on or off, process-wide.

    Returns:
        A :class:`Restorer` that puts the previous setting back (call it or
        use it as a context manager), so settings nest.
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"set_chaos(...) takes a bool, got {enabled!r}")
    with _switch_lock:
        old = _SWITCH[0]
        _SWITCH[0] = enabled

    def undo() -> None:
        with _switch_lock:
            _SWITCH[0] = old

    return Restorer(undo)


def chaos_enabled() -> bool:
    """Whether chaos layers inject anything now."""
    return _SWITCH[0]


def _rate(label: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0.0 <= value <= 1.0
    ):
        raise ValueError(
            f"chaos({label}=...) must be a number in [0, 1], got {value!r}"
        )
    return float(value)


def _latency(value: object) -> tuple[float, float] | None:
    if value is None:
        return None
    low = high = value
    if isinstance(value, tuple) and len(value) == 2:
        low, high = value
    for bound in (low, high):
        if (
            isinstance(bound, bool)
            or not isinstance(bound, (int, float))
            or not math.isfinite(bound)
            or bound < 0
        ):
            raise ValueError(
                "chaos(latency=...) must be seconds >= 0 or a (low, high) pair, "
                f"got {value!r}"
            )
    low_f, high_f = float(cast(float, low)), float(cast(float, high))
    if high_f < low_f:
        raise ValueError(f"chaos(latency=...) needs low <= high, got {value!r}")
    return low_f, high_f


class Chaos:
    """What :func:`chaos` returns: a decorator (sync or async), see there."""

    __slots__ = (
        "_lock",
        "_random",
        "fault",
        "fault_rate",
        "latency",
        "latency_rate",
        "result",
        "result_rate",
    )

    def __init__(
        self,
        *,
        fault_rate: float,
        fault: BaseException | type[BaseException] | Callable[[], BaseException],
        latency: float | tuple[float, float] | None,
        latency_rate: float,
        result: Any,
        result_rate: float,
        seed: int | None,
    ) -> None:
        self.fault_rate = _rate("fault_rate", fault_rate)
        self.latency_rate = _rate("latency_rate", latency_rate)
        self.result_rate = _rate("result_rate", result_rate)
        self.latency = _latency(latency)
        if self.latency_rate and self.latency is None:
            raise ValueError("chaos(latency_rate=...) needs latency= (seconds)")
        if not (
            isinstance(fault, BaseException)
            or (isinstance(fault, type) and issubclass(fault, BaseException))
            or callable(fault)
        ):
            raise TypeError(
                "chaos(fault=...) takes an exception, an exception class or a "
                f"callable returning one, got {fault!r}"
            )
        self.fault = fault
        self.result = result
        seeded: object = seed
        if seeded is not None and (
            isinstance(seeded, bool) or not isinstance(seeded, int)
        ):
            raise TypeError(f"chaos(seed=...) must be an int or None, got {seed!r}")
        self._random = random.Random(seed)  # noqa: S311 - fault injection, not crypto
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"chaos(fault_rate={self.fault_rate!r}, latency={self.latency!r}, "
            f"latency_rate={self.latency_rate!r}, result_rate={self.result_rate!r})"
        )

    def _draw(self) -> tuple[bool, float, bool]:
        """(inject a fault, seconds of latency, return the fake result): one call."""
        with self._lock:
            rand = self._random.random
            fault = rand() < self.fault_rate
            delay = 0.0
            if self.latency is not None and rand() < self.latency_rate:
                low, high = self.latency
                delay = low if low == high else self._random.uniform(low, high)
            fake = rand() < self.result_rate
        return fault, delay, fake

    def _make_fault(self) -> BaseException:
        fault = self.fault
        if isinstance(fault, BaseException):
            # A fresh copy each time: one instance raised again and again
            # would pile up tracebacks and notes.
            try:
                return type(fault)(*fault.args)
            except Exception:  # noqa: BLE001 - an exception that cannot be rebuilt
                return fault
        made = fault()
        if not isinstance(made, BaseException):
            raise TypeError(f"chaos(fault=...) returned {made!r}, not an exception")
        return made

    def _plan(self, name: str) -> tuple[float, bool]:
        """Decide this call's chaos; raise the fault, or return (delay, fake)."""
        fault, delay, fake = self._draw()
        if fault:
            error = self._make_fault()
            emit(
                "chaos",
                "injected",
                subject=name,
                kind="fault",
                error_type=type(error).__name__,
            )
            raise error
        if delay:
            emit(
                "chaos",
                "injected",
                subject=name,
                kind="latency",
                seconds=round(delay, 6),
            )
        if fake:
            emit("chaos", "injected", subject=name, kind="result")
        return delay, fake

    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        name = callable_name(fn)
        switch, plan = _SWITCH, self._plan
        if is_async_callable(fn):
            afn = cast(Callable[P, Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                if not switch[0]:
                    return await afn(*args, **kwargs)
                delay, fake = plan(name)
                if delay:
                    await get_clock().asleep(delay)
                if fake:
                    return self.result
                return await afn(*args, **kwargs)

            return cast(Callable[P, T], async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            if not switch[0]:
                return fn(*args, **kwargs)
            delay, fake = plan(name)
            if delay:
                get_clock().sleep(delay)
            if fake:
                return cast(T, self.result)
            return fn(*args, **kwargs)

        return wrapper


def chaos(
    *,
    fault_rate: float = 0.0,
    fault: BaseException
    | type[BaseException]
    | Callable[[], BaseException] = ConnectionError,
    latency: float | tuple[float, float] | None = None,
    latency_rate: float = 0.0,
    result: Any = None,
    result_rate: float = 0.0,
    seed: int | None = None,
) -> Chaos:
    """Inject failures, delays or fake results into a function, at a rate.

    While chaos is switched on (``PAIOS_CHAOS=1`` when the library is
    imported, or :func:`set_chaos`), each call of the decorated function
    (sync or async) first draws: with probability ``fault_rate`` it raises
    ``fault`` (a fresh exception: an instance is copied, a class or factory
    is called) without running the function; else with ``latency_rate`` it
    sleeps ``latency`` seconds (a ``(low, high)`` pair: uniform between;
    ``await``-ed in async code, through the process clock, so a
    :class:`FakeClock` takes it); then with ``result_rate`` it returns
    ``result`` instead of running the function. Switched off, the function
    runs straight through, at the cost of one list lookup.

    Put it *inside* the policies you want to rehearse
    (``resilient(...)(chaos(...)(fn))``): retries, breakers, fallbacks and
    failovers then see the injected failures as real ones. ``seed`` makes
    the sequence of draws reproducible; draws are thread-safe.

    Events: ``chaos.injected`` (info; ``kind`` = ``fault``, ``latency`` or
    ``result``).

    Raises:
        ValueError: A rate outside [0, 1], a negative or inverted latency,
            or ``latency_rate`` without ``latency``.
        TypeError: A ``fault`` that is no exception, or a non-int seed.
    """
    return Chaos(
        fault_rate=fault_rate,
        fault=fault,
        latency=latency,
        latency_rate=latency_rate,
        result=result,
        result_rate=result_rate,
        seed=seed,
    )


def doctor_check(_tmp: object) -> str:
    """Self-check for ``paios-reliability doctor --chaos``: the policies under chaos.

    A retried call over a 50% fault rate, a breaker that opens under a 100%
    fault rate and a failover that answers from its healthy entry, all with
    chaos switched on for the check only; then chaos off costs nothing.
    """
    from .failover import failover
    from .resilient import resilient

    with set_chaos(True):
        from .._core.settings import set_testing

        with set_testing(True):
            flaky = chaos(fault_rate=0.5, seed=7)(lambda: "ok")
            retried = resilient(name="doctor-chaos", retry={"attempts": 10})(flaky)
            answers = [retried() for _ in range(20)]
            if answers != ["ok"] * 20:
                raise AssertionError(f"retry did not recover from chaos: {answers}")
            dead = chaos(fault_rate=1.0)(lambda: "never")
            chain = failover(
                [("dead", dead), ("healthy", lambda: "healthy")],
                name="doctor-chaos",
                breaker={"failure_threshold": 2},
            )
            served = [chain() for _ in range(5)]
            if served != ["healthy"] * 5:
                raise AssertionError(f"failover did not route around chaos: {served}")
            breaker = chain.breakers[0]
            if breaker is None or breaker.stats.state != "open":
                raise AssertionError("the dead entry's breaker did not open")
    quiet = chaos(fault_rate=1.0)(lambda: "off")
    if quiet() != "off":
        raise AssertionError("chaos injected while switched off")
    return "retry, breaker and failover held under injected faults; off is inert"
