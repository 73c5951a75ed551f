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
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from .._core import clock as _clock
from .._core import settings as _config
from .._core.dispatch import (
    callable_name,
    is_async_callable,
    through_method_descriptors,
)
from .._core.otel import TRACING, async_span, sync_span
from .timeout import _current as _deadline_var

if TYPE_CHECKING:
    from ..typing import CallPolicy, ResilientDecorator
    from .boundary import error_boundary
    from .budget import RetryBudget
    from .outcome import Outcome
    from .retry import _Retry

__all__ = ["Layer", "StackPolicy", "resilient"]

P = ParamSpec("P")
T = TypeVar("T")


class _Unset:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<unset>"


UNSET: Any = _Unset()

# Scheduling latency a real call may add on top of worst_case_seconds.
_MARGIN = "plus thread and event-loop wake-up latency (milliseconds)"


@dataclass(frozen=True, slots=True)
class Layer:
    """One layer of a resilient stack, for :meth:`StackPolicy.describe`.

    Attributes:
        role: ``deadline``, ``error_boundary``, ``retry``, ``breaker``,
            ``limiter``, ``bulkhead``, ``timeout`` or ``operation``.
        text: What it does, in words.
    """

    role: str
    text: str


@dataclass(frozen=True, slots=True)
class StackPolicy:
    """What a ``resilient`` function does, read-only: ``fn.policy``.

    Attributes:
        name: The stack's name.
        is_async: Whether the function is a coroutine function.
        deadline: The budget of the whole call in seconds, or ``None``.
        timeout: The per-attempt timeout, or ``None``.
        retry_timeouts: How many timed-out attempts are retried.
        layers: The layers, outermost first, the operation last.
        worst_case_seconds: An upper bound on the wall time of one call,
            computed from the configuration (``math.inf`` when nothing
            bounds it), plus wake-up latency of milliseconds.
        warnings: Contradictions found in the configuration.
    """

    name: str
    is_async: bool
    deadline: float | None
    timeout: float | None
    retry_timeouts: int
    layers: tuple[Layer, ...]
    worst_case_seconds: float
    warnings: tuple[str, ...] = ()

    def describe(self) -> str:
        """One readable line per layer, after a summary with the worst case."""
        worst = _fmt(self.worst_case_seconds)
        flavour = "async" if self.is_async else "sync"
        lines = [f"{self.name} ({flavour}): worst case {worst} per call"]
        lines.extend(f"  {layer.role}: {layer.text}" for layer in self.layers)
        lines.extend(f"  warning: {text}" for text in self.warnings)
        return "\n".join(lines)


def _fmt(seconds: float | None) -> str:
    if seconds is None or math.isinf(seconds):
        return "unbounded"
    return f"{seconds:g}s"


# -- building the layers ----------------------------------------------------------


def _retry_layer(
    retry: bool | Mapping[str, Any] | CallPolicy | None,
    name: str,
    deadline: float | None,
) -> CallPolicy | None:
    if retry is None or retry is False:
        return None
    from .retry import retry as make_retry

    if retry is True:
        retry = {}
    if isinstance(retry, Mapping):
        options = dict(retry)
        options.setdefault("name", name)
        if deadline is not None:
            options.setdefault("deadline", deadline)
        return make_retry(**options)
    if callable(retry):
        return retry
    raise TypeError(
        "resilient(retry=...) takes True, a dict of retry() options, a "
        f"retry(...) decorator or None, got {retry!r}"
    )


def _with_retry_budget(layer: CallPolicy | None, budget: object) -> CallPolicy:
    from .budget import RetryBudget
    from .retry import _Retry

    if not isinstance(budget, RetryBudget):
        raise TypeError(
            f"resilient(retry_budget=...) must be a RetryBudget or None, got {budget!r}"
        )
    if layer is None:
        raise ValueError(
            "resilient(retry_budget=...) needs a retry layer: pass retry=True, "
            "a dict of retry() options or a retry(...) decorator"
        )
    if not isinstance(layer, _Retry):
        raise TypeError(
            "resilient(retry_budget=...) works with this library's retry(...) only, "
            f"got retry={layer!r}"
        )
    return layer.with_budget(budget)


