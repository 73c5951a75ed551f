"""Rate limiting: GCRA limiter, per-key throttle, occurrence threshold.

All three keep one small value per key in a :class:`StateStore` and change it
with one pure function inside ``update``, so they behave the same in memory,
in SQLite and in Redis. Times are integer nanoseconds (monotonic in memory,
wall clock in shared stores).

GCRA (the generic cell rate algorithm) stores one number per limiter: the
*theoretical arrival time* (TAT) of the next call. It is a token bucket of
``burst`` tokens refilled at ``rate`` per ``per`` seconds, without a refill
loop: a call at ``now`` is admitted when ``max(TAT, now) + interval - burst *
interval <= now``, and then ``TAT`` moves one interval on.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast, overload

from .._core import settings as _config
from .._core.clock import get_clock
from .._core.dispatch import is_async_callable, through_method_descriptors
from .._core.events import emit
from .._core.exceptions import RateLimitedError
from .._stores import (
    NS,
    StoreUnavailableError,
    adrive,
    check_count,
    check_name,
    check_number,
    check_optional_number,
    drive,
    now_ns,
    resolve_store,
    seconds_to_ns,
    ttl_seconds,
)
from .._stores.engine import store_down

if TYPE_CHECKING:
    from ..typing import Clock, StateStore
    from .keyed import KeyedPolicy
    from .limits import Limit, Reservation, WeightedLimits

__all__ = ["RateLimiter"]

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R")

# What an admission step answers: (admitted, wait in ns). Admitted with a
# positive wait means a slot was reserved that far in the future.
Decision = tuple[bool, int]
# What one admission against the store answers: a Decision, or with several
# windows (admitted, wait in ns, index of the window that set the wait).
_Answer = Decision | tuple[bool, int, int]
# Writes tried with a growing TTL before one is made whatever the horizon.
_HORIZON_ATTEMPTS = 8


def gcra(
    tat: int | None,
    now: int,
    interval: int,
    burst: int,
    limit: int | None,
    *,
    cost: float = 1,
) -> tuple[int | None, Decision]:
    """One GCRA decision.

    Args:
        tat: The stored theoretical arrival time, or ``None`` (a fresh bucket).
        now: The current time (ns).
        interval: Nanoseconds per call at the sustained rate.
        burst: Calls admitted at once from a full bucket.
        limit: Longest wait (ns) the caller accepts for a reserved slot;
            ``0`` admits only at once, ``None`` waits as long as needed.
        cost: Slots the call takes (a weighted call moves the TAT on by
            ``cost`` intervals).

    Returns:
        The new TAT (the same object when nothing is taken) and the decision.
    """
    base = tat if tat is not None and tat > now else now
    new_tat = base + (interval if cost == 1 else round(interval * cost))
    wait = new_tat - burst * interval - now
    if wait <= 0:
        return new_tat, (True, 0)
    if limit is None or wait <= limit:
        return new_tat, (True, wait)
    return tat, (False, wait)


class _Keyed:
    """What every store-backed limiter shares: a store, a clock, a driver."""

    _store: StateStore
    _clock: Clock | None
    fail_open: bool
    name: str

    def _now(self) -> int:
        return now_ns(get_clock(self._clock), self._store.shared)

    def _run(self, key: str, step: Callable[[Any], tuple[Any, R]], ttl: float) -> R:
        return self._store.update(key, step, ttl=ttl)

    async def _arun(
        self, key: str, step: Callable[[Any], tuple[Any, R]], ttl: float
    ) -> R:
        return await self._store.aupdate(key, step, ttl=ttl)

    def _store_down(self, primitive: str, exc: StoreUnavailableError) -> None:
        store_down(primitive, self.name, exc, fail_open=self.fail_open)


class RateLimiter(_Keyed):
    """At most ``rate`` calls per ``per`` seconds, with bursts up to ``burst`` (GCRA).

    A full bucket admits ``burst`` calls at once; after that, one call every
    ``per / rate`` seconds. On a shared store every process draws from the one
    budget.

    With ``block=True`` a call that is early *reserves* the next free slot and
    sleeps until it (``await``-ing in async code), but never longer than
    ``max_wait`` nor past the enclosing :func:`~paios_reliability.deadline`;
    when the wait would be longer it raises :class:`RateLimitedError` at once,
    without sleeping and without taking a slot. A waiter cancelled while
    sleeping forfeits its slot (the budget is never exceeded). In testing mode
    (:func:`~paios_reliability.testing.set_testing`) it never really sleeps.
    With ``block=False`` an early call raises :class:`RateLimitedError` with
    ``retry_after`` at once.

    Use it as a decorator (sync or async), with :meth:`acquire` /
    :meth:`aacquire`, :meth:`try_acquire` / :meth:`atry_acquire`, or as
    ``with limiter:`` / ``async with limiter:``.

    With ``limits=[Limit(...), ...]`` instead of ``rate``/``per``/``burst``
    it keeps several windows at once (requests per minute, tokens per minute,
    tokens per day) in one store key: a call of ``cost`` units is admitted
    by every window or charged to none, and :meth:`settle` corrects the
    charge once the real cost is known.

    Args:
        name: Identifies the limiter in events, errors and the store.
        rate: Calls per ``per`` seconds (> 0, may be fractional).
        per: The period in seconds.
        burst: Calls admitted at once from a full bucket; default ``rate``
            rounded down, at least 1.
        store: Where the budget lives (default: private memory).
        block: Wait for a slot (``True``) or raise at once (``False``).
        max_wait: Longest wait in seconds when blocking (``None``: only the
            enclosing deadline bounds it).
        fail_open: When the store is unreachable, admit calls (and emit
            ``rate_limiter.store_unavailable``) instead of raising
            :class:`StoreUnavailableError`.
        clock: Time source (default: the process clock at call time).
        limits: Several windows (:class:`Limit`) instead of ``rate``/``per``/
            ``burst``.

    Events (``paios_reliability.rate_limiter.*``): ``rejected`` (info;
    ``retry_after``), ``delayed`` (debug; ``wait``), ``store_unavailable``.
    """

    @overload
    def __init__(
        self,
        name: str,
        *,
        rate: float,
        per: float,
        burst: int | None = None,
        store: StateStore | None = None,
        block: bool = True,
        max_wait: float | None = None,
        fail_open: bool = False,
        clock: Clock | None = None,
    ) -> None: ...

    @overload
    def __init__(
        self,
        name: str,
        *,
        limits: Sequence[Limit],
        store: StateStore | None = None,
        block: bool = True,
        max_wait: float | None = None,
        fail_open: bool = False,
        clock: Clock | None = None,
    ) -> None: ...

    def __init__(
        self,
        name: str,
        *,
        rate: float | None = None,
        per: float | None = None,
        burst: int | None = None,
        store: StateStore | None = None,
        block: bool = True,
        max_wait: float | None = None,
        fail_open: bool = False,
        clock: Clock | None = None,
        limits: Sequence[Limit] | None = None,
    ) -> None:
        owner = "RateLimiter"
        self.name = check_name(owner, name)
        self._limits: WeightedLimits | None = None
        if limits is not None:
            if rate is not None or per is not None or burst is not None:
                raise ValueError(
                    "RateLimiter takes either limits=[...] or rate=/per=/burst=, not both"
                )
            from .limits import WeightedLimits, check_limits

            # The first window stands in for rate/per in repr and stats.
            first = check_limits(limits)[0]
            rate, per = first.rate, first.per
        elif rate is None or per is None:
            raise ValueError(
                "RateLimiter needs rate= and per= (or limits=[Limit(...), ...])"
            )
        self.rate = check_number(owner, "rate", rate)
        self.per = check_number(owner, "per", per)
        self.burst = (
            max(1, int(self.rate))
            if burst is None
            else check_count(owner, "burst", burst)
        )
        self.max_wait = check_optional_number(owner, "max_wait", max_wait, zero=True)
        self.block = bool(block)
        self.fail_open = bool(fail_open)
        self._clock = clock
        self._store = resolve_store(store)
        self._interval = max(1, seconds_to_ns(self.per / self.rate))
        self._key = f"rate_limiter:{name}"
        # The key's TTL follows the state: every write keeps the key at least
        # until its TAT (the last reserved slot) has passed. A reservation
        # with unbounded patience can lie any distance ahead; this is the
        # horizon the last such write needed (a hint, not a bound).
        self._horizon_hint = self._interval * self.burst
        # A full bucket's TTL on the store: fixed, so computed once, not per call.
        self._ttl = ttl_seconds(self._interval * self.burst / NS)
        if limits is not None:
            self._limits = WeightedLimits(name, limits, self._store, clock)

    @classmethod
    def keyed(
        cls,
        name: str,
        *,
        max_keys: int = 1024,
        key: Callable[..., object] | None = None,
        store: StateStore | None = None,
        **options: Any,
    ) -> KeyedPolicy[RateLimiter]:
        """One independent limiter per key (host, provider, tenant, tool).

        Each key's limiter is ``RateLimiter(f"{name}:{key}", store=store,
        **options)``, created on first use; at most ``max_keys`` are kept
        (least recently used evicted, never one whose state still matters).
        ``key`` is a function of the call's arguments for decorating (or give
        it to ``resilient(key=...)``). See
        :class:`~paios_reliability.KeyedPolicy`.

        Raises:
            ValueError: Invalid options (checked now), or a store that is not
                shared (per-key memory state stays with each key's limiter).
        """
        from .keyed import keyed_policy, limiter_evictable

        return keyed_policy(
            cls,
            name,
            limiter_evictable,
            max_keys=max_keys,
            key=key,
            store=store,
            options=options,
        )

    @property
    def store(self) -> StateStore:
        return self._store

    def __repr__(self) -> str:
        return (
            f"RateLimiter({self.name!r}, rate={self.rate!r}, per={self.per!r}, "
            f"burst={self.burst!r})"
        )

    def _step(
        self, limit: int | None, horizon: int | None, cost: float = 1
    ) -> Callable[[Any], tuple[Any, tuple[Decision, int]]]:
        now = self._now()
        interval, burst = self._interval, self.burst

        def step(data: Any) -> tuple[Any, tuple[Decision, int]]:
            new_tat, decision = gcra(data, now, interval, burst, limit, cost=cost)
            if new_tat is not None and new_tat is not data and horizon is not None:
                needed = new_tat - now
                if needed > horizon:
                    # The key's TTL would run out before the TAT: write
                    # nothing; the caller asks again with a longer TTL.
                    return data, (decision, needed)
            return new_tat, (decision, 0)

        return step

    def _decisions(
        self, limit: int | None, cost: float = 1
    ) -> Generator[tuple[str, Any], Any, Decision]:
        """One admission: yields ``("update", (step, ttl))``, returns the decision.

        The TTL of each write covers ``new TAT - now`` (plus the GC margin).
        With a bounded wait that is known in advance (``burst`` intervals plus
        the wait); with unbounded patience the step refuses to write past the
        TTL it was given and names the horizon it needs, and is asked again.
        """
        span = self._interval * self.burst
        horizon = self._horizon_hint if limit is None else span + limit
        if cost > 1:
            horizon += round(self._interval * cost)
        attempt = 0
        while True:
            attempt += 1
            # A bounded wait bounds the horizon: that write never needs more.
            final = limit is not None or attempt >= _HORIZON_ATTEMPTS
            step = self._step(limit, None if final else horizon, cost)
            decision, needed = yield ("update", (step, ttl_seconds(horizon / NS)))
            if not needed:
                return cast(Decision, decision)
            horizon = max(needed, 2 * horizon)
            self._horizon_hint = horizon

    def _decide(self, limit: int | None, cost: float = 1) -> _Answer | None:
        """One admission against the store (every window with ``limits``).

        Returns ``None`` when the store is down and ``fail_open`` admits the
        call; raises :class:`StoreUnavailableError` when it is down otherwise.
        """
        try:
            if self._limits is not None:
                return self._limits.decide(cost, limit)
            return drive(
                self._decisions(limit, cost),
                self._store,
                self._key,
                ttl=self._ttl,
                clock=get_clock(self._clock),
            )
        except StoreUnavailableError as exc:
            self._store_down("rate_limiter", exc)
            return None

    async def _adecide(self, limit: int | None, cost: float = 1) -> _Answer | None:
        """:meth:`_decide` without blocking the event loop on store I/O."""
        try:
            if self._limits is not None:
                return await self._limits.adecide(cost, limit)
            return await adrive(
                self._decisions(limit, cost),
                self._store,
                self._key,
                ttl=self._ttl,
                clock=get_clock(self._clock),
            )
        except StoreUnavailableError as exc:
            self._store_down("rate_limiter", exc)
            return None

    def _limit(self) -> int | None:
        """The longest wait (ns) this call may take for a slot."""
        if not self.block:
            return 0
        from .timeout import remaining

        bound = self.max_wait
        left = remaining()
        if left is not None:
            bound = left if bound is None else min(bound, left)
        return None if bound is None else seconds_to_ns(bound)

    def _refused(self, wait: int) -> RateLimitedError:
        retry_after = wait / NS
        emit(
            "rate_limiter",
            "rejected",
            subject=self.name,
            retry_after=retry_after,
        )
        return RateLimitedError(
            f"rate limiter {self.name!r} is out of budget "
            f"({self.rate:g} per {self.per:g}s); retry in {retry_after:.3f}s",
            retry_after=retry_after,
            context={"limiter": self.name},
        )

    def _decided(self, decision: Decision) -> float:
        """Seconds to sleep for an admitted call; raise for a refused one."""
        admitted, wait = decision
        if not admitted:
            raise self._refused(wait)
        if wait <= 0 or _config.is_testing():
            return 0.0
        emit(
            "rate_limiter", "delayed", level="debug", subject=self.name, wait=wait / NS
        )
        return wait / NS

    def _cost(self, cost: object) -> float:
        """A valid cost, or ``ValueError`` when no wait could ever admit it."""
        if self._limits is not None:
            return self._limits.check_cost(cost)
        from .limits import check_cost

        value = check_cost(self.name, "cost", cost)
        if value > self.burst:
            raise ValueError(
                f"rate limiter {self.name!r}: cost {value:g} exceeds the burst "
                f"{self.burst}; no wait would ever admit it"
            )
        return value

    def _reservation(self, cost: float, wait: float) -> Reservation:
        from .limits import Reservation

        return Reservation(self, self.name, cost, wait)

    def _admit(self, decision: _Answer | None, cost: float) -> float:
        """Seconds to sleep for an admitted call; raise for a refused one.

        ``None`` (the store is down, the call let through) admits at once.
        """
        if decision is None:
            return 0.0
        if self._limits is None:
            return self._decided(cast(Decision, decision))
        admitted, wait, worst = cast(tuple[bool, int, int], decision)
        if not admitted:
            raise self._limits.refused(wait, worst, cost)
        return self._limits.pause(wait)

    def acquire(self, cost: float = 1) -> Reservation:
        """Take ``cost`` units from every window, waiting when ``block`` (see the class).

        All windows admit the call or none is charged. Give the returned
        :class:`Reservation` to :meth:`settle` once the real cost is known.

        Raises:
            RateLimitedError: No slot within ``max_wait``/the deadline, or at
                once with ``block=False``.
            StoreUnavailableError: The store is down and ``fail_open`` is off.
            ValueError: ``cost`` is negative, not a number, or larger than a
                window's burst (no wait would ever admit it).
        """
        cost = self._cost(cost)
        if not _config._state.active:
            return self._reservation(cost, 0.0)
        pause = self._admit(self._decide(self._limit(), cost), cost)
        if pause:
            get_clock(self._clock).sleep(pause)
        return self._reservation(cost, pause)

    async def aacquire(self, cost: float = 1) -> Reservation:
        """:meth:`acquire` for async code: waits with ``await``."""
        cost = self._cost(cost)
        if not _config._state.active:
            return self._reservation(cost, 0.0)
        pause = self._admit(await self._adecide(self._limit(), cost), cost)
        if pause:
            await get_clock(self._clock).asleep(pause)
        return self._reservation(cost, pause)

    def try_acquire(self, cost: float = 1) -> bool:
        """Take ``cost`` units if every window has them now; never waits.

        Never raises for budget (``ValueError`` for a cost no window could
        ever admit).
        """
        cost = self._cost(cost)
        if not _config._state.active:
            return True
        decision = self._decide(0, cost)
        return decision is None or decision[0]

    async def atry_acquire(self, cost: float = 1) -> bool:
        """:meth:`try_acquire` without blocking the event loop on store I/O."""
        cost = self._cost(cost)
        if not _config._state.active:
            return True
        decision = await self._adecide(0, cost)
        return decision is None or decision[0]

    def _settle_steps(
        self, delta: float
    ) -> tuple[Callable[[Any], tuple[Any, None]], float]:
        now, interval = self._now(), self._interval

        def step(tat: Any) -> tuple[Any, None]:
            if not isinstance(tat, int):
                tat = now
            move = round(interval * delta)
            if delta > 0:
                return max(tat, now) + move, None
            # A refund never makes the bucket fuller than full.
            return max(tat + move, min(tat, now)), None

        span = self._horizon_hint + round(interval * max(0.0, delta))
        return step, ttl_seconds(span / NS)

    def settle(self, reservation: Reservation, actual_cost: float) -> None:
        """Correct a reservation's charge once the real cost is known.

        A lower cost gives the difference back to every cost window (never
        more than a full bucket); a higher one charges it (the next callers
        wait for the debt). Per-call windows are not changed. Each
        reservation is settled once.

        Raises:
            ValueError: Not a reservation of this limiter, already settled,
                or ``actual_cost`` is not a finite number >= 0.
            StoreUnavailableError: The store is down and ``fail_open`` is off.
        """
        from .limits import settlement

        delta = settlement(self, self.name, reservation, actual_cost)
        if not delta or not _config._state.active:
            return
        try:
            if self._limits is not None:
                self._limits.settle(delta)
                return
            step, ttl = self._settle_steps(delta)
            self._store.update(self._key, step, ttl=ttl)
        except StoreUnavailableError as exc:
            self._store_down("rate_limiter", exc)

    async def asettle(self, reservation: Reservation, actual_cost: float) -> None:
        """:meth:`settle` without blocking the event loop on store I/O."""
        from .limits import settlement

        delta = settlement(self, self.name, reservation, actual_cost)
        if not delta or not _config._state.active:
            return
        try:
            if self._limits is not None:
                await self._limits.asettle(delta)
                return
            step, ttl = self._settle_steps(delta)
            await self._store.aupdate(self._key, step, ttl=ttl)
        except StoreUnavailableError as exc:
            self._store_down("rate_limiter", exc)

    @through_method_descriptors
    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        """Decorate a sync or async function; every call takes a slot first."""
        if is_async_callable(fn):
            afn = cast(Callable[P, Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                await self.aacquire()
                return await afn(*args, **kwargs)

            return cast(Callable[P, T], async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            self.acquire()
            return fn(*args, **kwargs)

        return wrapper

    def __enter__(self) -> RateLimiter:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    async def __aenter__(self) -> RateLimiter:
        await self.aacquire()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None
