"""``resilient``: the whole call-policy stack in one decorator, in the right order.

From the outside in::

    error boundary -> [call budget] -> retry -> circuit breaker -> rate limit
        -> bulkhead -> timeout -> operation

Why this order: the boundary sees only the final outcome; retry wraps
everything that can fail transiently; the breaker counts each attempt; the
limiter and bulkhead admit each attempt; the timeout bounds each attempt.

One budget bounds the whole call (``deadline``, by default the retry
deadline): every attempt sees it through :func:`remaining`, so each
attempt's timeout is ``min(timeout, remaining())``, limiter and bulkhead
waits stop at it, and retry never sleeps across it. A rejection whose
``retry_after`` does not fit (an open breaker, a full bulkhead, a rate
limit) fails the call at once. The per-call state (attempts, an abandoned
worker) lives in the retry run and in a context variable, never on the
shared decorator.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from .._core import clock as _clock
from .._core import settings as _config
from .._core.checks import check_count
from .._core.dispatch import (
    is_async_callable,
    through_method_descriptors,
)
from .._core.otel import TRACING, async_span, sync_span
from .resilient_stack import (
    UNSET,
    _check_policy,
    _Facts,
    _keyed_layers,
    _retry_layer,
    _seconds,
    _Stack,
    _with_retry_budget,
)
from .timeout import _current as _deadline_var

if TYPE_CHECKING:
    from ..typing import CallPolicy, ResilientDecorator
    from .budget import RetryBudget
    from .outcome import Outcome

__all__ = ["resilient"]

P = ParamSpec("P")
T = TypeVar("T")


# -- running calls -------------------------------------------------------------------


class _OutcomeRun:
    """One ``outcome()`` call: the shared core of the sync and async drivers."""

    __slots__ = ("clock", "record", "stack", "start", "token", "trace", "trace_id")

    def __init__(self, stack: _Stack, identity: object) -> None:
        from .._core.trace import current_trace, trace
        from .outcome import CallRecord, current

        self.stack = stack
        self.clock = _clock.get_clock()
        self.start = self.clock.monotonic()
        self.record = CallRecord(identity)
        self.token = current.set(self.record)
        trace_id = current_trace().get("trace_id")
        self.trace: Any = None
        if trace_id is None:
            # Give the call a trace id of its own, so its events carry it too.
            self.trace = trace()
            trace_id = self.trace.__enter__()["trace_id"]
        self.trace_id: str | None = trace_id

    def close(self) -> None:
        from .outcome import current

        if self.trace is not None:
            self.trace.__exit__(None, None, None)
        current.reset(self.token)

    def outcome(
        self, ok: bool, value: Any, exc: BaseException | None, *, fallback: bool
    ) -> Outcome[Any]:
        from .._core.taxonomy import classify
        from .outcome import Outcome

        return Outcome(
            ok=ok,
            value=value,
            failure=None if exc is None else classify(exc),
            attempts=self.record.attempts,
            elapsed=max(0.0, self.clock.monotonic() - self.start),
            fallback_used=fallback,
            trace_id=self.trace_id,
            error=exc,
        )

    def succeeded(self, value: Any) -> Outcome[Any]:
        """The stack returned: a result, or a stale one served for a failure."""
        stale = self.record.stale_error
        if stale is None:
            return self.outcome(True, value, None, fallback=False)
        from dataclasses import replace

        return replace(self.outcome(False, value, stale, fallback=False), stale=True)

    def failed(
        self, exc: Exception, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> tuple[bool, Any]:
        """After a final failure: (fallback used, the value or an awaitable).

        A fallback that fails too (a failover chain) is returned as a
        :class:`_FallbackFailed`, for the Outcome to report.
        """
        from .boundary import never_a_fallback

        if never_a_fallback(exc):
            raise exc
        boundary = self.stack.boundary
        if boundary is None:
            return False, None
        from .boundary import _record

        _record(boundary.name or self.stack.name, exc, mode="outcome")
        try:
            return True, boundary._fallback_for(exc, args, kwargs)
        except Exception as final:
            if never_a_fallback(final):
                raise
            return False, _FallbackFailed(final)

    def ended(self, exc: Exception, used: bool, value: Any) -> Outcome[Any]:
        """The Outcome of a call that failed with ``exc``, after :meth:`failed`."""
        if isinstance(value, _FallbackFailed):
            return self.outcome(False, None, value.error, fallback=False)
        return self.outcome(False, value, exc, fallback=used)


class _FallbackFailed:
    """The fallback itself failed (a failover chain ran out): the Outcome's error."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


