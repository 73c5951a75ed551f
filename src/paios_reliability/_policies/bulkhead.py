"""Bulkhead: at most N calls inside at once, a bounded queue for the rest.

Two engines, one contract:

- in memory, a semaphore with a FIFO queue of waiters that are handed a slot
  directly when one frees up (threads wait on an event, coroutines on a
  future of their own loop), so a release wakes exactly one waiter;
- on a shared store (SQLite, Redis), each slot is a *lease* with an expiry,
  kept alive by a background renewer while its holder runs. A holder that
  dies (``kill -9``) stops renewing and its slot comes back after
  ``lease_ttl``. Waiters register in the store too (that is the bounded
  queue, across processes) and poll with a short backoff; they are served
  oldest first.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from .._core import settings as _config
from .._core.dispatch import is_async_callable, through_method_descriptors
from .._core.events import emit
from .._core.exceptions import BulkheadFullError, TimeoutExceeded
from .._stores import (
    MemoryStore,
    StoreUnavailableError,
    check_count,
    check_name,
    check_number,
    check_optional_number,
    resolve_store,
)
from .._stores.engine import report_lost_write, store_down
from .bulkhead_engines import _PRIMITIVE, _LocalEngine, _Slots, _StoreEngine

if TYPE_CHECKING:
    from pathlib import Path

    from .._core.exc_info import ExcType, ExcValue, Traceback
    from ..typing import Clock, StateStore
    from .keyed import KeyedPolicy

__all__ = ["Bulkhead", "BulkheadStats", "doctor_check"]

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BulkheadStats:
    """A snapshot of a bulkhead (of the shared state, on a shared store).

    Attributes:
        name: The bulkhead's name.
        max_concurrent: Slots.
        in_use: Slots held now.
        queued: Callers waiting for a slot now.
    """

    name: str
    max_concurrent: int
    in_use: int
    queued: int


# -- the public class ---------------------------------------------------------------

_FAIL_OPEN = object()


class Bulkhead:
    """Let at most ``max_concurrent`` calls run at once; queue or refuse the rest.

    E.g. "at most 5 agent sessions at once across all worker processes". A
    caller that finds every slot taken waits in a FIFO queue of at most
    ``max_queue`` callers, for at most ``max_wait`` seconds and never past the
    enclosing :func:`~paios_reliability.deadline`; otherwise it gets
    :class:`BulkheadFullError` (a :class:`RateLimitedError`) at once. The
    default ``max_queue=0`` never waits.

    On a shared store (:class:`SQLiteStore`, :class:`RedisStore`) the limit
    holds across processes and hosts: each slot is a lease that expires
    ``lease_ttl`` seconds after its holder stops renewing it (a background
    thread renews the leases of running calls), so a holder that crashed or
    was killed gives its slot back after at most ``lease_ttl``. Queued callers
    on a shared store poll (1-50 ms backoff) and are served oldest first.

    Use it as a decorator (sync or async) or as ``with`` / ``async with``.
    Cancellation or Ctrl-C while queued leaves the queue; while inside, frees
    the slot. A slot is always freed when the call ends, however it ends.

    Args:
        name: Identifies the bulkhead in events, errors and the store.
        max_concurrent: Calls allowed inside at once (>= 1).
        max_queue: Callers allowed to wait for a slot (>= 0).
        max_wait: Longest wait in the queue, in seconds (``None``: only the
            enclosing deadline bounds it).
        store: Where the slots live (default: private memory).
        lease_ttl: Life of a slot lease on a shared store without renewal.
        fail_open: When the store is unreachable, let calls in (and emit
            ``bulkhead.store_unavailable``) instead of raising
            :class:`StoreUnavailableError`.
        clock: Time source for leases and queue waits on shared stores.

    Events (``paios_reliability.bulkhead.*``): ``rejected`` (info),
    ``queued`` (debug), ``lease_expired`` (warning: a holder died),
    ``store_unavailable``, ``release_lost``, ``renew_failed`` (error).
    """

    def __init__(
        self,
        name: str,
        *,
        max_concurrent: int,
        max_queue: int = 0,
        max_wait: float | None = None,
        store: StateStore | None = None,
        lease_ttl: float = 60.0,
        fail_open: bool = False,
        clock: Clock | None = None,
    ) -> None:
        owner = "Bulkhead"
        self.name = check_name(owner, name)
        self.max_concurrent = check_count(owner, "max_concurrent", max_concurrent)
        self.max_queue = check_count(owner, "max_queue", max_queue, minimum=0)
        self.max_wait = check_optional_number(owner, "max_wait", max_wait, zero=True)
        self.lease_ttl = check_number(owner, "lease_ttl", lease_ttl)
        self.fail_open = bool(fail_open)
        self._clock = clock
        self.store = resolve_store(store)
        self._engine: _LocalEngine | _StoreEngine
        if isinstance(self.store, MemoryStore):
            self._engine = _LocalEngine(
                self, self.store.cell(f"{_PRIMITIVE}:{name}", _Slots)
            )
        else:
            self._engine = _StoreEngine(self, self.store)

    def __repr__(self) -> str:
        return (
            f"Bulkhead({self.name!r}, max_concurrent={self.max_concurrent!r}, "
            f"max_queue={self.max_queue!r})"
        )

    @classmethod
    def keyed(
        cls,
        name: str,
        *,
        max_keys: int = 1024,
        key: Callable[..., object] | None = None,
        store: StateStore | None = None,
        **options: Any,
    ) -> KeyedPolicy[Bulkhead]:
        """One independent bulkhead per key (host, provider, tenant, tool).

        Each key's bulkhead is ``Bulkhead(f"{name}:{key}", store=store,
        **options)``, created on first use; at most ``max_keys`` are kept
        (least recently used evicted, never one whose state still matters).
        ``key`` is a function of the call's arguments for decorating (or give
        it to ``resilient(key=...)``). See
        :class:`~paios_reliability.KeyedPolicy`.

        Raises:
            ValueError: Invalid options (checked now), or a store that is not
                shared (per-key memory state stays with each key's bulkhead).
        """
        from .keyed import bulkhead_evictable, keyed_policy

        return keyed_policy(
            cls,
            name,
            bulkhead_evictable,
            max_keys=max_keys,
            key=key,
            store=store,
            options=options,
        )

    @property
    def stats(self) -> BulkheadStats:
        """Slots in use and callers queued now."""
        in_use, queued = self._engine.stats()
        return BulkheadStats(self.name, self.max_concurrent, in_use, queued)

    # -- helpers for the engines ----------------------------------------------

    def _wait_limit(self) -> float | None:
        """Seconds a caller may wait in the queue (None: unbounded)."""
        if not self.max_queue:
            return 0.0
        from .timeout import remaining

        bound = self.max_wait
        left = remaining()
        if left is not None:
            bound = left if bound is None else min(bound, left)
        return bound

    def _full(self, why: str) -> BulkheadFullError:
        emit(_PRIMITIVE, "rejected", subject=self.name, reason=why)
        return BulkheadFullError(
            f"bulkhead {self.name!r} is full ({self.max_concurrent} inside, "
            f"queue {self.max_queue}): {why}",
            context={"bulkhead": self.name},
        )

    def _queued(self) -> None:
        emit(_PRIMITIVE, "queued", level="debug", subject=self.name)

    def _store_down(self, exc: StoreUnavailableError) -> object:
        store_down(_PRIMITIVE, self.name, exc, fail_open=self.fail_open)
        return _FAIL_OPEN

    def _release_lost(self, exc: StoreUnavailableError) -> None:
        # The lease will expire on its own after lease_ttl.
        report_lost_write(_PRIMITIVE, "release_lost", self.name, exc)

    # -- running calls --------------------------------------------------------

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` inside a slot.

        Raises:
            BulkheadFullError: No slot (and no queue room, or the wait ran out).
            StoreUnavailableError: The store is down and ``fail_open`` is off.
        """
        if not _config._state.active:
            return fn(*args, **kwargs)
        token = self._engine.enter()
        try:
            return fn(*args, **kwargs)
        except TimeoutExceeded as exc:
            if _exit_when_worker_ends(exc, self._engine, token):
                token = _NOT_ENTERED
            raise
        finally:
            if token is not _NOT_ENTERED:
                self._engine.exit(token)

    async def acall(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Await ``fn(*args, **kwargs)`` inside a slot (see :meth:`call`)."""
        if not _config._state.active:
            return await fn(*args, **kwargs)
        token = await self._engine.aenter()
        try:
            return await fn(*args, **kwargs)
        finally:
            await self._engine.aexit(token)

    @through_method_descriptors
    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        """Decorate a sync or async function; the signature is kept."""
        if is_async_callable(fn):
            afn = cast(Callable[P, Awaitable[Any]], fn)
            acall = self.acall

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await acall(afn, *args, **kwargs)

            return cast(Callable[P, T], async_wrapper)

        call = self.call

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return call(fn, *args, **kwargs)

        return wrapper

    # ``with`` blocks keep their slot token per thread/task.
    def _push(self, token: object) -> None:
        _blocks.set((*_blocks.get(), (self, token)))

    def _pop(self) -> object:
        blocks = _blocks.get()
        for i in range(len(blocks) - 1, -1, -1):
            if blocks[i][0] is self:
                _blocks.set(blocks[:i] + blocks[i + 1 :])
                return blocks[i][1]
        return _NOT_ENTERED

    def __enter__(self) -> Bulkhead:
        if _config._state.active:
            self._push(self._engine.enter())
        return self

    def __exit__(self, exc_type: ExcType, exc: ExcValue, tb: Traceback) -> None:
        token = self._pop()
        if token is not _NOT_ENTERED and not (
            isinstance(exc, TimeoutExceeded)
            and _exit_when_worker_ends(exc, self._engine, token)
        ):
            self._engine.exit(token)

    async def __aenter__(self) -> Bulkhead:
        if _config._state.active:
            self._push(await self._engine.aenter())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        token = self._pop()
        if token is not _NOT_ENTERED:
            await self._engine.aexit(token)


_NOT_ENTERED = object()


def _exit_when_worker_ends(
    exc: TimeoutExceeded, engine: _LocalEngine | _StoreEngine, token: object
) -> bool:
    """Keep the slot of a timed-out sync call whose worker still runs.

    A sync ``timeout`` inside the bulkhead gives up waiting, but the work goes
    on in its worker thread: the slot is freed when that work really ends,
    so the bulkhead never has more than ``max_concurrent`` calls running.
    Returns whether the exit was handed to the worker.
    """
    worker = exc.worker
    if worker is None or worker.done():
        return False
    worker.add_done_callback(lambda: engine.exit(token))
    return True


# The slot tokens of ``with bulkhead:`` blocks, innermost last, per thread/task.
_blocks: contextvars.ContextVar[tuple[tuple[Bulkhead, object], ...]] = (
    contextvars.ContextVar("paios_reliability_bulkhead_blocks", default=())
)


def doctor_check(tmp: Path) -> str:
    """Self-check for ``paios-reliability doctor``: slots shared via SQLite.

    With one slot held by one instance, a second instance on the same file is
    refused; after the release it gets in; nothing stays leased.
    """
    from .._stores._sqlite import SQLiteStore

    store = SQLiteStore(tmp / "doctor-bulkhead.db")
    other = SQLiteStore(store.path)
    try:
        first = Bulkhead("doctor", max_concurrent=1, store=store)
        second = Bulkhead("doctor", max_concurrent=1, store=other)
        with first:
            try:
                second.call(lambda: None)
            except BulkheadFullError:
                pass
            else:
                raise AssertionError("two callers inside a one-slot bulkhead")
        if second.call(lambda: "in") != "in" or first.stats.in_use != 0:
            raise AssertionError(f"slot not released: {first.stats}")
    finally:
        other.close()
        store.close()
    return "one slot shared through SQLite, released on exit"