def _keyed_layers(
    key: object, *layers: CallPolicy | None
) -> tuple[CallPolicy | None, ...]:
    """Give every keyed layer the stack's ``key`` function."""
    from .keyed import KeyedPolicy

    if key is not None and not callable(key):
        raise TypeError(
            f"resilient(key=...) must be a function of the call's arguments, got {key!r}"
        )
    keyed = [layer for layer in layers if isinstance(layer, KeyedPolicy)]
    if key is None:
        return layers
    if not keyed:
        raise ValueError(
            "resilient(key=...) needs a keyed breaker, limiter or bulkhead "
            "(CircuitBreaker.keyed(...), RateLimiter.keyed(...), Bulkhead.keyed(...))"
        )
    pick = cast(Callable[..., object], key)
    return tuple(
        layer.with_key(pick) if isinstance(layer, KeyedPolicy) else layer
        for layer in layers
    )


def _check_policy(value: object, what: str) -> None:
    if value is not None and not callable(value):
        raise TypeError(
            f"resilient({what}=...) must be a decorator object (policy(fn) -> fn), "
            f"got {value!r}"
        )


def _seconds(value: object, what: str, *, allow_none: bool = True) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"resilient({what}=...) must be a number of seconds, got {value!r}"
        )
    if math.isnan(value) or value <= 0:
        raise ValueError(f"resilient({what}=...) must be > 0, got {value!r}")
    return float(value)


def _ours(layer: object, module: str, cls: str) -> bool:
    """isinstance without importing the module when the user never did."""
    loaded = sys.modules.get(f"paios_reliability.{module}")
    return loaded is not None and isinstance(layer, getattr(loaded, cls))


def _memory_store(layer: object) -> bool:
    from .._stores import MemoryStore

    store = getattr(layer, "store", None) or getattr(layer, "_store", None)
    return store is None or isinstance(store, MemoryStore)


class _Facts:
    """What the stack's layers tell about waits, for the worst case and the text."""

    def __init__(self) -> None:
        self.layers: list[Layer] = []
        self.warnings: list[str] = []
        self.pre_wait = 0.0  # longest wait before an attempt (limiter, bulkhead)
        self.asyncio_only: list[str] = []
        self.breaker_reset: float | None = None

    def describe_policy(self, role: str, layer: object) -> None:
        if _ours(layer, "_policies.keyed", "KeyedPolicy"):
            k: Any = layer
            self.describe_policy(role, k.template)
            last = self.layers[-1]
            self.layers[-1] = Layer(
                last.role, f"per key (at most {k.max_keys} kept): {last.text}"
            )
            return
        if _ours(layer, "_policies.breaker", "CircuitBreaker"):
            b: Any = layer
            self.breaker_reset = float(b.reset_timeout)
            rule = f"{b.failure_threshold} consecutive failures"
            if b.failure_rate is not None:
                rule += f" or a failure rate of {b.failure_rate:g}"
            text = (
                f"{b.name!r} opens after {rule} for {b.reset_timeout:g}s; while "
                "open, calls fail at once with CircuitOpenError"
            )
            if not _memory_store(b):
                self.asyncio_only.append(f"CircuitBreaker {b.name!r} on a shared store")
        elif _ours(layer, "_policies.ratelimit", "RateLimiter"):
            r: Any = layer
            if r.block:
                wait = r.max_wait
                self.pre_wait += math.inf if wait is None else float(wait)
                how = f"waits up to {_fmt(wait)} for a slot (never past the deadline)"
            else:
                how = "refuses at once when out of budget"
            text = (
                f"{r.name!r} {r.rate:g} calls per {r.per:g}s (burst {r.burst}); {how}"
            )
            if not _memory_store(r):
                self.asyncio_only.append(f"RateLimiter {r.name!r} on a shared store")
        elif _ours(layer, "_policies.bulkhead", "Bulkhead"):
            h: Any = layer
            if h.max_queue:
                wait = h.max_wait
                self.pre_wait += math.inf if wait is None else float(wait)
                how = (
                    f"queue of {h.max_queue}, waits up to {_fmt(wait)} "
                    "(never past the deadline)"
                )
            else:
                how = "no queue: refuses at once when full"
            text = f"{h.name!r} {h.max_concurrent} at once, {how}"
            self.asyncio_only.append(f"Bulkhead {h.name!r}")
        else:
            text = repr(layer)
        self.layers.append(Layer(role, text))


