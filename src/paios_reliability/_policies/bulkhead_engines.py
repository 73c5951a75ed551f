"""Where a bulkhead's slots live: a semaphore with direct hand-off in memory, leases on a shared store.

:class:`~paios_reliability.Bulkhead` picks one engine; both give it the
same operations (enter, leave, stats), sync and async.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
import random
import socket
import threading
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from .._core.clock import get_clock
from .._core.effects import arun_effects, run_effects
from .._core.events import emit
from .._stores import (
    StoreUnavailableError,
    adrive,
    complete,
    drive,
    now_ns,
    seconds_to_ns,
    ttl_seconds,
)
from .._stores._renewal import Renewal, renew
from .._stores.engine import report_lost_write

if TYPE_CHECKING:
    import asyncio

    from ..typing import StateStore
    from .bulkhead import Bulkhead


_PRIMITIVE = "bulkhead"
_POLL_MIN = 0.001
_POLL_MAX = 0.05
_WAITER_TTL = 2.0  # a queued process that stops polling leaves the queue

__all__: list[str] = []


# -- in memory: a semaphore with direct hand-off ------------------------------------


class _Waiter:
    __slots__ = ("event", "future", "granted", "loop")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop | None = None,
        future: asyncio.Future[None] | None = None,
    ) -> None:
        self.granted = False
        self.loop = loop
        self.future = future
        self.event = threading.Event() if loop is None else None

    def grant(self) -> bool:
        # Called with the slots lock held.
        self.granted = True
        if self.event is not None:
            self.event.set()
            return True
        try:
            assert self.loop is not None
            self.loop.call_soon_threadsafe(_wake, self.future)
        except RuntimeError:  # its event loop is closed: nobody to hand it to
            self.granted = False
            return False
        return True


def _wake(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


_ENTERED, _QUEUED, _FULL = 0, 1, 2


class _Slots:
    """One bulkhead name's slots in a MemoryStore cell."""

    __slots__ = ("inside", "lock", "waiters")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inside = 0
        self.waiters: collections.deque[_Waiter] = collections.deque()

    def enter(self, limit: int, queue: int, waiter: _Waiter | None) -> int:
        with self.lock:
            if self.inside < limit and not self.waiters:
                self.inside += 1
                return _ENTERED
            if waiter is None or len(self.waiters) >= queue:
                return _FULL
            self.waiters.append(waiter)
            return _QUEUED

    def release(self, limit: int) -> None:
        with self.lock:
            # Hand the slot straight to the oldest waiter: no barging, and
            # exactly one waiter wakes.
            while self.waiters and self.inside <= limit:
                if self.waiters.popleft().grant():
                    return
            self.inside -= 1

    def abandon(self, waiter: _Waiter) -> bool:
        """Leave the queue; True if a slot was granted meanwhile (now yours)."""
        with self.lock:
            if waiter.granted:
                return True
            with contextlib.suppress(ValueError):
                self.waiters.remove(waiter)
            return False


class _LocalEngine:
    __slots__ = ("_slots", "bulkhead")

    def __init__(self, bulkhead: Bulkhead, slots: _Slots) -> None:
        self.bulkhead = bulkhead
        self._slots = slots

    # Joining and leaving are shared; only the wait differs (a thread waits on
    # an event, a coroutine on a future of its own loop).

    def _join(
        self, make_waiter: Callable[[], _Waiter]
    ) -> tuple[_Waiter | None, float | None]:
        """Enter at once (no waiter returned) or queue up; raise when full."""
        b = self.bulkhead
        limit = b._wait_limit()
        queue = b.max_queue if limit is None or limit > 0 else 0
        waiter = make_waiter() if queue else None
        outcome = self._slots.enter(b.max_concurrent, queue, waiter)
        if outcome == _ENTERED:
            return None, limit
        if outcome == _FULL or waiter is None:
            raise b._full("no free slot and the queue is full")
        b._queued()
        return waiter, limit

    def _settle(self, waiter: _Waiter, granted: bool, limit: float | None) -> None:
        if granted or self._slots.abandon(waiter):
            return  # a slot was handed to us (maybe just as the wait ended)
        raise self.bulkhead._full(f"no slot freed within {limit or 0:.3f}s")

    def _give_up(self, waiter: _Waiter) -> None:
        # Interrupted or cancelled while queued: leave, passing on a slot
        # that was handed to us meanwhile.
        if self._slots.abandon(waiter):
            self._slots.release(self.bulkhead.max_concurrent)

    def enter(self) -> object:
        waiter, limit = self._join(_Waiter)
        if waiter is None:
            return None
        assert waiter.event is not None
        try:
            granted = waiter.event.wait(limit)
        except BaseException:
            self._give_up(waiter)
            raise
        self._settle(waiter, granted, limit)
        return None

    async def aenter(self) -> object:
        import asyncio

        loop = asyncio.get_running_loop()
        waiter, limit = self._join(lambda: _Waiter(loop, loop.create_future()))
        if waiter is None:
            return None
        assert waiter.future is not None
        try:
            done, _ = await asyncio.wait((waiter.future,), timeout=limit)
        except BaseException:
            self._give_up(waiter)
            raise
        self._settle(waiter, bool(done), limit)
        return None

    def exit(self, _token: object) -> None:
        self._slots.release(self.bulkhead.max_concurrent)

    async def aexit(self, token: object) -> None:
        self.exit(token)

    def stats(self) -> tuple[int, int]:
        with self._slots.lock:
            return self._slots.inside, len(self._slots.waiters)


