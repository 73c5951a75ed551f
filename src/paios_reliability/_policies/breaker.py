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
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from .._core import events as _events
from .._core import settings as _config
from .._core.dispatch import is_async_callable, through_method_descriptors
from .._core.events import emit
from .._core.exceptions import CircuitOpenError, RateLimitedError
from .._stores import (
    MemoryStore,
    StoreUnavailableError,
    check_count,
    check_name,
    check_number,
    check_optional_number,
    resolve_store,
    seconds_to_ns,
)
from .._stores.engine import report_lost_write, store_down
from .breaker_engines import _Cell, _LocalEngine, _StoreEngine
from .breaker_state import (
    _BUCKETS,
    _NO_TICKET,
    _PHASES,
    _PRIMITIVE,
    FAILURE,
    IGNORED,
    SUCCESS,
    CircuitBreakerStats,
    State,
    Ticket,
    Transition,
    _Config,
    _effective,
    _stats,
    reset,
    trip,
)

if TYPE_CHECKING:
    from pathlib import Path

    from .._core.exc_info import ExcType, ExcValue, Traceback
    from ..typing import Clock, StateStore
    from .keyed import KeyedPolicy

__all__ = ["CircuitBreaker", "doctor_check"]

P = ParamSpec("P")
T = TypeVar("T")
_DEBUG = 10


# -- the public class ---------------------------------------------------------------

# The tickets of ``with breaker:`` blocks, innermost last; per thread and per
# task, so concurrent blocks never see each other's.
_blocks: contextvars.ContextVar[tuple[tuple[object, Ticket, int], ...]] = (
    contextvars.ContextVar("paios_reliability_breaker_blocks", default=())
)
_new_error = CircuitOpenError.__new__
_log = logging.getLogger("paios_reliability")


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
        reset = check_number(owner, "reset_timeout", reset_timeout)
        span = check_number(owner, "window", window)
        reset_max = check_optional_number(owner, "reset_timeout_max", reset_timeout_max)
        if reset_max is not None and reset_max < reset:
            raise ValueError(
                f"CircuitBreaker(reset_timeout_max={reset_timeout_max!r}) must be >= reset_timeout={reset_timeout!r}"
            )
        slow = check_optional_number(owner, "slow_call_duration", slow_call_duration)
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

    def __exit__(self, exc_type: ExcType, exc: ExcValue, tb: Traceback) -> None:
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

    async def __aexit__(self, exc_type: ExcType, exc: ExcValue, tb: Traceback) -> None:
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
