"""Locks with leases and fencing tokens, on any state store.

A lock is one record in a :class:`~paios_reliability.typing.StateStore`::

    {"t": last_token, "h": holder_id | None, "o": owner, "x": expires_at_ns}

and every operation is one pure function run inside ``store.update``, so the
lock behaves the same in memory, on SQLite (one ``BEGIN IMMEDIATE``
transaction per step) and on Redis (read plus a server-side compare-and-set).

Fencing: each successful acquisition takes ``max(last_token + 1, now_us)``.
The counter lives in the record and survives release and expiry, so a later
holder always gets a larger token; seeding it from the clock (microseconds)
keeps tokens growing even if the record itself is lost (a Redis restart
without persistence, or a record garbage-collected after a day unused).
"""

from __future__ import annotations

import functools
import itertools
import os
import random
import socket
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from .._core.clock import get_clock
from .._core.effects import arun_effects, run_effects
from .._core.events import emit
from .._core.exceptions import LockConflictError
from .._stores import (
    NS,
    StoreUnavailableError,
    adrive,
    check_name,
    check_number,
    drive,
    now_ns,
    resolve_store,
    seconds_to_ns,
)
from .._stores._renewal import Renewal, renew
from .._stores.engine import report_lost_write

if TYPE_CHECKING:
    from .._core.events import Level
    from .._core.exc_info import ExcType, ExcValue, Traceback
    from ..typing import Clock, StateStore

__all__ = ["Lease", "LockManager"]

_PRIMITIVE = "lock"
# How long a lock record outlives its last write: long enough that tokens keep
# counting up through any realistic clock skew between hosts (see module doc).
_RETENTION = 86_400.0
_POLL_MIN = 0.001
_POLL_MAX = 0.05

Step = Callable[[Any], tuple[Any, Any]]
# One update of a lease's record: the step and the record's TTL.
_Update = tuple[Step, float]


# -- the pure steps (each runs inside store.update) ---------------------------------