# -- on a shared store: leases ------------------------------------------------------
#
# The stored value: {"l": {lease_id: expires_at}, "w": {waiter_id: [seq,
# expires_at]}, "s": next_seq}. Every step prunes what has expired first.


def _pruned(
    data: Any, now: int
) -> tuple[dict[str, int], dict[str, list[int]], int, int]:
    if data is None:
        return {}, {}, 0, 0
    leases = {k: v for k, v in data["l"].items() if v > now}
    waiters = {k: v for k, v in data["w"].items() if v[1] > now}
    return leases, waiters, data["s"], len(data["l"]) - len(leases)


def _pack(leases: dict[str, int], waiters: dict[str, list[int]], seq: int) -> Any:
    if not leases and not waiters:
        return None
    return {"l": leases, "w": waiters, "s": seq}


def _take(
    data: Any,
    now: int,
    *,
    lease: str,
    lease_ns: int,
    limit: int,
    waiter: str | None,
    queue: int,
    waiter_ns: int,
    seq: int | None = None,
) -> tuple[Any, tuple[int, int]]:
    """Try to take a slot. Returns (_ENTERED | _QUEUED | _FULL, leases reclaimed).

    ``waiter``/``seq``: a queued caller polling, with the place it joined
    at. If its registration expired meanwhile (its poll came late), it is
    re-registered at that place when the queue has room, so it is still
    served before everyone who came after it; if the queue filled up in the
    meantime it gets ``_FULL`` (``max_queue`` stays a bound).
    """
    leases, waiters, next_seq, expired = _pruned(data, now)
    returning = waiter is not None and waiter not in waiters
    mine = -1
    if waiter is not None and not returning:
        mine = waiters[waiter][0]
    elif returning and seq is not None:
        mine = seq  # pruned: its place is remembered by the caller
    else:
        waiter, returning = None, False
    ahead = (
        len(waiters)
        if waiter is None
        else sum(1 for w in waiters.values() if w[0] < mine)
    )
    if limit - len(leases) > ahead:
        leases[lease] = now + lease_ns
        if waiter is not None:
            waiters.pop(waiter, None)
        return _pack(leases, waiters, next_seq), (_ENTERED, expired)
    if waiter is not None and returning:
        if len(waiters) >= queue:
            return _pack(leases, waiters, next_seq), (_FULL, expired)
        waiters[waiter] = [mine, now + waiter_ns]
        return _pack(leases, waiters, next_seq), (_QUEUED, expired)
    if waiter is not None:
        fresh = waiters[waiter][1] - now > waiter_ns // 2
        if fresh and not expired and len(waiters) == len(data["w"]):
            # Still waiting, and our place in the queue is fresh enough: no
            # write (polling waiters must not turn the key into a hot spot).
            return data, (_QUEUED, 0)
        waiters[waiter] = [waiters[waiter][0], now + waiter_ns]
        return _pack(leases, waiters, next_seq), (_QUEUED, expired)
    # A newcomer finding no slot: the caller joins the queue (with _join) if
    # there is room, else it is refused. Nothing changes here but pruning.
    outcome = _QUEUED if queue > len(waiters) else _FULL
    if not expired and len(waiters) == len(data["w"]):
        return data, (outcome, 0)
    return _pack(leases, waiters, next_seq), (outcome, expired)


def _join(
    data: Any, now: int, waiter: str, queue: int, waiter_ns: int
) -> tuple[Any, int | None]:
    """Join the queue; returns the place taken (its sequence), None when full."""
    leases, waiters, seq, _ = _pruned(data, now)
    if len(waiters) >= queue:
        return _pack(leases, waiters, seq), None
    waiters[waiter] = [seq, now + waiter_ns]
    return _pack(leases, waiters, seq + 1), seq


