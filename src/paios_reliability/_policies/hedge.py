"""Hedged requests: ``hedge(...)``.

Tail latency hurts interactive agents: when one attempt is slower than
usual, a second one started a little later often answers first ("The Tail
at Scale"). A hedge starts another attempt when the first has not answered
within ``delay`` (or the observed ``percentile`` of recent latencies); the
first success wins and the others are cancelled (coroutines) or abandoned
and counted (sync functions, which must be declared idempotent). Hedges can
draw on a :class:`RetryBudget`, so a slow dependency never doubles its load.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from .._core import settings as _config
from .._core.checks import check_count, check_optional_number
from .._core.dispatch import callable_name, is_async_callable
from .._core.events import emit

if TYPE_CHECKING:
    from .budget import RetryBudget

__all__ = ["Hedge", "hedge"]

P = ParamSpec("P")
T = TypeVar("T")

# Latencies kept for the percentile, and how many are needed before it is used.
_SAMPLES = 512
_MIN_SAMPLES = 20


class Hedge:
    """What :func:`hedge` returns: a decorator (see there)."""

    __slots__ = (
        "_lock",
        "_samples",
        "_threshold",
        "_until_refresh",
        "abandoned",
        "budget",
        "delay",
        "hedges",
        "idempotent",
        "max_hedges",
        "percentile",
        "wins",
    )

    def __init__(
        self,
        *,
        delay: float | None,
        percentile: float,
        max_hedges: int,
        budget: RetryBudget | None,
        idempotent: bool,
    ) -> None:
        from .budget import RetryBudget

        check_optional_number("hedge", "delay", delay, zero=True)
        pct: object = percentile
        if (
            isinstance(pct, bool)
            or not isinstance(pct, (int, float))
            or not 0 < pct < 1
        ):
            raise ValueError(
                f"hedge(percentile=...) must be in (0, 1), got {percentile!r}"
            )
        check_count("hedge", "max_hedges", max_hedges)
        if budget is not None and not isinstance(budget, RetryBudget):
            raise TypeError(
                f"hedge(budget=...) must be a RetryBudget or None, got {budget!r}"
            )
        self.delay = None if delay is None else float(delay)
        self.percentile = float(percentile)
        self.max_hedges = max_hedges
        self.budget = budget
        self.idempotent = bool(idempotent)
        self._lock = threading.Lock()
        self._samples: deque[float] = deque(maxlen=_SAMPLES)
        self._threshold: float | None = None
        self._until_refresh = 0
        self.hedges = 0  # hedged attempts started
        self.wins = 0  # calls a hedge answered
        self.abandoned = 0  # sync attempts left running after another won

    def __repr__(self) -> str:
        return (
            f"hedge(delay={self.delay!r}, percentile={self.percentile!r}, "
            f"max_hedges={self.max_hedges!r})"
        )

    # -- the shared decisions --------------------------------------------------------

    def wait_before_hedge(self) -> float | None:
        """Seconds to wait for an attempt before hedging; ``None``: do not hedge."""
        if self.delay is not None:
            return self.delay
        with self._lock:
            if len(self._samples) < _MIN_SAMPLES:
                return None
            if self._until_refresh <= 0 or self._threshold is None:
                ordered = sorted(self._samples)
                index = min(len(ordered) - 1, int(self.percentile * len(ordered)))
                self._threshold = ordered[index]
                self._until_refresh = 32  # sorting on every call would cost more
            self._until_refresh -= 1
            return self._threshold

    def observe(self, seconds: float) -> None:
        with self._lock:
            self._samples.append(seconds)

    def may_hedge(self, name: str, started: int) -> bool:
        """Whether another attempt may start now (attempt cap and budget)."""
        if started > self.max_hedges:
            return False
        budget = self.budget
        if budget is not None and not budget.try_withdraw():
            return False
        with self._lock:
            self.hedges += 1
        emit("hedge", "started", level="debug", subject=name, attempt=started + 1)
        return True

    async def amay_hedge(self, name: str, started: int) -> bool:
        if started > self.max_hedges:
            return False
        budget = self.budget
        if budget is not None and not await budget.atry_withdraw():
            return False
        with self._lock:
            self.hedges += 1
        emit("hedge", "started", level="debug", subject=name, attempt=started + 1)
        return True

    def won(self, name: str, index: int, losers: int) -> None:
        if index == 0:
            return
        with self._lock:
            self.wins += 1
        emit("hedge", "won", subject=name, attempt=index + 1, cancelled=losers)

    # -- drivers ---------------------------------------------------------------------

    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        name = callable_name(fn)
        if is_async_callable(fn):
            afn = cast(Callable[P, Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                if not _config._state.active:
                    return await afn(*args, **kwargs)
                return await self._arun(name, functools.partial(afn, *args, **kwargs))

            return cast(Callable[P, T], async_wrapper)
        if not self.idempotent:
            raise TypeError(
                f"hedge() on the sync function {name}: a sync attempt cannot be "
                "stopped, so a hedge runs it twice; declare it safe with "
                "hedge(..., idempotent=True)"
            )

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            if not _config._state.active:
                return fn(*args, **kwargs)
            return cast(T, self._run(name, functools.partial(fn, *args, **kwargs)))

        return wrapper

    async def _arun(self, name: str, call: Callable[[], Awaitable[Any]]) -> Any:
        import asyncio

        from .._core.aio import require_asyncio

        require_asyncio("hedge()")
        began = time.monotonic()
        tasks: list[asyncio.Task[Any]] = [asyncio.ensure_future(call())]
        first_error: BaseException | None = None
        try:
            while True:
                pending = [t for t in tasks if not t.done()]
                wait = self.wait_before_hedge() if pending else None
                if pending:
                    done, _ = await asyncio.wait(
                        pending, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                    )
                else:
                    done = set()
                for task in tasks:
                    if task in done or (task.done() and not task.cancelled()):
                        error = task.exception()
                        if error is None:
                            self.observe(time.monotonic() - began)
                            index = tasks.index(task)
                            self.won(name, index, sum(1 for t in tasks if not t.done()))
                            return task.result()
                        if first_error is None:
                            first_error = error
                if all(t.done() for t in tasks):
                    if len(tasks) > self.max_hedges or not await self.amay_hedge(
                        name, len(tasks)
                    ):
                        assert first_error is not None
                        raise first_error
                    tasks.append(asyncio.ensure_future(call()))
                elif not done and await self.amay_hedge(name, len(tasks)):
                    tasks.append(asyncio.ensure_future(call()))
                elif not done:
                    # No more hedges: wait for whichever attempt ends first.
                    await asyncio.wait(
                        [t for t in tasks if not t.done()],
                        return_when=asyncio.FIRST_COMPLETED,
                    )
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()
            for task in tasks:
                if task.done() and not task.cancelled():
                    task.exception()  # retrieved: no "never retrieved" warning

    def _run(self, name: str, call: Callable[[], Any]) -> Any:
        from concurrent.futures import FIRST_COMPLETED, Future, wait

        began = time.monotonic()
        futures: list[Future[Any]] = []

        def start() -> None:
            future: Future[Any] = Future()

            def work() -> None:
                try:
                    future.set_result(call())
                except BaseException as exc:  # noqa: BLE001 - handed to the caller
                    future.set_exception(exc)

            threading.Thread(target=work, name=f"hedge:{name}", daemon=True).start()
            futures.append(future)

        start()
        first_error: BaseException | None = None
        seen: set[int] = set()
        while True:
            pending = [f for f in futures if not f.done()]
            delay = self.wait_before_hedge() if pending else None
            if pending:
                wait(pending, timeout=delay, return_when=FIRST_COMPLETED)
            for index, future in enumerate(futures):
                if future.done() and index not in seen:
                    seen.add(index)
                    error = future.exception()
                    if error is None:
                        self.observe(time.monotonic() - began)
                        losers = sum(1 for f in futures if not f.done())
                        with self._lock:
                            self.abandoned += losers
                        self.won(name, index, losers)
                        return future.result()
                    if first_error is None:
                        first_error = error
            if all(f.done() for f in futures):
                if not self.may_hedge(name, len(futures)):
                    assert first_error is not None
                    raise first_error
                start()
            elif self.may_hedge(name, len(futures)):
                start()
            else:
                wait([f for f in futures if not f.done()], return_when=FIRST_COMPLETED)


def hedge(
    *,
    delay: float | None = None,
    percentile: float = 0.95,
    max_hedges: int = 1,
    budget: RetryBudget | None = None,
    idempotent: bool = False,
) -> Hedge:
    """Start another attempt when the first is slow; the first success wins.

    An attempt that has not answered within ``delay`` seconds (default: the
    ``percentile`` of the last 512 latencies, once 20 are known; until then
    no hedging) gets a companion, up to ``max_hedges`` extra attempts. The
    first attempt to **succeed** answers the call; the others are cancelled
    (coroutine functions, under asyncio) or abandoned and counted in
    ``.abandoned`` (sync functions run each attempt in a thread that cannot
    be stopped, so they must be declared ``idempotent=True``). An attempt
    that fails does not end the call while another runs; when every attempt
    failed the first failure is raised. Each hedge takes one retry from
    ``budget`` when given; a refused one is not started.

    Put it inside ``retry``/``resilient`` (``resilient(...)(hedge(...)(fn))``)
    so the stack's timeout bounds the hedged call as a whole.

    Events: ``hedge.started`` (debug), ``hedge.won`` (info; a hedge answered,
    ``cancelled`` = attempts cancelled or abandoned). Counters: ``.hedges``,
    ``.wins``, ``.abandoned``.

    Raises:
        ValueError: A negative delay, a percentile outside (0, 1), or
            ``max_hedges`` < 1.
        TypeError: A non-budget ``budget``, or (when decorating) a sync
            function without ``idempotent=True``.
    """
    return Hedge(
        delay=delay,
        percentile=percentile,
        max_hedges=max_hedges,
        budget=budget,
        idempotent=idempotent,
    )