def _asyncio_only_check(stack_name: str, parts: list[str]) -> Callable[[], None]:
    def check() -> None:
        from .._core.aio import running_asyncio_loop

        if running_asyncio_loop() is None:
            from .._core.aio import require_asyncio

            require_asyncio(f"resilient({stack_name!r}) with {', '.join(parts)}")

    return check


def resilient(
    *,
    name: str,
    timeout: float | None = None,
    retry: bool | Mapping[str, Any] | CallPolicy | None = None,
    breaker: CallPolicy | None = None,
    limiter: CallPolicy | None = None,
    bulkhead: CallPolicy | None = None,
    fallback: Any = UNSET,
    deadline: float | None = None,
    retry_timeouts: int = 1,
    retry_budget: RetryBudget | None = None,
    key: Callable[..., object] | None = None,
    stale_if_error: float | None = None,
) -> ResilientDecorator:
    """Put the standard policy stack around a sync or async function.

    The layers, outermost first: :func:`error_boundary` (only when
    ``fallback`` is given) → the call budget → :func:`retry` → ``breaker`` →
    ``limiter`` → ``bulkhead`` → :func:`timeout` (per attempt) → the
    function. Layers left as ``None`` are skipped. The result keeps the
    function's signature, annotations, docstring and sync/async nature, so
    frameworks that read them (the ``mcp`` SDK's ``MCPServer.tool()``,
    FastAPI, Typer) derive the same schema as for the bare function.

    **One budget.** ``deadline`` (default: the retry deadline) bounds the
    whole call, all attempts and waits included. Each attempt's timeout is
    ``min(timeout, remaining())``; an enclosing :func:`deadline` block is
    honoured; no wait crosses the budget (retry gives up at once with the
    last error and a note saying why); a ``CircuitOpenError``,
    ``BulkheadFullError`` or ``RateLimitedError`` whose ``retry_after`` is
    longer than ``retry_after_max`` or does not fit the budget fails the
    call at once. A timed-out attempt is retried at most ``retry_timeouts``
    times. An async attempt without a timeout is cancelled at the budget; a
    sync one cannot be (a warning says so: give it a ``timeout``).

    **Sync timeouts.** The timed-out attempt's worker thread keeps running
    (Python cannot stop it): it keeps its bulkhead slot until it ends, and
    retry does not start another attempt beside it (it waits for it within
    the backoff and the budget, or gives up saying so).

    **What it does, in numbers.** The decorated function has ``.policy``
    (a read-only :class:`StackPolicy`): ``worst_case_seconds``, an upper
    bound on one call's wall time computed from this configuration, and
    ``describe()``, one line per layer. Contradictions (a retry deadline
    shorter than one timeout, a breaker that stays open longer than the
    budget, a sync function with a budget but no timeout...) are logged as
    a ``resilient.contradiction`` warning event when the function is
    decorated, and listed in ``policy.warnings``.

    **Outcomes.** ``f.outcome(*args, **kwargs)`` (``await`` it for a
    coroutine function) runs the same stack and returns an :class:`Outcome`
    instead of raising: ``ok``, ``value``, ``failure``, ``attempts``,
    ``elapsed``, ``fallback_used``, ``trace_id``. On methods, pass the
    instance: ``Cls.method.outcome(obj, ...)``.

    **Event loops.** Async stacks run under asyncio and under trio (through
    anyio, the ``trio`` extra). A ``Bulkhead`` or a store-backed breaker or
    limiter supports only asyncio for now: under another loop the first call
    raises :class:`UnsupportedEventLoopError`, and no fallback ever hides
    that (nor any other sign of a misused library).

    Args:
        name: Name of the operation in events, notes and logs.
        timeout: Seconds per attempt (see :func:`timeout`), or ``None``.
        retry: ``True`` for :func:`retry`'s defaults, a dict of
            :func:`retry` options, a ``retry(...)`` decorator, or ``None``
            for no retries.
        breaker: A :class:`CircuitBreaker` (or any :class:`CallPolicy`).
        limiter: A :class:`RateLimiter` (or any :class:`CallPolicy`).
        bulkhead: A :class:`Bulkhead` (or any :class:`CallPolicy`).
        fallback: If given, an :func:`error_boundary` returns it (or
            ``fallback(exc)`` when callable) instead of raising. Leave it
            unset to let errors propagate.
        deadline: The budget of the whole call in seconds (default: the
            retry deadline; without retry, none). A retry given as ``True``
            or a dict takes it as its deadline.
        retry_timeouts: How many timed-out attempts are retried (>= 0).
        retry_budget: A :class:`RetryBudget` the retry layer draws on (see
            ``retry(budget=...)``); needs ``retry`` to be ``True``, a dict or
            a ``retry(...)`` decorator of this library.
        key: A function of the call's arguments (host, provider, tenant,
            tool) choosing the per-key policy of every keyed ``breaker``,
            ``limiter`` and ``bulkhead`` (``CircuitBreaker.keyed(...)`` and
            friends) for each call.
        stale_if_error: Seconds: when the stack fails with a transient error,
            return the last good result for the same (hashable) arguments if
            it is younger than this (``resilient.stale_served`` event,
            ``Outcome.stale``). At most 1024 argument sets are remembered.

    Returns:
        A decorator; the functions it returns have ``.policy`` and
        ``.outcome``.

    Raises:
        TypeError: If a layer is not a decorator object, or a number is not one.
        ValueError: If ``name`` is empty, ``timeout`` or ``deadline`` is not
            positive, ``retry_timeouts`` is negative, or on invalid retry
            options.
    """
    given: object = name
    if not isinstance(given, str) or not given:
        raise ValueError(
            f"resilient(name=...) must be a non-empty string, got {name!r}"
        )
    for what, value in (
        ("breaker", breaker),
        ("limiter", limiter),
        ("bulkhead", bulkhead),
    ):
        _check_policy(value, what)
    breaker, limiter, bulkhead = _keyed_layers(key, breaker, limiter, bulkhead)
    if timeout is not None:
        from .timeout import timeout as make_timeout

        make_timeout(timeout)  # the same checks and messages as timeout()
    budget = _seconds(deadline, "deadline")
    stale_for = _seconds(stale_if_error, "stale_if_error")
    check_count("resilient", "retry_timeouts", retry_timeouts, minimum=0)
    boundary = None
    if fallback is not UNSET:
        from .boundary import error_boundary

        boundary = error_boundary(fallback=fallback, name=name)
    retry_layer = _retry_layer(retry, name, budget)
    if retry_budget is not None:
        retry_layer = _with_retry_budget(retry_layer, retry_budget)
    stack = _Stack(
        name=name,
        timeout=None if timeout is None else float(timeout),
        retry=retry_layer,
        breaker=breaker,
        limiter=limiter,
        bulkhead=bulkhead,
        boundary=boundary,
        deadline=budget,
        retry_timeouts=retry_timeouts,
        fallback=fallback,
    )

    @through_method_descriptors
    def decorate(fn: Callable[P, T]) -> Callable[P, T]:
        return _decorate(stack, fn, stale_for)

    return cast("ResilientDecorator", decorate)


