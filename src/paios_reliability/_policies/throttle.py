"""Two small store-backed gates beside the rate limiter.

:class:`Throttle` lets one call through per interval (a burst of one);
:class:`OccurrenceThreshold` fires once when something happened ``count``
times within ``per`` seconds. Both share the limiter's store handling
(:class:`~.ratelimit._Keyed`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._core.events import emit
from .._stores import (
    StoreUnavailableError,
    check_count,
    check_name,
    check_number,
    resolve_store,
    seconds_to_ns,
    ttl_seconds,
)
from .ratelimit import RateLimiter, _Keyed

if TYPE_CHECKING:
    from pathlib import Path

    from ..typing import Clock, StateStore

__all__ = ["OccurrenceThreshold", "Throttle", "doctor_check"]


class Throttle(_Keyed):
    """Let something happen at most once per ``interval`` seconds per key.

    For work that must not repeat too often: a usage write, a warning log
    line, a cache refresh. ``allow(key)`` is true for the first call and then
    false until ``interval`` seconds have passed since the last *allowed* one.
    Per-key state expires after the interval, so many keys do not pile up.

    Args:
        interval: Seconds between allowed occurrences (> 0).
        name: Namespace in the store (two throttles with the same name and
            store share their keys).
        store: Where the state lives (default: private memory).
        fail_open: When the store is unreachable, allow (and emit
            ``throttle.store_unavailable``) instead of raising.
        clock: Time source (default: the process clock at call time).
    """

    def __init__(
        self,
        interval: float,
        *,
        name: str = "throttle",
        store: StateStore | None = None,
        fail_open: bool = False,
        clock: Clock | None = None,
    ) -> None:
        self.interval = check_number("Throttle", "interval", interval)
        self.name = check_name("Throttle", name)
        self.fail_open = bool(fail_open)
        self._clock = clock
        self._store = resolve_store(store)
        self._interval = max(1, seconds_to_ns(self.interval))
        self._ttl = ttl_seconds(self.interval)

    def __repr__(self) -> str:
        return f"Throttle({self.interval!r}, name={self.name!r})"

    def _step(self) -> Callable[[Any], tuple[Any, bool]]:
        now, interval = self._now(), self._interval

        def step(data: Any) -> tuple[Any, bool]:
            # GCRA with a burst of one: the stored value is the next allowed time.
            if data is None or now >= data:
                return now + interval, True
            return data, False

        return step

    def allow(self, key: str = "") -> bool:
        """Whether the occurrence for ``key`` may happen now (and record it if so)."""
        try:
            return self._run(f"throttle:{self.name}:{key}", self._step(), self._ttl)
        except StoreUnavailableError as exc:
            self._store_down("throttle", exc)
            return True

    async def aallow(self, key: str = "") -> bool:
        """:meth:`allow` without blocking the event loop on store I/O."""
        try:
            return await self._arun(
                f"throttle:{self.name}:{key}", self._step(), self._ttl
            )
        except StoreUnavailableError as exc:
            self._store_down("throttle", exc)
            return True


class OccurrenceThreshold(_Keyed):
    """Say "now" once when something happened ``count`` times within ``per`` seconds.

    The noise floor for alerts: ``record(key)`` notes one occurrence and is
    true exactly when the occurrences of ``key`` in the last ``per`` seconds
    reach ``count`` while armed. After firing it is disarmed for ``per``
    seconds; then it re-arms, and fires again as soon as the count within the
    window is at the threshold (so a failure that never stops alerts once per
    window, not on every occurrence).

    Args:
        count: Occurrences within the window that fire (>= 1, at most 10000).
        per: The window in seconds.
        name: Namespace in the store.
        store: Where the state lives (default: private memory).
        fail_open: When the store is unreachable, return ``True`` (better a
            duplicate alert than a lost one) and emit an event, instead of
            raising.
        clock: Time source (default: the process clock at call time).

    Events: ``occurrence_threshold.reached`` (warning; ``key``, ``count``,
    ``per``) when it fires.
    """

    def __init__(
        self,
        count: int = 5,
        per: float = 3600.0,
        *,
        name: str = "occurrences",
        store: StateStore | None = None,
        fail_open: bool = False,
        clock: Clock | None = None,
    ) -> None:
        self.count = check_count("OccurrenceThreshold", "count", count)
        if self.count > 10_000:
            raise ValueError(
                f"OccurrenceThreshold(count=...) must be <= 10000, got {count!r}"
            )
        self.per = check_number("OccurrenceThreshold", "per", per)
        self.name = check_name("OccurrenceThreshold", name)
        self.fail_open = bool(fail_open)
        self._clock = clock
        self._store = resolve_store(store)
        self._per = max(1, seconds_to_ns(self.per))
        self._ttl = ttl_seconds(self.per)

    def __repr__(self) -> str:
        return f"OccurrenceThreshold({self.count!r}, {self.per!r}, name={self.name!r})"

    def _step(self) -> Callable[[Any], tuple[Any, bool]]:
        now, per, count = self._now(), self._per, self.count

        def step(data: Any) -> tuple[Any, bool]:
            # [fired_at or None, up to `count` recent occurrence times...]
            fired = None if data is None else data[0]
            recent = [] if data is None else [t for t in data[1:] if now - t < per]
            recent.append(now)
            del recent[:-count]
            if fired is not None and now - fired >= per:
                fired = None  # the window since firing has passed: re-armed
            reached = fired is None and len(recent) >= count
            if reached:
                fired = now
            return [fired, *recent], reached

        return step

    def _reached(self, key: str, reached: bool) -> bool:
        if reached:
            emit(
                "occurrence_threshold",
                "reached",
                level="warning",
                subject=self.name,
                key=key,
                count=self.count,
                per=self.per,
            )
        return reached

    def record(self, key: str = "") -> bool:
        """Note one occurrence of ``key``; true when this one reaches the threshold."""
        try:
            reached = self._store.update(
                f"occurrence:{self.name}:{key}", self._step(), ttl=self._ttl
            )
        except StoreUnavailableError as exc:
            self._store_down("occurrence_threshold", exc)
            return True
        return self._reached(key, reached)

    async def arecord(self, key: str = "") -> bool:
        """:meth:`record` without blocking the event loop on store I/O."""
        try:
            reached = await self._store.aupdate(
                f"occurrence:{self.name}:{key}", self._step(), ttl=self._ttl
            )
        except StoreUnavailableError as exc:
            self._store_down("occurrence_threshold", exc)
            return True
        return self._reached(key, reached)


def doctor_check(tmp: Path) -> str:
    """Self-check for ``paios-reliability doctor``: limiter, throttle, threshold.

    Two limiter instances on one SQLite file share one budget; a throttle
    allows once per interval; a threshold fires exactly once.
    """
    from .._core.clock import FakeClock
    from .._stores._sqlite import SQLiteStore

    clock = FakeClock()
    store = SQLiteStore(tmp / "doctor-ratelimit.db")
    try:
        limiters = [
            RateLimiter("doctor", rate=3, per=60, store=store, clock=clock)
            for _ in range(2)
        ]
        admitted = [limiters[i % 2].try_acquire() for i in range(5)]
        if admitted != [True, True, True, False, False]:
            raise AssertionError(f"shared budget of 3 admitted {admitted}")
        clock.advance(20)
        if not limiters[1].try_acquire():
            raise AssertionError("the budget did not refill after one interval")
        throttle = Throttle(60, store=store, clock=clock)
        if [throttle.allow("k"), throttle.allow("k")] != [True, False]:
            raise AssertionError("throttle allowed twice within its interval")
        threshold = OccurrenceThreshold(3, 60, store=store, clock=clock)
        fired = [threshold.record("k") for _ in range(5)]
        if fired != [False, False, True, False, False]:
            raise AssertionError(f"threshold fired {fired}")
    finally:
        store.close()
    return "GCRA budget shared through SQLite; throttle and threshold exact"
