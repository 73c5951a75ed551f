"""Circuit breaker: stop calling a dependency that keeps failing, probe it later.

One pure state machine (the functions on :class:`_State` below) decides every
transition; two thin engines run it:

- ``_LocalEngine`` keeps the state in a :class:`MemoryStore` cell and skips the
  lock entirely on the hot path (closed, nothing to reset), so a healthy call
  pays well under a microsecond;
- ``_StoreEngine`` runs the same functions inside ``StateStore.update`` (one
  SQLite transaction, one Redis compare-and-set), so every process sharing the
  store sees one breaker.

Stored times are integer nanoseconds (monotonic for process-local state, wall
clock for shared state), so every comparison is exact in every store.

Each period of the breaker (a closed stretch, an open stretch, a half-open
stretch) has its own ``epoch``. A call's outcome only counts in the epoch that
admitted it: a call admitted while closed that fails after the breaker opened
(or opened and closed again) changes nothing.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, cast

from .._core import events as _events
from .._core import settings as _config
from .._core.clock import SYSTEM_CLOCK, get_clock
from .._core.dispatch import is_async_callable, through_method_descriptors
from .._core.events import emit
from .._core.exceptions import CircuitOpenError, RateLimitedError
from .._stores import (
    NS,
    MemoryStore,
    StoreUnavailableError,
    check_count,
    check_name,
    check_optional_seconds,
    check_seconds,
    complete,
    now_ns,
    resolve_store,
    seconds_to_ns,
    ttl_seconds,
)
from .._stores.engine import report_lost_write, store_down

if TYPE_CHECKING:
    from pathlib import Path

    from ..typing import Clock, StateStore
    from .keyed import KeyedPolicy

__all__ = ["CircuitBreaker", "CircuitBreakerStats", "doctor_check"]

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R")

State = Literal["closed", "open", "half_open"]

CLOSED, OPEN, HALF_OPEN = 0, 1, 2
_PHASES: tuple[State, State, State] = ("closed", "open", "half_open")
SUCCESS, IGNORED, FAILURE = 1, 0, -1
_BUCKETS = 10  # the failure-rate window is kept as this many time buckets
_PRIMITIVE = "circuit_breaker"
_DEBUG = 10

# A ticket is what admission hands to the call: (epoch, permit); permit 0 is a
# call admitted while closed, >0 a half-open probe. _NO_TICKET: admitted
# without the store (fail-open), nothing to record.
Ticket = tuple[int, int]
_NO_TICKET: Ticket = (-1, -1)


# -- the pure state machine ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Config:
    threshold: int | None  # consecutive failures that open; None: rule off
    reset_ns: int  # first break duration; also the life of a probe permit
    reset_max_ns: int | None  # growing break duration cap; None: constant
    half_open_max: int
    rate: float | None  # failure ratio that opens; None: rule off
    bucket_ns: int
    minimum_calls: int


@dataclass(frozen=True, slots=True)
class _State:
    phase: int = CLOSED
    epoch: int = 0
    failures: int = 0  # consecutive counted failures while closed
    opened_at: int = 0
    open_until: int = 0  # first probe allowed at this time
    opens: int = 0  # opens since the last close (grows the break)
    probes: tuple[tuple[int, int], ...] = ()  # (permit, issued at) in flight
    successes: int = 0  # successful probes in this half-open period
    next_permit: int = 1
    buckets: tuple[tuple[int, int, int], ...] = ()  # (index, calls, failures)

    def to_json(self) -> list[Any]:
        return [
            self.phase,
            self.epoch,
            self.failures,
            self.opened_at,
            self.open_until,
            self.opens,
            [list(p) for p in self.probes],
            self.successes,
            self.next_permit,
            [list(b) for b in self.buckets],
        ]

    @classmethod
    def from_json(cls, data: Any) -> _State:
        if data is None:
            return _INITIAL
        (phase, epoch, failures, opened_at, open_until, opens, probes, successes,
         next_permit, buckets) = data  # fmt: skip
        return cls(
            phase,
            epoch,
            failures,
            opened_at,
            open_until,
            opens,
            tuple((p[0], p[1]) for p in probes),
            successes,
            next_permit,
            tuple((b[0], b[1], b[2]) for b in buckets),
        )


_INITIAL = _State()

# What a transition reports: (action, fields) for an event.
Transition = tuple[str, dict[str, Any]]


def _break_ns(cfg: _Config, opens: int) -> int:
    if cfg.reset_max_ns is None or opens <= 1:
        return cfg.reset_ns
    # Integers cannot overflow; the exponent clamp keeps the number small.
    return min(cfg.reset_ns << min(opens - 1, 64), cfg.reset_max_ns)


def _window(
    cfg: _Config, buckets: tuple[tuple[int, int, int], ...], now: int
) -> tuple[tuple[int, int, int], ...]:
    oldest = now // cfg.bucket_ns - _BUCKETS + 1
    if not buckets or buckets[0][0] >= oldest:
        return buckets
    return tuple(b for b in buckets if b[0] >= oldest)


def _effective(s: _State, now: int) -> tuple[_State, list[Transition]]:
    """Open turns half-open lazily, at the first look after the break."""
    if s.phase == OPEN and now >= s.open_until:
        return (
            replace(s, phase=HALF_OPEN, epoch=s.epoch + 1, probes=(), successes=0),
            [("half_opened", {})],
        )
    return s, []


def _open(
    cfg: _Config, s: _State, now: int, reason: str, **fields: Any
) -> tuple[_State, list[Transition]]:
    opens = 1 if s.phase == CLOSED else s.opens + 1
    duration = _break_ns(cfg, opens)
    new = _State(
        phase=OPEN,
        epoch=s.epoch + 1,
        opened_at=now,
        open_until=now + duration,
        opens=opens,
        next_permit=s.next_permit,
    )
    return new, [("opened", {"reason": reason, "open_for": duration / 1e9, **fields})]


def _close(s: _State, reason: str) -> tuple[_State, list[Transition]]:
    return _State(epoch=s.epoch + 1, next_permit=s.next_permit), [
        ("closed", {"reason": reason})
    ]


def admit(
    cfg: _Config, s: _State, now: int
) -> tuple[_State, Ticket | int, list[Transition]]:
    """Admit a call or refuse it.

    Returns the new state, then a ticket ``(epoch, permit)`` for an admitted
    call or the nanoseconds until a call could be admitted, then transitions.
    """
    s, events = _effective(s, now)
    if s.phase == CLOSED:
        return s, (s.epoch, 0), events
    if s.phase == OPEN:
        return s, s.open_until - now, events
    live = tuple(p for p in s.probes if now - p[1] < cfg.reset_ns)
    if len(live) < cfg.half_open_max:
        permit = s.next_permit
        s = replace(s, probes=(*live, (permit, now)), next_permit=permit + 1)
        return s, (s.epoch, permit), events
    return s, min(p[1] for p in live) + cfg.reset_ns - now, events


def record(
    cfg: _Config, s: _State, now: int, ticket: Ticket, outcome: int
) -> tuple[_State, list[Transition]]:
    """Apply the outcome of an admitted call (SUCCESS, FAILURE or IGNORED)."""
    epoch, permit = ticket
    if epoch != s.epoch:
        return s, []  # admitted in an earlier period: it no longer counts
    if s.phase == CLOSED:
        if outcome == IGNORED:
            return s, []
        failures = s.failures + 1 if outcome == FAILURE else 0
        if cfg.threshold is not None and failures >= cfg.threshold:
            return _open(cfg, s, now, "consecutive_failures", failures=failures)
        buckets = s.buckets
        if cfg.rate is not None:
            index = now // cfg.bucket_ns
            buckets = _window(cfg, buckets, now)
            failed = 1 if outcome == FAILURE else 0
            if buckets and buckets[-1][0] == index:
                last = buckets[-1]
                buckets = (*buckets[:-1], (index, last[1] + 1, last[2] + failed))
            else:
                buckets = (*buckets, (index, 1, failed))
            calls = sum(b[1] for b in buckets)
            failed_calls = sum(b[2] for b in buckets)
            if calls >= cfg.minimum_calls and failed_calls / calls >= cfg.rate:
                return _open(
                    cfg, s, now, "failure_rate", calls=calls, failed_calls=failed_calls
                )
        if failures == s.failures and buckets is s.buckets:
            return s, []
        return replace(s, failures=failures, buckets=buckets), []
    if s.phase == HALF_OPEN:
        probes = tuple(p for p in s.probes if p[0] != permit)
        if len(probes) == len(s.probes):
            return s, []  # its permit already expired and was re-armed
        if outcome == FAILURE:
            return _open(cfg, s, now, "probe_failed")
        if outcome == SUCCESS:
            successes = s.successes + 1
            if successes >= cfg.half_open_max:
                return _close(s, "probes_succeeded")
            return replace(s, probes=probes, successes=successes), []
        return replace(s, probes=probes), []
    return s, []


def trip(cfg: _Config, s: _State, now: int) -> tuple[_State, list[Transition]]:
    """Open by hand, now, for the (growing) break duration."""
    return _open(cfg, s, now, "manual")


def reset(s: _State) -> tuple[_State, list[Transition]]:
    """Close by hand and forget every count."""
    return _close(s, "manual")


# -- stats --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CircuitBreakerStats:
    """A snapshot of a breaker (of the shared state, on a shared store).

    Attributes:
        name: The breaker's name.
        state: ``"closed"``, ``"open"`` or ``"half_open"``.
        consecutive_failures: Counted failures in a row while closed.
        window_calls: Counted calls in the failure-rate window (0 when the
            rate rule is off).
        window_failures: Failures among them.
        opens: Times opened since the last close (grows the break duration).
        retry_after: Seconds until a probe is allowed, when open.
        probes_in_flight: Half-open probes running now.
    """

    name: str
    state: State
    consecutive_failures: int
    window_calls: int
    window_failures: int
    opens: int
    retry_after: float | None
    probes_in_flight: int


def _stats(name: str, cfg: _Config, s: _State, now: int) -> CircuitBreakerStats:
    s, _ = _effective(s, now)
    buckets = _window(cfg, s.buckets, now) if s.phase == CLOSED else ()
    live = [p for p in s.probes if now - p[1] < cfg.reset_ns]
    return CircuitBreakerStats(
        name=name,
        state=_PHASES[s.phase],
        consecutive_failures=s.failures,
        window_calls=sum(b[1] for b in buckets),
        window_failures=sum(b[2] for b in buckets),
        opens=s.opens,
        retry_after=(s.open_until - now) / 1e9 if s.phase == OPEN else None,
        probes_in_flight=len(live),
    )


# -- engines: where the state lives -------------------------------------------------


class _Cell:
    """The state of one breaker name in a MemoryStore, with its lock.

    ``closed_ticket`` is the ticket for a call admitted while closed, or
    ``None`` when not closed: one atomic attribute read admits a call.
    """

    __slots__ = ("closed_ticket", "lock", "state")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.state = _INITIAL
        self.closed_ticket: Ticket | None = (0, 0)

    def set(self, s: _State) -> None:
        # Called with the lock held.
        self.state = s
        self.closed_ticket = (s.epoch, 0) if s.phase == CLOSED else None


class _LocalEngine:
    __slots__ = ("_cell", "_cfg", "_simple", "_slow_ns", "breaker")

    local = True  # no I/O: async callers may use the sync methods

    def __init__(self, breaker: CircuitBreaker, cell: _Cell) -> None:
        self.breaker = breaker
        self._cfg = breaker._cfg
        self._cell = cell
        self._slow_ns = breaker._slow_ns
        # A success needs the lock only to reset a failure count.
        self._simple = breaker._cfg.rate is None and breaker._slow_ns is None

    def _now(self) -> int:
        clock = get_clock(self.breaker._clock)
        if clock is SYSTEM_CLOCK:  # the common case, one call instead of three
            return int(_monotonic() * NS)
        return now_ns(clock, False)

    def enter(self) -> Ticket:
        cell = self._cell
        ticket = cell.closed_ticket
        if ticket is not None:
            return ticket
        now = self._now()
        s = cell.state
        if s.phase == OPEN and now < s.open_until:
            # Rejecting changes nothing: decide on the immutable snapshot,
            # without the lock (the fail-fast hot path).
            raise self.breaker._rejection(s.open_until - now, OPEN)
        with cell.lock:
            s, result, events = admit(self._cfg, cell.state, now)
            if s is not cell.state:
                cell.set(s)
        if events:
            self.breaker._emit(events)
        if isinstance(result, int):
            raise self.breaker._rejection(result, s.phase)
        return result

    def exit(self, ticket: Ticket, outcome: int, started: int) -> None:
        cell = self._cell
        if (
            outcome == SUCCESS
            and self._simple
            and ticket[1] == 0
            and cell.state.failures == 0
        ):
            return  # the hot path: nothing to reset, nothing to count
        if outcome == IGNORED and ticket[1] == 0:
            return
        now = self._now()
        if (
            outcome == SUCCESS
            and self._slow_ns is not None
            and now - started >= self._slow_ns
        ):
            outcome = FAILURE
        with cell.lock:
            s, events = record(self._cfg, cell.state, now, ticket, outcome)
            if s is not cell.state:
                cell.set(s)
        if events:
            self.breaker._emit(events)

    def started(self) -> int:
        return self._now() if self._slow_ns is not None else 0

    def apply(
        self, fn: Callable[[_State, int], tuple[_State, list[Transition]]]
    ) -> None:
        cell = self._cell
        now = self._now()
        with cell.lock:
            s, events = fn(cell.state, now)
            cell.set(s)
        self.breaker._emit(events)

    def snapshot(self) -> tuple[_State, int]:
        return self._cell.state, self._now()

    async def aenter(self) -> Ticket:
        return self.enter()

    async def aexit(self, ticket: Ticket, outcome: int, started: int) -> None:
        self.exit(ticket, outcome, started)


class _StoreEngine:
    """The breaker on a StateStore: one atomic update per state change."""

    __slots__ = ("_cfg", "_key", "_slow_ns", "_store", "_ttl", "breaker")

    local = False

    def __init__(self, breaker: CircuitBreaker, store: StateStore) -> None:
        self.breaker = breaker
        self._cfg = breaker._cfg
        self._store = store
        self._key = f"{_PRIMITIVE}:{breaker.name}"
        self._slow_ns = breaker._slow_ns
        cfg = breaker._cfg
        longest = (
            max(cfg.reset_ns, cfg.reset_max_ns or 0, cfg.bucket_ns * _BUCKETS) / 1e9
        )
        self._ttl = max(ttl_seconds(longest), 7 * 86400.0)

    def _now(self) -> int:
        return now_ns(get_clock(self.breaker._clock), self._store.shared)

    def started(self) -> int:
        return self._now() if self._slow_ns is not None else 0

    # Each operation has a pure step (shared by sync and async) and two
    # three-line drivers.

    def _admit_step(
        self, now: int
    ) -> Callable[[Any], tuple[Any, tuple[Ticket | int, int, list[Transition]]]]:
        cfg = self._cfg

        def step(data: Any) -> tuple[Any, tuple[Ticket | int, int, list[Transition]]]:
            s = _State.from_json(data)
            new, result, events = admit(cfg, s, now)
            return (data if new is s else new.to_json()), (result, new.phase, events)

        return step

    def _record_step(
        self, ticket: Ticket, outcome: int, now: int
    ) -> Callable[[Any], tuple[Any, list[Transition]]]:
        cfg = self._cfg

        def step(data: Any) -> tuple[Any, list[Transition]]:
            s = _State.from_json(data)
            new, events = record(cfg, s, now, ticket, outcome)
            return (data if new is s else new.to_json()), events

        return step

    def _admitted(self, outcome: tuple[Ticket | int, int, list[Transition]]) -> Ticket:
        result, phase, events = outcome
        if events:
            self.breaker._emit(events)
        if isinstance(result, int):
            raise self.breaker._rejection(result, phase)
        return result

    def _outcome(self, outcome: int, started: int, now: int) -> int:
        if (
            outcome == SUCCESS
            and self._slow_ns is not None
            and now - started >= self._slow_ns
        ):
            return FAILURE
        return outcome

    def _run(self, step: Callable[[Any], tuple[Any, R]]) -> R:
        return self._store.update(self._key, step, ttl=self._ttl)

    async def _arun(self, step: Callable[[Any], tuple[Any, R]]) -> R:
        return await self._store.aupdate(self._key, step, ttl=self._ttl)

    def enter(self) -> Ticket:
        try:
            return self._admitted(self._run(self._admit_step(self._now())))
        except StoreUnavailableError as exc:
            return self.breaker._store_down(exc)

    async def aenter(self) -> Ticket:
        step = self._admit_step(self._now())

        async def give_back(
            outcome: tuple[Ticket | int, int, list[Transition]],
        ) -> None:
            # Cancelled while the store admitted us: hand the permit back.
            if not isinstance(outcome[0], int):
                await self.aexit(outcome[0], IGNORED, 0)

        try:
            return self._admitted(await complete(self._arun(step), give_back))
        except StoreUnavailableError as exc:
            return self.breaker._store_down(exc)

    def exit(self, ticket: Ticket, outcome: int, started: int) -> None:
        if ticket is _NO_TICKET or (outcome == IGNORED and ticket[1] == 0):
            return
        now = self._now()
        step = self._record_step(ticket, self._outcome(outcome, started, now), now)
        try:
            events = self._run(step)
        except StoreUnavailableError as exc:
            self.breaker._record_lost(exc)
            return
        if events:
            self.breaker._emit(events)

    async def aexit(self, ticket: Ticket, outcome: int, started: int) -> None:
        if ticket is _NO_TICKET or (outcome == IGNORED and ticket[1] == 0):
            return
        now = self._now()
        step = self._record_step(ticket, self._outcome(outcome, started, now), now)
        try:
            # Even a second cancellation must not lose a probe's release.
            events = await complete(self._arun(step))
        except StoreUnavailableError as exc:
            self.breaker._record_lost(exc)
            return
        if events:
            self.breaker._emit(events)

    def apply(
        self, fn: Callable[[_State, int], tuple[_State, list[Transition]]]
    ) -> None:
        now = self._now()

        def step(data: Any) -> tuple[Any, list[Transition]]:
            new, events = fn(_State.from_json(data), now)
            return new.to_json(), events

        self.breaker._emit(self._store.update(self._key, step, ttl=self._ttl))

    def snapshot(self) -> tuple[_State, int]:
        return _State.from_json(self._store.get(self._key)), self._now()


# -- the public class ---------------------------------------------------------------

# The tickets of ``with breaker:`` blocks, innermost last; per thread and per
# task, so concurrent blocks never see each other's.
_blocks: contextvars.ContextVar[tuple[tuple[object, Ticket, int], ...]] = (
    contextvars.ContextVar("paios_reliability_breaker_blocks", default=())
)
_new_error = CircuitOpenError.__new__
_log = logging.getLogger("paios_reliability")
_monotonic = time.monotonic


def _default_counts(exc: BaseException) -> bool:
    """Transient or unclassified failures of the dependency count.

    Our own local back-pressure (a rate limiter or bulkhead inside the breaker
    refusing the call) and an unreachable state store say nothing about the
    dependency, so they do not count.
    """
    if isinstance(exc, (RateLimitedError, StoreUnavailableError)):
        return False
    from .._core.taxonomy import classify

    return classify(exc).kind == "transient"


class CircuitBreaker:
    """Fail fast while a dependency keeps failing; let a few probes test it later.

    **Closed** (normal): calls run; counted failures are tracked. It **opens**
    after ``failure_threshold`` counted failures in a row, or, when
    ``failure_rate`` is set, when at least ``minimum_calls`` calls in the last
    ``window`` seconds failed at that ratio or more. **Open**: calls are
    rejected at once with :class:`CircuitOpenError` (``retry_after`` says when
    a probe is allowed) without running. After ``reset_timeout`` it is
    **half-open**: at most ``half_open_max_calls`` probes run at a time; once
    that many probes succeed it closes, and any probe failure opens it again
    (for a break that doubles each time up to ``reset_timeout_max``, when
    given). A probe that hangs loses its permit after ``reset_timeout``, so the
    breaker can never be stuck half-open.

    What counts as a failure: exceptions for which ``counts(exc)`` is true,
    by default every *transient* or unclassified one (see
    :func:`~paios_reliability.classify`), so permanent client errors
    (validation, HTTP 400/404) neither count nor reset the count, while
    :class:`TimeoutExceeded` does count. Our own :class:`RateLimitedError` /
    :class:`BulkheadFullError` (local back-pressure from a limiter or bulkhead
    inside the breaker) and :class:`StoreUnavailableError` never count by
    default: they say nothing about the dependency. With
    ``slow_call_duration``, a call
    that took at least that long counts too, even when it succeeded.
    ``KeyboardInterrupt``, ``SystemExit`` and cancellation never count and
    propagate untouched. Exceptions are always re-raised unchanged.

    Use it as a decorator (sync or async), with :meth:`call`/:meth:`acall`, or
    as ``with breaker:`` / ``async with breaker:`` (the state is checked on
    entry: the body never runs while open).

    Concurrency: the state is changed under a lock (or in one store
    transaction) but the lock is never held while your function runs. With
    ``store=None`` the breaker has private in-memory state; pass a
    :class:`MemoryStore` to share it between instances of the same ``name``
    in-process, or an :class:`SQLiteStore` / :class:`RedisStore` to share it
    between processes and hosts. A new instance attached to existing shared
    state never resets it.

    Args:
        name: Identifies the breaker in events, errors and the store.
        failure_threshold: Counted failures in a row that open the breaker
            (``None`` turns this rule off; then ``failure_rate`` is required).
        reset_timeout: Seconds open before probes are allowed; also how long a
            probe keeps its permit.
        half_open_max_calls: Concurrent probes allowed while half-open, and
            successes needed to close.
        failure_rate: Failure ratio (0-1] over ``window`` that opens it, or
            ``None`` for the consecutive rule only.
        window: Seconds of history for ``failure_rate`` (kept in 10 buckets).
        minimum_calls: Calls needed in the window before the ratio is judged.
        counts: Predicate on an exception: does it count as a failure?
        store: Where the state lives (default: private memory).
        slow_call_duration: Seconds after which a call counts as a failure.
        reset_timeout_max: Cap of a break that doubles after each failed probe
            (``None``: every break lasts ``reset_timeout``).
        fail_open: When the store is unreachable, let calls through (and emit
            ``circuit_breaker.store_unavailable``) instead of raising
            :class:`StoreUnavailableError`.
        clock: Time source (default: the process clock at call time).

    Raises:
        ValueError: For invalid settings.

    Events (``paios_reliability.circuit_breaker.*``, subject = name):
    ``opened`` (warning; ``reason``, ``open_for``), ``half_opened``,
    ``closed`` (``reason``), ``rejected`` (debug; ``retry_after``),
    ``store_unavailable`` and ``record_lost`` (error).
    """

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int | None = 5,
        reset_timeout: float = 30.0,
        half_open_max_calls: int = 1,
        failure_rate: float | None = None,
        window: float = 60.0,
        minimum_calls: int = 10,
        counts: Callable[[BaseException], bool] = _default_counts,
        store: StateStore | None = None,
        slow_call_duration: float | None = None,
        reset_timeout_max: float | None = None,
        fail_open: bool = False,
        clock: Clock | None = None,
    ) -> None:
        owner = "CircuitBreaker"
        check_name(owner, name)
        if failure_threshold is not None:
            check_count(owner, "failure_threshold", failure_threshold)
        rate: object = failure_rate
        if rate is not None and (
            isinstance(rate, bool)
            or not isinstance(rate, (int, float))
            or not 0 < rate <= 1
        ):
            raise ValueError(
                f"CircuitBreaker(failure_rate=...) must be in (0, 1] or None, got {failure_rate!r}"
            )
        if failure_threshold is None and failure_rate is None:
            raise ValueError(
                "CircuitBreaker needs a trip rule: failure_threshold or failure_rate"
            )
        check_count(owner, "half_open_max_calls", half_open_max_calls)
        check_count(owner, "minimum_calls", minimum_calls)
        reset = check_seconds(owner, "reset_timeout", reset_timeout)
        span = check_seconds(owner, "window", window)
        reset_max = check_optional_seconds(
            owner, "reset_timeout_max", reset_timeout_max
        )
        if reset_max is not None and reset_max < reset:
            raise ValueError(
                f"CircuitBreaker(reset_timeout_max={reset_timeout_max!r}) must be >= reset_timeout={reset_timeout!r}"
            )
        slow = check_optional_seconds(owner, "slow_call_duration", slow_call_duration)
        if not callable(counts):
            raise TypeError(
                f"CircuitBreaker(counts=...) must be callable, got {counts!r}"
            )

        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset
        self.half_open_max_calls = half_open_max_calls
        self.failure_rate = None if failure_rate is None else float(failure_rate)
        self.window = span
        self.minimum_calls = minimum_calls
        self.slow_call_duration = slow
        self.reset_timeout_max = reset_max
        self.fail_open = bool(fail_open)
        self.counts = counts
        self._clock = clock
        self._cfg = _Config(
            threshold=failure_threshold,
            reset_ns=max(1, seconds_to_ns(reset)),
            reset_max_ns=None if reset_max is None else seconds_to_ns(reset_max),
            half_open_max=half_open_max_calls,
            rate=self.failure_rate,
            bucket_ns=max(1, seconds_to_ns(span) // _BUCKETS),
            minimum_calls=minimum_calls,
        )
        self._slow_ns = None if slow is None else seconds_to_ns(slow)
        self.store = resolve_store(store)
        self._engine: _LocalEngine | _StoreEngine
        if isinstance(self.store, MemoryStore):
            self._engine = _LocalEngine(
                self, self.store.cell(f"{_PRIMITIVE}:{name}", _Cell)
            )
        else:
            self._engine = _StoreEngine(self, self.store)
        self._message = f"circuit breaker {name!r} is open"
        template = CircuitOpenError(self._message, breaker_name=name)
        self._error_fields = dict(template.__dict__)

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, store={self.store!r})"

    # -- inspection and manual control ---------------------------------------

    @property
    def state(self) -> State:
        """``"closed"``, ``"open"`` or ``"half_open"`` (read from the store)."""
        s, now = self._engine.snapshot()
        return _PHASES[_effective(s, now)[0].phase]

    @classmethod
    def keyed(
        cls,
        name: str,
        *,
        max_keys: int = 1024,
        key: Callable[..., object] | None = None,
        store: StateStore | None = None,
        **options: Any,
    ) -> KeyedPolicy[CircuitBreaker]:
        """One independent breaker per key (host, provider, tenant, tool).

        Each key's breaker is ``CircuitBreaker(f"{name}:{key}", store=store,
        **options)``, created on first use; at most ``max_keys`` are kept
        (least recently used evicted, never one whose state still matters).
        ``key`` is a function of the call's arguments for decorating (or give
        it to ``resilient(key=...)``). See
        :class:`~paios_reliability.KeyedPolicy`.

        Raises:
            ValueError: Invalid options (checked now), or a store that is not
                shared (per-key memory state stays with each key's breaker).
        """
        from .keyed import breaker_evictable, keyed_policy

        return keyed_policy(
            cls,
            name,
            breaker_evictable,
            max_keys=max_keys,
            key=key,
            store=store,
            options=options,
        )

    @property
    def stats(self) -> CircuitBreakerStats:
        """A :class:`CircuitBreakerStats` snapshot."""
        s, now = self._engine.snapshot()
        return _stats(self.name, self._cfg, s, now)

    def trip(self) -> None:
        """Open the breaker now, as if the trip rule had fired."""
        self._engine.apply(functools.partial(trip, self._cfg))

    def reset(self) -> None:
        """Close the breaker now and forget every count."""
        self._engine.apply(lambda s, _now: reset(s))

    # -- helpers for the engines ----------------------------------------------

    def _emit(self, events: list[Transition]) -> None:
        for action, fields in events:
            level: _events.Level = "warning" if action == "opened" else "info"
            emit(_PRIMITIVE, action, level=level, subject=self.name, **fields)

    def _rejection(self, wait_ns: int, phase: int) -> CircuitOpenError:
        retry_after = wait_ns / 1e9 if wait_ns > 0 else 0.0
        if _events._hooks or _log.isEnabledFor(_DEBUG):
            emit(
                _PRIMITIVE,
                "rejected",
                level="debug",
                subject=self.name,
                retry_after=retry_after,
                state=_PHASES[phase],
            )
        # A fresh error per rejection (nothing shared, nothing retained), built
        # from the fields the real constructor gave a template: the generic
        # constructor costs more than the rest of the fail-fast path.
        exc = _new_error(CircuitOpenError, self._message)
        fields = exc.__dict__
        fields.update(self._error_fields)
        fields["retry_after"] = retry_after
        return exc

    def _store_down(self, exc: StoreUnavailableError) -> Ticket:
        store_down(_PRIMITIVE, self.name, exc, fail_open=self.fail_open)
        return _NO_TICKET

    def _record_lost(self, exc: StoreUnavailableError) -> None:
        # The call already ran; its result matters more than our bookkeeping.
        report_lost_write(_PRIMITIVE, "record_lost", self.name, exc)

    def _judge(self, exc: BaseException) -> int:
        if not isinstance(exc, Exception):
            return IGNORED  # KeyboardInterrupt, SystemExit, CancelledError...
        try:
            return FAILURE if self.counts(exc) else IGNORED
        except Exception:  # noqa: BLE001 - a broken predicate must not hide the real error
            return FAILURE

    # -- running calls --------------------------------------------------------
    #
    # One body per flavour, in a closure over the function: the decorator
    # returns it (under functools.wraps) and call()/acall() make one on the
    # fly, so the decorated hot path has no extra frame.

    def _runner(self, fn: Callable[P, T]) -> Callable[P, T]:
        engine = self._engine
        judge = self._judge
        timed = self._slow_ns is not None

        def run(*args: P.args, **kwargs: P.kwargs) -> T:
            if not _config._state.active:
                return fn(*args, **kwargs)
            ticket = engine.enter()
            started = engine.started() if timed else 0
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                engine.exit(ticket, judge(exc), started)
                raise
            engine.exit(ticket, SUCCESS, started)
            return result

        return run

    def _arunner(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        engine = self._engine
        judge = self._judge
        timed = self._slow_ns is not None
        # In memory nothing blocks: skip a coroutine per step (hot path).
        local = engine.local

        async def arun(*args: P.args, **kwargs: P.kwargs) -> T:
            if not _config._state.active:
                return await fn(*args, **kwargs)
            ticket = engine.enter() if local else await engine.aenter()
            started = engine.started() if timed else 0
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                outcome = judge(exc)
                if local:
                    engine.exit(ticket, outcome, started)
                else:
                    await engine.aexit(ticket, outcome, started)
                raise
            if local:
                engine.exit(ticket, SUCCESS, started)
            else:
                await engine.aexit(ticket, SUCCESS, started)
            return result

        return arun

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` through the breaker.

        Raises:
            CircuitOpenError: Open (or half-open with every probe permit taken);
                ``fn`` was not called.
            StoreUnavailableError: The store is down and ``fail_open`` is off.
        """
        return self._runner(fn)(*args, **kwargs)

    async def acall(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Await ``fn(*args, **kwargs)`` through the breaker (see :meth:`call`)."""
        return await self._arunner(fn)(*args, **kwargs)

    @through_method_descriptors
    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        """Decorate a sync or async function; the signature is kept."""
        if is_async_callable(fn):
            afn = cast(Callable[P, Awaitable[Any]], fn)
            return cast(Callable[P, T], functools.wraps(fn)(self._arunner(afn)))
        return functools.wraps(fn)(self._runner(fn))

    # -- with / async with ------------------------------------------------------

    def _push(self, ticket: Ticket, started: int) -> None:
        _blocks.set((*_blocks.get(), (self, ticket, started)))

    def _pop(self) -> tuple[Ticket, int]:
        blocks = _blocks.get()
        for i in range(len(blocks) - 1, -1, -1):
            if blocks[i][0] is self:
                _blocks.set(blocks[:i] + blocks[i + 1 :])
                return blocks[i][1], blocks[i][2]
        return _NO_TICKET, 0  # entered while switched off

    def __enter__(self) -> CircuitBreaker:
        if _config._state.active:
            ticket = self._engine.enter()
            self._push(ticket, self._engine.started())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        ticket, started = self._pop()
        if ticket is not _NO_TICKET:
            self._engine.exit(
                ticket, SUCCESS if exc is None else self._judge(exc), started
            )

    async def __aenter__(self) -> CircuitBreaker:
        if _config._state.active:
            ticket = await self._engine.aenter()
            self._push(ticket, self._engine.started())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        ticket, started = self._pop()
        if ticket is not _NO_TICKET:
            await self._engine.aexit(
                ticket, SUCCESS if exc is None else self._judge(exc), started
            )


def doctor_check(tmp: Path) -> str:
    """Self-check for ``paios-reliability doctor``: a breaker shared via SQLite.

    Five failures in one instance open it for a second instance on the same
    file; a rejection does not run the call; ``reset()`` closes it.
    """
    from .._core.clock import FakeClock
    from .._stores._sqlite import SQLiteStore

    clock = FakeClock()
    store = SQLiteStore(tmp / "doctor-breaker.db")
    try:
        first = CircuitBreaker("doctor", store=store, clock=clock)
        second = CircuitBreaker("doctor", store=SQLiteStore(store.path), clock=clock)

        def down() -> None:
            raise ConnectionResetError("doctor: simulated outage")

        for _ in range(5):
            with contextlib.suppress(ConnectionResetError):
                first.call(down)
        ran: list[int] = []
        try:
            second.call(ran.append, 1)
        except CircuitOpenError as exc:
            if ran or exc.retry_after != first.reset_timeout:
                raise AssertionError(f"bad rejection: {exc!r}") from None
        else:
            raise AssertionError("the second instance did not see the breaker open")
        clock.advance(first.reset_timeout)
        second.call(ran.append, 2)
        if first.state != "closed" or ran != [2]:
            raise AssertionError(f"probe did not close it: {first.stats}")
        second.store.close()
    finally:
        store.close()
    return "opens after 5 failures, shared through SQLite, probe closes it"
