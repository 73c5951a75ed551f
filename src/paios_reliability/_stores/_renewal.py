"""Lease renewal: one lane per store, so a stuck store delays only its own leases.

Lock leases, idempotency claims and shared-store bulkhead slots are records
with an expiry that their holder pushes forward while it works. Each holder
registers a *callback* (one store update that renews), an *interval* and the
*store* it renews on::

    renewal = renew(store, ttl / 3, extend_my_lease)   # returns a Renewal
    ...
    renewal.cancel()

Every store object gets its own *lane*: a daemon thread, created on first use
and ended after idling for a moment, that calls the due callbacks of that
store one after another (real time). Renewals on different stores never wait
on each other: an SQLite file held by another writer's long transaction, or a
Redis server that stopped answering, holds up the lane of that store only,
while the claims and leases on every other store keep being renewed.

Threads are bounded: at most :data:`MAX_LANES` lanes exist at once. Past that,
a new store shares the lane serving the fewest stores (and then a stuck store
can delay the others on its lane: the price of the bound). A lane left with
no store and no callback running is reused before a new one is made.

Callbacks run on the lane thread, never on an event loop. One returns
``False`` to stop being called; one that raises is reported
(``renewal.callback_failed``) and called again at its next turn. After
``fork()`` the child starts with no lanes (the parent's threads do not exist
there); registrations made in the parent are inert in the child.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from .._core.events import emit

__all__ = ["MAX_LANES", "Renewal", "active_renewals", "renew"]

#: Most renewal threads per process.
MAX_LANES = 16
# An idle lane waits this long for new work before its thread ends, so a
# quick release-then-acquire does not start a thread each time.
_LINGER = 1.0


class Renewal:
    """One registered callback; :meth:`cancel` it when the lease ends.

    Attributes:
        interval: Seconds between calls (real time).
        cancelled: Whether it was cancelled (or its callback returned False).
    """

    __slots__ = (
        "_lane",
        "_pid",
        "_registry",
        "_store_id",
        "callback",
        "cancelled",
        "due",
        "interval",
    )

    def __init__(
        self,
        registry: _Registry,
        lane: _Lane,
        store_id: int,
        interval: float,
        callback: Callable[[], bool],
    ) -> None:
        self._registry = registry
        self._lane = lane
        self._store_id = store_id
        self._pid = os.getpid()
        self.interval = interval
        self.callback = callback
        self.cancelled = False
        self.due = time.monotonic() + interval

    @property
    def active(self) -> bool:
        """Still being called: not cancelled, and registered in this process."""
        return not self.cancelled and self._pid == os.getpid()

    def cancel(self) -> None:
        """Stop calling the callback (one already running finishes). Idempotent."""
        self.cancelled = True
        if self._pid == os.getpid():
            # In a forked child the parent's lanes (and their lock) are not
            # ours to touch: the registration is simply inert here.
            self._registry.discard(self)


class _Lane:
    """A thread and the callbacks of the stores it serves."""

    __slots__ = ("busy", "cond", "entries", "stores", "thread")

    def __init__(self, lock: threading.Lock) -> None:
        self.cond = threading.Condition(lock)
        self.entries: set[Renewal] = set()
        # id(store) -> store: the strong reference keeps the id unique while
        # the lane serves it.
        self.stores: dict[int, object] = {}
        self.thread: threading.Thread | None = None
        self.busy = False  # a callback is running (maybe stuck on its store)


class _Registry:
    """Every lane of this process, behind one lock."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        # Also run in a forked child: the parent's threads do not exist there,
        # and the lock may have been held at the moment of the fork.
        self.lock = threading.Lock()
        self.by_store: dict[int, _Lane] = {}
        self.lanes: list[_Lane] = []

    def add(
        self, store: object, interval: float, callback: Callable[[], bool]
    ) -> Renewal:
        store_id = id(store)
        with self.lock:
            lane = self.by_store.get(store_id)
            if lane is None:
                lane = self._lane_for_new_store()
                lane.stores[store_id] = store
                self.by_store[store_id] = lane
            renewal = Renewal(self, lane, store_id, interval, callback)
            lane.entries.add(renewal)
            if lane.thread is None:
                lane.thread = threading.Thread(
                    target=self._run,
                    args=(lane,),
                    name="paios-renewal",
                    daemon=True,
                )
                lane.thread.start()
            lane.cond.notify()
        return renewal

    def _lane_for_new_store(self) -> _Lane:
        # Called with the lock held. An idle lane (no store, nothing running)
        # is as good as a new one; a busy one may be stuck on its old store.
        for lane in self.lanes:
            if not lane.stores and not lane.busy:
                return lane
        if len(self.lanes) < MAX_LANES:
            lane = _Lane(self.lock)
            self.lanes.append(lane)
            return lane
        return min(self.lanes, key=lambda lane: (len(lane.stores), lane.busy))

    def discard(self, renewal: Renewal) -> None:
        with self.lock:
            lane = renewal._lane
            lane.entries.discard(renewal)
            store_id = renewal._store_id
            if store_id in lane.stores and not any(
                entry._store_id == store_id for entry in lane.entries
            ):
                del lane.stores[store_id]
                if self.by_store.get(store_id) is lane:
                    del self.by_store[store_id]
            lane.cond.notify()

    def count(self) -> int:
        with self.lock:
            return sum(len(lane.entries) for lane in self.lanes)

    def _run(self, lane: _Lane) -> None:
        idle_since: float | None = None
        while True:
            with self.lock:
                while True:
                    now = time.monotonic()
                    if not lane.entries:
                        if idle_since is None:
                            idle_since = now
                        left = idle_since + _LINGER - now
                        if left <= 0 or lane not in self.lanes:
                            self._end(lane)
                            return
                        lane.cond.wait(left)
                        continue
                    idle_since = None
                    due = [entry for entry in lane.entries if entry.due <= now]
                    if due:
                        break
                    lane.cond.wait(min(entry.due for entry in lane.entries) - now)
                for entry in due:
                    entry.due = now + entry.interval
                lane.busy = True
            try:
                for entry in due:
                    if entry.cancelled:
                        continue
                    try:
                        keep = entry.callback()
                    except Exception as exc:  # noqa: BLE001 - the lane must survive
                        emit("renewal", "callback_failed", level="error", exc=exc)
                        keep = True
                    if not keep:
                        entry.cancel()
            finally:
                with self.lock:
                    lane.busy = False

    def _end(self, lane: _Lane) -> None:
        # Called with the lock held, by the lane's own thread.
        lane.thread = None
        for store_id in list(lane.stores):
            if self.by_store.get(store_id) is lane:
                del self.by_store[store_id]
        lane.stores.clear()
        if lane in self.lanes:
            self.lanes.remove(lane)


_registry = _Registry()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_registry._reset)


def renew(store: object, interval: float, callback: Callable[[], bool]) -> Renewal:
    """Call ``callback()`` every ``interval`` seconds on ``store``'s lane.

    Args:
        store: The store the callback updates: its identity picks the lane.
        interval: Seconds between calls (real time, > 0); the first call is
            one interval from now.
        callback: One renewal; returns ``False`` to stop being called. It
            runs on the lane's thread: it must not need an event loop.

    Returns:
        The :class:`Renewal`; :meth:`~Renewal.cancel` it when the lease ends.
        A callback already running when it is cancelled still finishes, so
        holders must tolerate one late renewal (see ``Lease`` and the
        idempotency claims, which recognise their own release).
    """
    if not interval > 0:
        raise ValueError(f"renewal interval must be > 0, got {interval!r}")
    return _registry.add(store, interval, callback)


def active_renewals() -> int:
    """How many callbacks are registered now, across every lane."""
    return _registry.count()