def acquire_step(
    data: Any, now: int, holder: str, owner: str, ttl_ns: int
) -> tuple[Any, tuple[Any, ...]]:
    """Take the lock if it is free or its lease has expired.

    Returns ``(new_record, ("acquired", token, expires_ns, previous_holder))``
    or ``(record, ("held", holder, owner, expires_ns))``.
    """
    last = 0
    previous = None
    if data is not None:
        last = int(data.get("t", 0))
        previous = data.get("h")
        if previous is not None and data["x"] > now:
            return data, ("held", previous, data.get("o"), data["x"])
    token = max(last + 1, now // 1000)
    expires = now + ttl_ns
    record = {"t": token, "h": holder, "o": owner, "x": expires}
    return record, ("acquired", token, expires, previous)


def release_step(
    data: Any, now: int, holder: str, token: int
) -> tuple[Any, tuple[bool, Any]]:
    """Free the lock if this lease still holds it; the counter stays.

    Returns ``(record, (released, current_holder))``.
    """
    if data is None:
        return None, (False, None)
    current = data.get("h")
    if current == holder and data.get("t") == token and data["x"] > now:
        return {"t": token}, (True, None)
    live = current if current is not None and data["x"] > now else None
    return data, (False, live)


def undo_step(data: Any, holder: str) -> tuple[Any, bool]:
    """Free the lock if ``holder`` holds it, whatever the token (an interrupted acquire).

    The acquiring caller never learnt its token when an interrupt landed
    between the update and its answer; holder ids are unique, so this frees
    only what that very attempt took. Returns ``(record, freed)``.
    """
    if data is not None and data.get("h") == holder:
        return {"t": data.get("t", 0)}, True
    return data, False


def extend_step(
    data: Any, now: int, holder: str, token: int, ttl_ns: int
) -> tuple[Any, tuple[int | None, Any]]:
    """Push the expiry of a live lease to ``now + ttl``.

    Returns ``(record, (new_expires_ns | None, current_holder))``.
    """
    if data is None:
        return None, (None, None)
    current = data.get("h")
    if current == holder and data.get("t") == token and data["x"] > now:
        record = dict(data)
        record["x"] = now + ttl_ns
        return record, (record["x"], holder)
    live = current if current is not None and data["x"] > now else None
    return data, (None, live)


# -- public types -------------------------------------------------------------------


_HOST = socket.gethostname()
_ids = itertools.count(1)


def _default_owner() -> str:
    return f"{_HOST}:{os.getpid()}"


def _new_holder(owner: str) -> str:
    # Unique, not secret: a counter plus random bits (forked children share
    # the counter, not the random state's future, and have another pid).
    return f"{owner}:{next(_ids)}{random.getrandbits(32):08x}"


class Lease:
    """A held lock: its fencing token and expiry, and the means to keep or drop it.

    Obtained from :meth:`LockManager.acquire` or ``with manager.lock(key) as
    lease``. Pass :attr:`token` along with every write the lock protects and
    have the resource reject a token lower than the highest it has seen: then
    a holder whose lease ran out (a long GC pause, a stalled VM) can no longer
    do harm, even though it still believes it holds the lock.

    Attributes:
        key: The lock key.
        token: The fencing token: strictly larger than the token of every
            earlier holder of this key, across processes and hosts.
        holder: This lease's unique id (what a conflicting caller sees).
        owner: Who holds it (``host:pid`` unless the manager was given one).
        ttl: The lease length in seconds last granted.
        lost: Set when a renewal or a release found the lease gone (never for
            a lease this process released itself).
    """

    __slots__ = (
        "_expires_ns",
        "_manager",
        "_released",
        "_releasing",
        "_renewal",
        "holder",
        "key",
        "lost",
        "owner",
        "token",
        "ttl",
    )

    def __init__(
        self,
        manager: LockManager,
        key: str,
        *,
        token: int,
        holder: str,
        owner: str,
        ttl: float,
        expires_ns: int,
    ) -> None:
        self._manager = manager
        self.key = key
        self.token = token
        self.holder = holder
        self.owner = owner
        self.ttl = ttl
        self._expires_ns = expires_ns
        self._released = False
        # Set before the release update is sent: a renewal already in flight
        # may land after it, find the lock free, and must not call that a loss.
        self._releasing = False
        self._renewal: Renewal | None = None
        self.lost = False

    def __repr__(self) -> str:
        return (
            f"Lease(key={self.key!r}, token={self.token!r}, owner={self.owner!r}, "
            f"expires_at={self.expires_at!r})"
        )

    def _event(self, action: str, level: Level, **fields: Any) -> None:
        """Emit ``lock.<action>`` about this lease (its key and fencing token)."""
        emit(
            _PRIMITIVE,
            action,
            level=level,
            subject=self.key,
            fencing_token=self.token,
            **fields,
        )

    @property
    def expires_at(self) -> float:
        """When the lease runs out, in seconds on the store's clock.

        The wall clock (epoch seconds) for shared stores, the monotonic clock
        for a :class:`MemoryStore`, as for every lease in the library.
        """
        return self._expires_ns / NS

    @property
    def remaining(self) -> float:
        """Seconds until the lease runs out, as this process sees it (>= 0)."""
        left = (self._expires_ns - self._manager._now()) / NS
        return max(0.0, left)

    @property
    def released(self) -> bool:
        """Whether :meth:`release` has been called."""
        return self._released

    # -- extend and release: one body each, run by a sync and an async driver --------

    def _update(self, op: _Update) -> Any:
        """Run a body's update of this lease's record."""
        step, ttl = op
        m = self._manager
        return m.store.update(m._key(self.key), step, ttl=ttl)

    async def _aupdate(self, op: _Update) -> Any:
        """:meth:`_update` without blocking the event loop."""
        step, ttl = op
        m = self._manager
        return await m.store.aupdate(m._key(self.key), step, ttl=ttl)

    def _extend_body(self, ttl: float | None) -> Generator[_Update, Any, float]:
        """:meth:`extend`, yielding its one store update."""
        seconds = self.ttl if ttl is None else check_number("Lease.extend", "ttl", ttl)
        m = self._manager
        now = m._now()
        ttl_ns = seconds_to_ns(seconds)
        expires, current = yield (
            lambda data: extend_step(data, now, self.holder, self.token, ttl_ns),
            m._ttl(seconds),
        )
        if expires is None:
            if not self._releasing:
                self.lost = True
                self._event("extend_refused", "warning", holder=current)
            raise LockConflictError(
                f"cannot extend the lease on {self.key!r} (token {self.token}): it "
                "has expired or was released"
                + (f"; {current} holds the lock now" if current else ""),
                key=self.key,
                holder=current,
            )
        self.ttl = seconds
        self._expires_ns = expires
        self._event("extended", "debug", ttl=seconds)
        return self.expires_at

    def extend(self, ttl: float | None = None) -> float:
        """Push the expiry to ``ttl`` seconds from now (default: the last ttl).

        Only a live lease can be extended: once it has expired or been
        released, the lock may belong to someone else.

        Returns:
            The new :attr:`expires_at`.

        Raises:
            LockConflictError: The lease expired or was released (``.holder``
                names the current holder, if any).
            StoreUnavailableError: The store cannot be reached.
        """
        return run_effects(self._extend_body(ttl), self._update)

    async def aextend(self, ttl: float | None = None) -> float:
        """:meth:`extend` without blocking the event loop."""
        return await arun_effects(self._extend_body(ttl), self._aupdate)

    def _release_body(self) -> Generator[_Update, Any, bool]:
        """:meth:`release`, yielding its one store update."""
        if self._released:
            return False
        self._releasing = True
        self._stop_renewing()
        m = self._manager
        now = m._now()
        released, current = yield (
            lambda data: release_step(data, now, self.holder, self.token),
            m._ttl(0),
        )
        self._released = True
        if released:
            self._event("released", "debug")
        else:
            self.lost = True
            self._event("release_refused", "warning", holder=current)
        return bool(released)

    def release(self) -> bool:
        """Give the lock up, if this lease still holds it.

        An expired lease releases nothing: the lock may already be someone
        else's, and it stays theirs. Calling it twice is harmless.

        Returns:
            ``True`` if the lock was released, ``False`` if the lease had
            already expired (or was released before).

        Raises:
            StoreUnavailableError: The store cannot be reached; the lease then
                simply expires after its ttl.
        """
        return run_effects(self._release_body(), self._update)

    async def arelease(self) -> bool:
        """:meth:`release` without blocking the event loop."""
        return await arun_effects(self._release_body(), self._aupdate)

    # -- automatic extension ----------------------------------------------------

    def _renew_once(self) -> bool:
        if self._releasing:
            return False
        try:
            self.extend()
        except LockConflictError:
            if not self._releasing:
                self._event("lost", "error")
            return False
        except StoreUnavailableError as exc:
            report_lost_write(_PRIMITIVE, "renew_failed", self.key, exc)
        return True

    def start_renewing(self) -> None:
        """Extend the lease every ``ttl / 3`` seconds until it is released.

        Runs on the renewal thread of the manager's store (never on the event
        loop; a stuck store delays only the renewals on that store). If the
        lease is found lost, renewing stops, :attr:`lost` is set and a
        ``lock.lost`` error event is emitted. A renewal still in flight when
        :meth:`release` runs is not reported as a loss.
        """
        if self._renewal is None and not self._releasing:
            self._renewal = renew(self._manager.store, self.ttl / 3, self._renew_once)

    def _stop_renewing(self) -> None:
        renewal, self._renewal = self._renewal, None
        if renewal is not None:
            renewal.cancel()

    # -- with / async with --------------------------------------------------------

    def _exit_body(self, block_failed: bool) -> Generator[_Update, Any, None]:
        """The end of a ``with`` block: release, and complain if the lease ran out."""
        if self._released:
            return
        try:
            released = yield from self._release_body()
        except StoreUnavailableError as exc:
            # The block's outcome matters more than ours: the lease expires by itself.
            report_lost_write(_PRIMITIVE, "release_failed", self.key, exc)
            return
        if released or block_failed:
            return
        self._event("lost", "error")
        raise LockConflictError(
            f"the lease on {self.key!r} (token {self.token}) expired before the "
            "block ended: another worker may have held the lock meanwhile",
            key=self.key,
        )

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, exc_type: ExcType, exc: ExcValue, tb: Traceback) -> None:
        run_effects(self._exit_body(exc_type is not None), self._update)

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(self, exc_type: ExcType, exc: ExcValue, tb: Traceback) -> None:
        await arun_effects(self._exit_body(exc_type is not None), self._aupdate)


