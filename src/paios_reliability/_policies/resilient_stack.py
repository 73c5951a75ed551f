"""What ``resilient(...)`` builds: the layers in their fixed order, checked together.

:class:`_Stack` turns the arguments into layers (timeout, bulkhead, rate
limiter, breaker, retry, budget), checks that their defaults do not fight
(a breaker open longer than the retry deadline, a timeout longer than the
budget...) and describes itself (:class:`StackPolicy`).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from .._core.dispatch import (
    callable_name,
    is_async_callable,
)

if TYPE_CHECKING:
    from ..typing import CallPolicy
    from .boundary import error_boundary
    from .retry import _Retry

__all__ = ["Layer", "StackPolicy"]

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

    def _waits_up_to(self, wait: float | None) -> str:
        """Count a wait of at most ``wait`` seconds (None: unbounded); its text."""
        self.pre_wait += math.inf if wait is None else float(wait)
        return _fmt(wait)

    def _blocks_sync_callers(self, kind: str, layer: Any) -> None:
        """Note a layer that blocks a thread while it waits on a shared store."""
        if not _memory_store(layer):
            self.asyncio_only.append(f"{kind} {layer.name!r} on a shared store")

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
            self._blocks_sync_callers("CircuitBreaker", b)
        elif _ours(layer, "_policies.ratelimit", "RateLimiter"):
            r: Any = layer
            if r.block:
                up_to = self._waits_up_to(r.max_wait)
                how = f"waits up to {up_to} for a slot (never past the deadline)"
            else:
                how = "refuses at once when out of budget"
            text = (
                f"{r.name!r} {r.rate:g} calls per {r.per:g}s (burst {r.burst}); {how}"
            )
            self._blocks_sync_callers("RateLimiter", r)
        elif _ours(layer, "_policies.bulkhead", "Bulkhead"):
            h: Any = layer
            if h.max_queue:
                up_to = self._waits_up_to(h.max_wait)
                how = (
                    f"queue of {h.max_queue}, waits up to {up_to} "
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