class _Stack:
    """The layers of one decorated function, composed once at decoration."""

    def __init__(
        self,
        *,
        name: str,
        timeout: float | None,
        retry: CallPolicy | None,
        breaker: CallPolicy | None,
        limiter: CallPolicy | None,
        bulkhead: CallPolicy | None,
        boundary: error_boundary | None,
        deadline: float | None,
        retry_timeouts: int,
        fallback: Any,
    ) -> None:
        self.name = name
        self.timeout = timeout
        self.retry = retry
        self.breaker = breaker
        self.limiter = limiter
        self.bulkhead = bulkhead
        self.boundary = boundary
        self.deadline = deadline
        self.retry_timeouts = retry_timeouts
        self.fallback = fallback

    def our_retry(self) -> _Retry | None:
        from .retry import _Retry

        return self.retry if isinstance(self.retry, _Retry) else None

    def budget(self) -> float | None:
        """The budget of the whole call: ``deadline``, else the retry deadline."""
        if self.deadline is not None:
            return self.deadline
        ours = self.our_retry()
        return None if ours is None else ours.policy.budget

    def compose(self, fn: Callable[P, T], stack: object) -> Callable[P, T]:
        from .timeout import timeout as make_timeout

        is_async = is_async_callable(fn)
        wrapped = fn
        if self.timeout is not None:
            wrapped = make_timeout(self.timeout)(wrapped)
        elif is_async and self.budget() is not None:
            # No per-attempt timeout: the call budget still cancels the attempt.
            wrapped = make_timeout(math.inf)(wrapped)
        for layer in (self.bulkhead, self.limiter, self.breaker):
            if layer is not None:
                wrapped = layer(wrapped)
        ours = self.our_retry()
        if ours is not None:
            if self.deadline is not None and (
                ours.policy.deadline is None or ours.policy.deadline > self.deadline
            ):
                ours = ours.with_deadline(self.deadline)
            wrapped = ours.decorate(
                wrapped,
                room=self.timeout or 0.0,
                retry_timeouts=self.retry_timeouts,
                stack=stack,
            )
        elif self.retry is not None:
            wrapped = self.retry(wrapped)
        return wrapped

    # -- the policy, in words and numbers ---------------------------------------------

    def policy(self, fn: Callable[..., Any]) -> StackPolicy:
        is_async = is_async_callable(fn)
        facts = _Facts()
        budget = self.budget()
        if budget is not None:
            facts.layers.append(
                Layer(
                    "deadline",
                    f"{budget:g}s for the whole call, every attempt and wait included",
                )
            )
        if self.boundary is not None:
            facts.layers.append(
                Layer(
                    "error_boundary",
                    f"returns the fallback {self.fallback!r} after a final failure "
                    "(never for a misused library or an unsupported event loop)",
                )
            )
        attempts, gap = self._describe_retry(facts)
        for role, layer in (
            ("breaker", self.breaker),
            ("limiter", self.limiter),
            ("bulkhead", self.bulkhead),
        ):
            if layer is not None:
                facts.describe_policy(role, layer)
        run = self._describe_timeout(facts, is_async, budget)
        facts.layers.append(Layer("operation", callable_name(fn)))
        # Without a budget: every attempt, every wait before it, every gap.
        worst = (
            math.inf
            if attempts is None
            else attempts * (facts.pre_wait + run) + (attempts - 1) * gap
        )
        if budget is not None and not math.isinf(run):
            worst = min(worst, budget)
        self._contradictions(facts, is_async, budget)
        return StackPolicy(
            name=self.name,
            is_async=is_async,
            deadline=budget,
            timeout=self.timeout,
            retry_timeouts=self.retry_timeouts,
            layers=tuple(facts.layers),
            worst_case_seconds=worst,
            warnings=tuple(facts.warnings),
        )

    def _describe_retry(self, facts: _Facts) -> tuple[int | None, float]:
        """(attempts, longest gap between two attempts)."""
        ours = self.our_retry()
        if self.retry is None:
            return 1, 0.0
        if ours is None:
            facts.layers.append(Layer("retry", repr(self.retry)))
            return None, math.inf
        p = ours.policy
        gap = max(p.wait_max, p.retry_after_max)
        deadline = self.deadline if self.deadline is not None else p.deadline
        if p.deadline is not None and deadline is not None:
            deadline = min(deadline, p.deadline)
        parts = [
            f"up to {p.attempts} attempts" if p.attempts else "attempts unbounded",
            f"within {_fmt(deadline)}" if deadline is not None else "no deadline",
            f"backoff {p.wait_initial:g}s..{p.wait_max:g}s ({p.jitter} jitter)",
            f"retry_after honoured up to {p.retry_after_max:g}s if it fits the budget",
        ]
        if p.retry_budget is not None:
            b = p.retry_budget
            parts.append(
                f"retries drawn from budget {b.name!r} (ratio {b.ratio:g}, "
                f"floor {b.min_per_second:g}/s over {b.window:g}s)"
            )
        if self.timeout is not None:
            parts.append(
                f"a timed-out attempt is retried at most {self.retry_timeouts} "
                f"time{'s' if self.retry_timeouts != 1 else ''}"
            )
        if p.on_result is not None:
            parts.append("unacceptable results retried (on_result)")
        facts.layers.append(Layer("retry", ", ".join(parts)))
        if p.attempts == 1:
            facts.warnings.append("retry has attempts=1: it never retries")
        return p.attempts, gap

    def _describe_timeout(
        self, facts: _Facts, is_async: bool, budget: float | None
    ) -> float:
        """The longest an attempt can run."""
        if self.timeout is not None:
            how = (
                "cancelled"
                if is_async
                else "given up on; the worker thread is abandoned, keeps any "
                "bulkhead slot until it ends, and no retry overlaps it"
            )
            facts.layers.append(
                Layer(
                    "timeout",
                    f"{self.timeout:g}s per attempt (or what is left of the "
                    f"deadline, if less), then {how}",
                )
            )
            return self.timeout
        if is_async and budget is not None:
            facts.layers.append(
                Layer("timeout", "none per attempt; the call deadline cancels it")
            )
            return budget
        return math.inf

    def _contradictions(
        self, facts: _Facts, is_async: bool, budget: float | None
    ) -> None:
        warn = facts.warnings.append
        ours = self.our_retry()
        timeout = self.timeout
        if (
            ours is not None
            and ours.policy.deadline is not None
            and timeout
            and ours.policy.deadline < timeout
        ):
            warn(
                f"the retry deadline ({ours.policy.deadline:g}s) is shorter "
                f"than one timeout ({timeout:g}s): attempts are cut by the "
                "deadline, never by the timeout"
            )
        if self.deadline is not None and timeout and self.deadline < timeout:
            warn(
                f"the call deadline ({self.deadline:g}s) is shorter than one "
                f"timeout ({timeout:g}s): the timeout never applies"
            )
        if (
            ours is not None
            and self.deadline is not None
            and ours.policy.deadline is not None
            and ours.policy.deadline < self.deadline
        ):
            warn(
                f"the retry deadline ({ours.policy.deadline:g}s) is shorter than "
                f"the call deadline ({self.deadline:g}s): retrying stops early"
            )
        reset = facts.breaker_reset
        if reset is not None and budget is not None and reset > budget:
            warn(
                f"the breaker stays open {reset:g}s, longer than the "
                f"{budget:g}s budget: while open every call fails at once, "
                "retry never waits for it"
            )
        if (
            ours is not None
            and budget is not None
            and ours.policy.wait_initial >= budget
        ):
            warn(
                f"the first backoff ({ours.policy.wait_initial:g}s) is not shorter "
                f"than the budget ({budget:g}s): it never retries"
            )
        if not is_async and timeout is None and self.deadline is not None:
            warn(
                f"no timeout on a sync function: the {self.deadline:g}s deadline "
                "cannot stop a running attempt (add timeout=)"
            )


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
    count: object = retry_timeouts
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(
            f"resilient(retry_timeouts=...) must be an int >= 0, got {retry_timeouts!r}"
        )
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
            if isinstance(value, _FallbackFailed):
                return call.outcome(False, None, value.error, fallback=False)
            return call.outcome(False, value, exc, fallback=used)
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
            used, value = call.failed(exc, args, kwargs)
            if isinstance(value, _FallbackFailed):
                return call.outcome(False, None, value.error, fallback=False)
            return call.outcome(False, value, exc, fallback=used)
        finally:
            call.close()
        return call.succeeded(value)

    return wrapper, outcome