class _LockBlock:
    """What :meth:`LockManager.lock` returns: acquire on enter, release on exit."""

    __slots__ = ("_auto_extend", "_key", "_lease", "_manager", "_ttl", "_wait")

    def __init__(
        self, manager: LockManager, key: str, ttl: float, wait: float, auto_extend: bool
    ) -> None:
        self._manager = manager
        self._key = key
        self._ttl = ttl
        self._wait = wait
        self._auto_extend = auto_extend
        self._lease: Lease | None = None

    def _check_fresh(self) -> None:
        if self._lease is not None:
            raise RuntimeError(
                "a lock block cannot be entered twice; call lock() again"
            )

    def _entered(self, lease: Lease) -> Lease:
        self._lease = lease
        if self._auto_extend:
            lease.start_renewing()
        return lease

    def __enter__(self) -> Lease:
        self._check_fresh()
        return self._entered(self._manager.acquire(self._key, self._ttl, self._wait))

    def __exit__(self, exc_type: ExcType, exc: ExcValue, tb: Traceback) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            lease.__exit__(exc_type, exc, tb)

    async def __aenter__(self) -> Lease:
        self._check_fresh()
        return self._entered(
            await self._manager.aacquire(self._key, self._ttl, self._wait)
        )

    async def __aexit__(self, exc_type: ExcType, exc: ExcValue, tb: Traceback) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            await lease.__aexit__(exc_type, exc, tb)