def _drop(
    data: Any, now: int, lease: str | None, waiter: str | None
) -> tuple[Any, None]:
    leases, waiters, seq, expired = _pruned(data, now)
    held = (lease in leases) + (waiter in waiters)
    if not held and not expired and len(waiters) == len(data["w"] if data else ()):
        return data, None  # nothing of ours, nothing stale: no write
    leases.pop(lease or "", None)
    waiters.pop(waiter or "", None)
    return _pack(leases, waiters, seq), None


def _renew(data: Any, now: int, ids: list[str], lease_ns: int) -> tuple[Any, int]:
    if data is None:
        return None, 0
    leases, waiters, seq, _ = _pruned(data, now)
    renewed = 0
    for lease in ids:
        if lease in leases:
            leases[lease] = now + lease_ns
            renewed += 1
    return _pack(leases, waiters, seq), renewed


_ids = itertools.count(1)
_HOST = socket.gethostname()


def _new_id(kind: str) -> str:
    return f"{kind}:{_HOST}:{os.getpid()}:{next(_ids)}:{random.getrandbits(32):08x}"


class _Attempt:
    __slots__ = ("lease", "seq", "waiter")

    def __init__(self, lease: str) -> None:
        self.lease = lease
        self.waiter: str | None = None
        # The place in the queue, kept so a waiter whose registration
        # expired (a late poll) comes back at its place, not at the end.
        self.seq: int | None = None