def never_a_fallback(exc: BaseException) -> bool:
    from .boundary import never_a_fallback as check

    return check(exc)


def _decorate(
    stack: _Stack, fn: Callable[P, T], stale_for: float | None = None
) -> Callable[P, T]:
    from .._core.events import emit

    identity = object()
    inner = stack.compose(fn, identity)
    if stale_for is not None:
        from .stale import stale_layer

        inner = stale_layer(inner, stale_for, stack.name, identity)
    top = inner if stack.boundary is None else stack.boundary(inner)
    policy = stack.policy(fn)
    for problem in policy.warnings:
        emit(
            "resilient",
            "contradiction",
            level="warning",
            subject=stack.name,
            problem=problem,
        )
    entry = _async_entry if is_async_callable(fn) else _sync_entry
    wrapper, outcome = entry(stack, fn, top, inner, identity)
    wrapper.policy = policy  # type: ignore[attr-defined]
    wrapper.outcome = outcome  # type: ignore[attr-defined]
    return cast(Callable[P, T], wrapper)


def _budget_enter(budget: float | None) -> Callable[[], Any]:
    """Enter the call budget (the retry layer sets its own): returns the token."""
    config, clocks, var = _config, _clock, _deadline_var
    system, monotonic = _clock.SYSTEM_CLOCK, time.monotonic

    def enter() -> Any:
        if budget is None or not config._state.active:
            return None
        clock = clocks._default
        start = monotonic() if clock is system else clock.monotonic()
        mine, outer = start + budget, var.get()
        return var.set(mine if outer is None or mine < outer else outer)

    return enter