class LockManager:
    """Mutual exclusion with leases and fencing tokens, on any state store.

    ``with locks.lock("run:42"):`` lets one worker at a time into the block,
    across threads (:class:`MemoryStore`), processes on one host
    (:class:`SQLiteStore`) or hosts (:class:`RedisStore`). Each lock is a
    lease: if its holder dies (``kill -9``), the lock frees itself ``ttl``
    seconds later. A holder that outlives its lease loses the lock: it can
    neither release nor extend it once someone else may hold it, and its
    fencing token is smaller than the new holder's.

    Waiting callers poll the store with a jittered backoff (1-50 ms), bounded
    by ``wait`` and by the enclosing :func:`~paios_reliability.deadline`.

    There is no fail-open: when the store is down, acquiring raises
    :class:`StoreUnavailableError` (a lock that lets everyone in is no lock).

    Args:
        store: Where locks live (default: a private :class:`MemoryStore`,
            which only excludes threads of this process).
        owner: A readable name of this worker, shown to callers that find the
            lock taken (default ``"host:pid"``).
        clock: Time source for leases (default: the process clock at call
            time). Shared stores use its wall clock, memory its monotonic one.

    Events (``paios_reliability.lock.*``): ``acquired``, ``released``,
    ``extended`` (debug); ``conflict`` (info); ``expired_taken_over``,
    ``release_refused``, ``extend_refused`` (warning); ``lost``,
    ``renew_failed``, ``release_failed`` (error).
    """

    def __init__(
        self,
        store: StateStore | None = None,
        *,
        owner: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.store = resolve_store(store)
        self.owner = None if owner is None else check_name("LockManager owner:", owner)
        self._clock = clock

    def __repr__(self) -> str:
        return f"LockManager({self.store!r})"

    def _now(self) -> int:
        return now_ns(get_clock(self._clock), self.store.shared)

    @staticmethod
    def _key(key: str) -> str:
        return f"{_PRIMITIVE}:{key}"

    @staticmethod
    def _ttl(lease_seconds: float) -> float:
        return lease_seconds + _RETENTION

    def _acquire_steps(
        self, key: str, ttl: object, wait: object, holder: str, owner: str
    ) -> Generator[tuple[str, Any], Any, Lease]:
        """The acquisition loop: yields ("update", step) or ("sleep", s)."""
        check_name("lock", key)
        seconds = check_number("LockManager.acquire", "ttl", ttl)
        patience = check_number("LockManager.acquire", "wait", wait, zero=True)
        from .._policies.timeout import remaining

        left = remaining()
        if left is not None:
            patience = min(patience, left)
        clock = get_clock(self._clock)
        ttl_ns = seconds_to_ns(seconds)
        give_up = clock.monotonic() + patience
        pause = _POLL_MIN
        while True:
            now = self._now()
            step = functools.partial(
                acquire_step, now=now, holder=holder, owner=owner, ttl_ns=ttl_ns
            )
            outcome = yield ("update", step)
            if outcome[0] == "acquired":
                _, token, expires, previous = outcome
                if previous is not None and previous != holder:
                    emit(
                        _PRIMITIVE,
                        "expired_taken_over",
                        level="warning",
                        subject=key,
                        previous=previous,
                        fencing_token=token,
                    )
                emit(
                    _PRIMITIVE,
                    "acquired",
                    level="debug",
                    subject=key,
                    fencing_token=token,
                )
                return Lease(
                    self,
                    key,
                    token=token,
                    holder=holder,
                    owner=owner,
                    ttl=seconds,
                    expires_ns=expires,
                )
            _, current, current_owner, expires = outcome
            held_for = max(0.0, (expires - now) / NS)
            waited = patience - (give_up - clock.monotonic())
            left = give_up - clock.monotonic()
            if left <= 0:
                emit(
                    _PRIMITIVE,
                    "conflict",
                    subject=key,
                    holder=current,
                    retry_after=round(held_for, 6),
                )
                raise LockConflictError(
                    f"lock {key!r} is held by {current} for up to another "
                    f"{held_for:.3f}s (waited {max(0.0, waited):.3f}s)",
                    key=key,
                    holder=current,
                    retry_after=held_for,
                    context={"owner": current_owner},
                )
            sleep = min(pause * random.uniform(0.5, 1.0), left, held_for)  # noqa: S311
            yield ("sleep", max(sleep, 0.0))
            pause = min(_POLL_MAX, pause * 1.5)

    def acquire(self, key: str, ttl: float = 30.0, wait: float = 0.0) -> Lease:
        """Take the lock ``key`` for ``ttl`` seconds, waiting up to ``wait``.

        Args:
            key: The lock's name (any non-empty string, e.g. ``"run:42"``).
            ttl: Lease length in seconds; the lock frees itself this long after
                the last acquire/extend unless released earlier.
            wait: Seconds to keep trying while someone else holds it (``0``:
                one attempt). Also bounded by an enclosing ``deadline``.

        Returns:
            A :class:`Lease`; release it (or use it in ``with``).

        Interrupted (Ctrl-C) or cancelled while the store update runs, it
        takes back whatever that update did before the interrupt propagates:
        no lock is left held by a lease nobody got.

        Raises:
            LockConflictError: Still held by someone else after ``wait``
                (``.holder`` and ``.retry_after`` say by whom and how long).
            StoreUnavailableError: The store cannot be reached.
            ValueError: ``key`` empty, ``ttl`` not > 0, ``wait`` negative.
        """
        owner = self.owner or _default_owner()
        holder = _new_holder(owner)
        return drive(
            self._acquire_steps(key, ttl, wait, holder, owner),
            self.store,
            self._key(key),
            ttl=self._ttl(float(ttl)),
            clock=get_clock(self._clock),
            undo=functools.partial(undo_step, holder=holder),
        )

    async def aacquire(self, key: str, ttl: float = 30.0, wait: float = 0.0) -> Lease:
        """:meth:`acquire` without blocking the event loop.

        Cancelled while the store update runs (in a worker thread, which
        cancellation cannot stop), it waits for the update to end and takes
        back what it did before the cancellation propagates.
        """
        owner = self.owner or _default_owner()
        holder = _new_holder(owner)
        return await adrive(
            self._acquire_steps(key, ttl, wait, holder, owner),
            self.store,
            self._key(key),
            ttl=self._ttl(float(ttl)),
            clock=get_clock(self._clock),
            undo=functools.partial(undo_step, holder=holder),
        )

    def lock(
        self,
        key: str,
        ttl: float = 30.0,
        wait: float = 0.0,
        *,
        auto_extend: bool = False,
    ) -> _LockBlock:
        """A ``with`` / ``async with`` block holding the lock ``key``.

        ``with manager.lock("run:42", ttl=30, wait=5) as lease:`` acquires as
        :meth:`acquire` does and releases when the block ends, however it
        ends. If the lease expired while the block ran (so someone else may
        have held the lock meanwhile), the exit raises
        :class:`LockConflictError`, unless the block is already raising.

        Args:
            key: The lock's name.
            ttl: Lease length in seconds.
            wait: Seconds to wait for a held lock.
            auto_extend: Renew the lease every ``ttl / 3`` seconds while the
                block runs (a background thread; it stops with the block), so
                a block may outlast ``ttl`` as long as its process is alive.

        Raises:
            LockConflictError: Not acquired within ``wait``; or lost during
                the block.
            StoreUnavailableError: The store cannot be reached on entry.
        """
        return _LockBlock(self, key, ttl, wait, bool(auto_extend))