class _StoreEngine:
    __slots__ = (
        "_held",
        "_held_lock",
        "_key",
        "_pid",
        "_renewal",
        "_store",
        "_ttl",
        "bulkhead",
        "lease_ttl",
    )

    def __init__(self, bulkhead: Bulkhead, store: StateStore) -> None:
        self.bulkhead = bulkhead
        self._store = store
        self._key = f"{_PRIMITIVE}:{bulkhead.name}"
        self.lease_ttl = bulkhead.lease_ttl
        self._ttl = ttl_seconds(max(self.lease_ttl, _WAITER_TTL))
        # The leases this engine holds in this process, renewed together by
        # one registration on the store's renewal lane (one update renews all).
        self._held_lock = threading.Lock()
        self._held: set[str] = set()
        self._pid = os.getpid()
        self._renewal: Renewal | None = None

    def _hold(self, lease: str) -> None:
        with self._held_lock:
            if self._pid != os.getpid():
                # A forked child: the parent's leases are the parent's to renew.
                self._held, self._pid, self._renewal = set(), os.getpid(), None
            self._held.add(lease)
            if self._renewal is None or not self._renewal.active:
                self._renewal = renew(self._store, self.lease_ttl / 3, self._renew_held)

    def _unhold(self, lease: str) -> None:
        with self._held_lock:
            self._held.discard(lease)
            if not self._held and self._renewal is not None:
                self._renewal.cancel()
                self._renewal = None

    def _renew_held(self) -> bool:
        with self._held_lock:
            leases = list(self._held) if self._pid == os.getpid() else []
            if not leases:
                self._renewal = None
                return False
        self.renew(leases)
        return True

    def _now(self) -> int:
        return now_ns(get_clock(self.bulkhead._clock), self._store.shared)

    def _take_step(
        self, lease: str, waiter: str | None, queue: int, seq: int | None = None
    ) -> Callable[[Any], tuple[Any, tuple[int, int]]]:
        now = self._now()
        b = self.bulkhead
        lease_ns = seconds_to_ns(self.lease_ttl)
        waiter_ns = seconds_to_ns(_WAITER_TTL)
        return lambda data: _take(
            data,
            now,
            lease=lease,
            lease_ns=lease_ns,
            limit=b.max_concurrent,
            waiter=waiter,
            queue=queue,
            waiter_ns=waiter_ns,
            seq=seq,
        )

    def _join_step(
        self, waiter: str, queue: int
    ) -> Callable[[Any], tuple[Any, int | None]]:
        now = self._now()
        waiter_ns = seconds_to_ns(_WAITER_TTL)
        return lambda data: _join(data, now, waiter, queue, waiter_ns)

    def _drop_step(
        self, lease: str | None, waiter: str | None
    ) -> Callable[[Any], tuple[Any, None]]:
        now = self._now()
        return lambda data: _drop(data, now, lease, waiter)

    def _reclaimed(self, expired: int) -> None:
        if expired:
            emit(
                _PRIMITIVE,
                "lease_expired",
                level="warning",
                subject=self.bulkhead.name,
                leases=expired,
            )

    def _entered(self, lease: str) -> str:
        self._hold(lease)
        return lease

    # The waiting loop is a generator of store steps and sleeps: the sync and
    # async drivers differ only in how they run a step and how they sleep.

    def _attempts(self, attempt: _Attempt) -> Generator[tuple[str, Any], Any, None]:
        """Yields ("update", step) or ("sleep", seconds); receives step results."""
        b = self.bulkhead
        clock = get_clock(b._clock)
        limit = b._wait_limit()
        queue = b.max_queue if limit is None or limit > 0 else 0
        outcome, expired = yield ("update", self._take_step(attempt.lease, None, queue))
        self._reclaimed(expired)
        if outcome == _ENTERED:
            return
        if outcome == _FULL:
            raise b._full("no free slot and the queue is full")
        waiter = _new_id("waiter")
        attempt.waiter = waiter
        attempt.seq = yield ("update", self._join_step(waiter, queue))
        if attempt.seq is None:
            attempt.waiter = None
            raise b._full("no free slot and the queue is full")
        b._queued()
        give_up = None if limit is None else clock.monotonic() + limit
        pause = _POLL_MIN
        while True:
            if give_up is not None:
                left = give_up - clock.monotonic()
                if left <= 0:
                    raise b._full(f"no slot freed within {limit:.3f}s")
                pause = min(pause, left)
            yield ("sleep", pause * random.uniform(0.5, 1.0))  # noqa: S311
            pause = min(_POLL_MAX, pause * 1.5)
            step = self._take_step(attempt.lease, waiter, queue, attempt.seq)
            outcome, expired = yield ("update", step)
            self._reclaimed(expired)
            if outcome == _ENTERED:
                attempt.waiter = None
                return
            if outcome == _FULL:
                # Our registration expired (a poll came late) and the queue
                # filled up meanwhile: we are no longer in it.
                attempt.waiter = None
                raise b._full("lost its place in the queue, which is full")

    def _entering(self) -> Generator[tuple[str, Any], Any, object]:
        """Enter: yields ("drive", steps), then ("update", step) to clean up a failure."""
        attempt = _Attempt(_new_id("lease"))
        steps = self._attempts(attempt)
        try:
            yield ("drive", steps)
        except BaseException as exc:
            steps.close()
            # Leave the queue, and drop the lease in case the last step took
            # it before an interrupt (dropping what was never taken is a no-op).
            with contextlib.suppress(StoreUnavailableError):
                yield ("update", self._drop_step(attempt.lease, attempt.waiter))
            if isinstance(exc, StoreUnavailableError):
                return self.bulkhead._store_down(exc)
            raise
        return self._entered(attempt.lease)

    def _perform(self, op: tuple[str, Any]) -> Any:
        kind, arg = op
        if kind == "drive":
            clock = get_clock(self.bulkhead._clock)
            return drive(arg, self._store, self._key, ttl=self._ttl, clock=clock)
        return self._store.update(self._key, arg, ttl=self._ttl)

    async def _aperform(self, op: tuple[str, Any]) -> Any:
        kind, arg = op
        if kind == "drive":
            # An update in flight when we are cancelled is still finished, so
            # the clean-up after it sees what it did.
            return await adrive(
                arg,
                self._store,
                self._key,
                ttl=self._ttl,
                clock=get_clock(self.bulkhead._clock),
                finish_on_cancel=True,
            )
        return await complete(self._store.aupdate(self._key, arg, ttl=self._ttl))

    def enter(self) -> object:
        return run_effects(self._entering(), self._perform)

    async def aenter(self) -> object:
        return await arun_effects(self._entering(), self._aperform)

    def exit(self, token: object) -> None:
        if not isinstance(token, str):
            return  # admitted without the store (fail-open)
        self._unhold(token)
        try:
            self._store.update(self._key, self._drop_step(token, None), ttl=self._ttl)
        except StoreUnavailableError as exc:
            self.bulkhead._release_lost(exc)

    async def aexit(self, token: object) -> None:
        if not isinstance(token, str):
            return
        self._unhold(token)
        try:
            await complete(
                self._store.aupdate(
                    self._key, self._drop_step(token, None), ttl=self._ttl
                )
            )
        except StoreUnavailableError as exc:
            self.bulkhead._release_lost(exc)

    def renew(self, leases: list[str]) -> None:
        now = self._now()
        lease_ns = seconds_to_ns(self.lease_ttl)
        try:
            self._store.update(
                self._key,
                lambda data: _renew(data, now, leases, lease_ns),
                ttl=self._ttl,
            )
        except Exception as exc:  # noqa: BLE001 - the renewer thread must survive
            report_lost_write(_PRIMITIVE, "renew_failed", self.bulkhead.name, exc)

    def stats(self) -> tuple[int, int]:
        leases, waiters, _, _ = _pruned(self._store.get(self._key), self._now())
        return len(leases), len(waiters)