def _async_entry(
    stack: _Stack,
    fn: Callable[..., Any],
    top: Callable[..., Any],
    inner: Callable[..., Any],
    identity: object,
) -> tuple[Callable[..., Any], Callable[..., Any]]:
    facts = _Facts()
    for layer in (stack.breaker, stack.limiter, stack.bulkhead):
        if layer is not None:
            facts.describe_policy("", layer)
    check = (
        _asyncio_only_check(stack.name, facts.asyncio_only)
        if facts.asyncio_only
        else None
    )
    enter, var = _budget_enter(stack.deadline), _deadline_var

    async def run(call: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        if check is not None:
            check()
        token = enter()
        try:
            return await call(*args, **kwargs)
        finally:
            if token is not None:
                var.reset(token)

    name, tracing = stack.name, TRACING
    if check is None and stack.deadline is None:

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            if tracing.tracer is not None:
                return await async_span(tracing.tracer, name, run, top, args, kwargs)
            return await top(*args, **kwargs)

    else:

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            if tracing.tracer is not None:
                return await async_span(tracing.tracer, name, run, top, args, kwargs)
            # run() inlined: one coroutine less on every call.
            if check is not None:
                check()
            token = enter()
            try:
                return await top(*args, **kwargs)
            finally:
                if token is not None:
                    var.reset(token)

    async def aoutcome(*args: Any, **kwargs: Any) -> Outcome[Any]:
        call = _OutcomeRun(stack, identity)
        try:
            value = await run(inner, args, kwargs)
        except Exception as exc:  # noqa: BLE001 - reported in the Outcome
            used, value = call.failed(exc, args, kwargs)
            if inspect.isawaitable(value):
                try:
                    value = await value
                except Exception as final:
                    if never_a_fallback(final):
                        raise
                    used, value = False, _FallbackFailed(final)
            return call.ended(exc, used, value)
        finally:
            call.close()
        return call.succeeded(value)

    return async_wrapper, aoutcome


def _sync_entry(
    stack: _Stack,
    fn: Callable[..., Any],
    top: Callable[..., Any],
    inner: Callable[..., Any],
    identity: object,
) -> tuple[Callable[..., Any], Callable[..., Any]]:
    enter, var = _budget_enter(stack.deadline), _deadline_var

    def srun(call: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        token = enter()
        try:
            return call(*args, **kwargs)
        finally:
            if token is not None:
                var.reset(token)

    name, tracing = stack.name, TRACING
    if stack.deadline is None:

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if tracing.tracer is not None:
                return sync_span(tracing.tracer, name, srun, top, args, kwargs)
            return top(*args, **kwargs)

    else:

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if tracing.tracer is not None:
                return sync_span(tracing.tracer, name, srun, top, args, kwargs)
            return srun(top, args, kwargs)

    def outcome(*args: Any, **kwargs: Any) -> Outcome[Any]:
        call = _OutcomeRun(stack, identity)
        try:
            value = srun(inner, args, kwargs)
        except Exception as exc:  # noqa: BLE001 - reported in the Outcome
            return call.ended(exc, *call.failed(exc, args, kwargs))
        finally:
            call.close()
        return call.succeeded(value)

    return wrapper, outcome
