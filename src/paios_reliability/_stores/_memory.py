"""The in-process store: a dict behind a lock."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["MemoryStore"]

R = TypeVar("R")
C = TypeVar("C")

_SWEEP_EVERY = 1024


class MemoryStore:
    """State for one process: the default store of every primitive.

    Thread-safe; ``update`` runs its function under one lock, so it is atomic
    against every other thread. Keys expire ``ttl`` seconds after their last
    write (swept in amortised O(1)), so per-key primitives such as
    :class:`~paios_reliability.Throttle` do not grow without bound.

    Pass one instance to several primitives of the same name to let them share
    state inside the process; a primitive created with ``store=None`` gets a
    private one.
    """

    __slots__ = ("__weakref__", "_cells", "_data", "_lock", "_next_sweep", "_ops")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[str, tuple[Any, float]] = {}
        self._cells: dict[str, Any] = {}
        self._ops = 0
        self._next_sweep = _SWEEP_EVERY

    @property
    def shared(self) -> bool:
        """Always ``False``: only this process sees the state."""
        return False

    def get(self, key: str) -> Any:
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return None
            if entry[1] <= time.monotonic():
                del self._data[key]
                return None
            return entry[0]

    def update(self, key: str, fn: Callable[[Any], tuple[Any, R]], *, ttl: float) -> R:
        with self._lock:
            now = time.monotonic()
            entry = self._data.get(key)
            current = None if entry is None or entry[1] <= now else entry[0]
            new, result = fn(current)
            if new is None:
                self._data.pop(key, None)
            elif new is not current:
                self._data[key] = (new, now + ttl)
            self._ops += 1
            if self._ops >= self._next_sweep:
                self._sweep(now)
            return result

    async def aget(self, key: str) -> Any:
        return self.get(key)

    async def aupdate(
        self, key: str, fn: Callable[[Any], tuple[Any, R]], *, ttl: float
    ) -> R:
        return self.update(key, fn, ttl=ttl)

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def close(self) -> None:
        """Nothing to release; the state stays readable."""

    def cell(self, key: str, factory: Callable[[], C]) -> C:
        """The one in-process object kept under ``key``, made by ``factory`` once.

        The fast path of the breaker and the bulkhead: a mutable object with
        its own lock, shared by every primitive of that name on this store.
        Cells never expire.
        """
        with self._lock:
            found = self._cells.get(key)
            if found is None:
                found = self._cells[key] = factory()
            return found

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def _sweep(self, now: float) -> None:
        expired = [k for k, (_, exp) in self._data.items() if exp <= now]
        for k in expired:
            del self._data[k]
        self._ops = 0
        self._next_sweep = max(_SWEEP_EVERY, len(self._data))

    def __repr__(self) -> str:
        return f"MemoryStore(keys={len(self._data)})"
