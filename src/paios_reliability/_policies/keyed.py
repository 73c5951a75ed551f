"""Per-key policies with bounded memory: ``CircuitBreaker.keyed(...)`` and friends.

One bad host, provider, tenant or tool must not trip everybody: a keyed
policy keeps one independent breaker, limiter or bulkhead per key, created on
first use. At most ``max_keys`` are kept in the process, least recently used
first out - but never one whose state still matters and would be lost: an
open breaker (until a probe is due), a bulkhead with calls inside, a limiter
whose bucket is not full again. On a shared store (SQLite, Redis) the state
lives in the store under ``<name>:<key>``, so dropping the object loses
nothing and any process sees the same per-key state.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, cast

from .._core.checks import check_count
from .._core.dispatch import is_async_callable
from .._core.events import emit

if TYPE_CHECKING:
    from ..typing import StateStore

__all__ = ["KeyedPolicy"]

P = ParamSpec("P")
T = TypeVar("T")
Pol = TypeVar("Pol")

_MAX_KEY_LENGTH = 200


class _Entry(Generic[Pol]):
    __slots__ = ("policy", "wrapped")

    def __init__(self, policy: Pol) -> None:
        self.policy = policy
        # The policy's decorator applied once per function, not once per call.
        self.wrapped: dict[Callable[..., Any], Callable[..., Any]] = {}


class _Table(Generic[Pol]):
    """The LRU of per-key policies one keyed policy and its views share."""

    __slots__ = ("entries", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: OrderedDict[str, _Entry[Pol]] = OrderedDict()


class KeyedPolicy(Generic[Pol]):
    """One independent policy per key (see ``CircuitBreaker.keyed`` and friends).

    Use :meth:`get` to reach a key's policy, or decorate a function: with
    ``key=`` (a function of the call's arguments) every call goes through the
    policy of its key. In :func:`~paios_reliability.resilient` pass it as
    ``breaker=``/``limiter=``/``bulkhead=`` with ``resilient(key=...)``.

    Thread-safe; the table is guarded by a lock that is never held while a
    call runs.

    Attributes:
        name: The prefix of every per-key policy's name (``<name>:<key>``).
        max_keys: How many per-key policies are kept (least recently used
            evicted; never one whose state still matters).
    """

    __slots__ = ("_evictable", "_factory", "_key", "_table", "kind", "max_keys", "name")

    def __init__(
        self,
        kind: str,
        name: str,
        factory: Callable[[str], Pol],
        evictable: Callable[[Pol], bool],
        *,
        max_keys: int,
        key: Callable[..., object] | None,
        table: _Table[Pol] | None = None,
    ) -> None:
        check_count(f"{kind}.keyed", "max_keys", max_keys)
        if key is not None and not callable(key):
            raise TypeError(
                f"{kind}.keyed(key=...) must be a function of the call's arguments, "
                f"got {key!r}"
            )
        self.kind = kind
        self.name = name
        self.max_keys = max_keys
        self._factory = factory
        self._evictable = evictable
        self._key = key
        self._table: _Table[Pol] = _Table() if table is None else table

    def __repr__(self) -> str:
        return f"{self.kind}.keyed({self.name!r}, max_keys={self.max_keys}, keys={len(self)})"

    def __len__(self) -> int:
        with self._table.lock:
            return len(self._table.entries)

    def __contains__(self, key: object) -> bool:
        """Whether ``key``'s policy is kept now (does not touch its recency)."""
        with self._table.lock:
            return str(key) in self._table.entries

    def keys(self) -> list[str]:
        """The keys kept now, least recently used first."""
        with self._table.lock:
            return list(self._table.entries)

    @property
    def template(self) -> Pol:
        """A policy built like every per-key one (for descriptions); not kept."""
        return self._factory("<key>")

    def with_key(self, key: Callable[..., object]) -> KeyedPolicy[Pol]:
        """The same per-key policies, chosen by ``key`` (``resilient(key=...)``)."""
        return KeyedPolicy(
            self.kind,
            self.name,
            self._factory,
            self._evictable,
            max_keys=self.max_keys,
            key=key,
            table=self._table,
        )

    def _entry(self, key: object) -> _Entry[Pol]:
        text = key if isinstance(key, str) else str(key)
        if not text or len(text) > _MAX_KEY_LENGTH:
            raise ValueError(
                f"{self.kind}.keyed({self.name!r}): a key must be a non-empty string "
                f"of at most {_MAX_KEY_LENGTH} characters, got one of {len(text)}"
            )
        table = self._table
        with table.lock:
            entry = table.entries.get(text)
            if entry is not None:
                table.entries.move_to_end(text)
                return entry
            entry = table.entries[text] = _Entry(self._factory(text))
            evicted = self._evict() if len(table.entries) > self.max_keys else None
        if evicted is not None:
            emit(
                "keyed",
                "evicted",
                level="debug",
                subject=self.name,
                kind=self.kind,
                keys=self.max_keys,
            )
        return entry

    def _evict(self) -> str | None:
        """Drop the least recently used key whose state no longer matters."""
        entries = self._table.entries
        newest = next(reversed(entries))
        for text, entry in entries.items():
            if text != newest and self._evictable(entry.policy):
                del entries[text]
                return text
        return None  # all still matter: keep them (bounded by their own timeouts)

    def get(self, key: object) -> Pol:
        """The policy of ``key`` (``str(key)``), created on first use.

        Raises:
            ValueError: An empty key or one longer than 200 characters.
        """
        return self._entry(key).policy

    def _wrapped(
        self, entry: _Entry[Pol], fn: Callable[..., Any]
    ) -> Callable[..., Any]:
        found = entry.wrapped.get(fn)
        if found is None:
            decorate = cast(
                Callable[[Callable[..., Any]], Callable[..., Any]], entry.policy
            )
            found = entry.wrapped[fn] = decorate(fn)
        return found

    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        """Decorate ``fn``: each call goes through the policy of its key.

        Raises:
            TypeError: No ``key=`` function was given (here or by ``resilient``).
        """
        pick = self._key
        if pick is None:
            raise TypeError(
                f"{self.kind}.keyed({self.name!r}) needs key=: a function of the "
                "call's arguments (or resilient(key=...))"
            )
        entry_for, wrapped = self._entry, self._wrapped
        if is_async_callable(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                call = wrapped(entry_for(pick(*args, **kwargs)), fn)
                return await cast(Callable[..., Awaitable[Any]], call)(*args, **kwargs)

            return cast(Callable[P, T], async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return cast(
                T, wrapped(entry_for(pick(*args, **kwargs)), fn)(*args, **kwargs)
            )

        return wrapper


def keyed_policy(
    cls: Callable[..., Pol],
    name: str,
    evictable: Callable[[Any], bool],
    *,
    max_keys: int,
    key: Callable[..., object] | None,
    store: StateStore | None,
    options: dict[str, Any],
) -> KeyedPolicy[Pol]:
    """What ``CircuitBreaker.keyed``, ``RateLimiter.keyed`` and ``Bulkhead.keyed`` build.

    The options are checked once, now (an invalid one fails here, not at the
    first call of some key); each key's policy is ``cls(f"{name}:{key}",
    store=store, **options)``.
    """
    kind = getattr(cls, "__name__", "policy")
    check_store(kind, store)
    cls(name, store=store, **options)

    def make(text: str) -> Pol:
        return cls(f"{name}:{text}", store=store, **options)

    return KeyedPolicy(kind, name, make, evictable, max_keys=max_keys, key=key)


def check_store(kind: str, store: StateStore | None) -> None:
    """A keyed policy keeps memory state per key privately, or in a shared store."""
    if store is not None and not store.shared:
        raise ValueError(
            f"{kind}.keyed(store=...) takes a shared store (SQLite, Redis) or None: "
            "per-key memory state is kept by each key's policy, so that evicting "
            "a key frees it"
        )


def breaker_evictable(breaker: Any) -> bool:
    if breaker.store.shared:
        return True
    stats = breaker.stats
    if stats.state == "closed":
        return True
    if stats.state == "open":
        # Its break is over: a new breaker would let the probe through too.
        return not stats.retry_after
    return bool(stats.probes_in_flight == 0)  # half-open with no probe running


def bulkhead_evictable(bulkhead: Any) -> bool:
    stats = bulkhead.stats
    return bool(stats.in_use == 0 and stats.queued == 0)


def limiter_evictable(limiter: Any) -> bool:
    if limiter.store.shared:
        return True
    now = limiter._now()
    engine = limiter._limits
    if engine is not None:
        stored = limiter.store.get(engine._key)
        return stored is None or all(isinstance(t, int) and t <= now for t in stored)
    stored = limiter.store.get(limiter._key)
    return stored is None or (isinstance(stored, int) and stored <= now)
