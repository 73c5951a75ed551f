"""Stale-if-error: ``resilient(stale_if_error=seconds)``.

When the whole stack fails with a transient error, an answer from a little
while ago is often better than none (RFC 5861's ``stale-if-error`` for HTTP
caches). This layer remembers the last good result per set of arguments and
serves it, marked stale, when the stack fails and it is younger than
``seconds``. Permanent failures (a bad request, a bug) are never hidden.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, cast

from .._core import settings as _config
from .._core.clock import get_clock
from .._core.dispatch import is_async_callable
from .._core.events import emit
from .._core.taxonomy import is_retryable
from . import outcome as _outcome

__all__ = ["StaleCache", "stale_layer"]

MAX_ENTRIES = 1024
_MISS: Any = object()


def call_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable | None:
    """A hashable key for one set of arguments, or ``None`` when they are not hashable."""
    key = (args, tuple(sorted(kwargs.items()))) if kwargs else args
    try:
        hash(key)
    except TypeError:
        return None
    return key


class StaleCache:
    """The last good result per set of arguments, bounded (least recently used out)."""

    __slots__ = ("_entries", "_lock", "identity", "max_entries", "name", "seconds")

    def __init__(
        self,
        seconds: float,
        name: str,
        identity: object,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self.seconds = seconds
        self.name = name
        self.identity = identity
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, tuple[Any, float]] = OrderedDict()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def remember(self, key: Hashable | None, value: Any) -> None:
        if key is None:
            return
        now = get_clock().monotonic()
        with self._lock:
            self._entries[key] = (value, now)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def serve(self, key: Hashable | None, exc: Exception) -> Any:
        """A young enough earlier result for ``exc``, or ``_MISS``."""
        from .boundary import never_a_fallback

        if key is None or never_a_fallback(exc) or not is_retryable(exc):
            return _MISS
        now = get_clock().monotonic()
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return _MISS
            value, at = found
            age = now - at
            if age > self.seconds:
                del self._entries[key]
                return _MISS
        emit(
            "resilient",
            "stale_served",
            level="warning",
            subject=self.name,
            exc=exc,
            age=round(age, 6),
            stale_if_error=self.seconds,
        )
        record = _outcome.record_for(self.identity)
        if record is not None:
            record.stale_error = exc
        return value


def stale_layer(
    fn: Callable[..., Any], seconds: float, name: str, identity: object
) -> Callable[..., Any]:
    """Wrap the composed stack ``fn`` so a failure may be answered from the cache."""
    cache = StaleCache(seconds, name, identity)
    config = _config

    if is_async_callable(fn):
        afn = cast(Callable[..., Awaitable[Any]], fn)

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            if not config._state.active:
                return await afn(*args, **kwargs)
            key = call_key(args, kwargs)
            try:
                value = await afn(*args, **kwargs)
            except Exception as exc:
                served = cache.serve(key, exc)
                if served is _MISS:
                    raise
                return served
            cache.remember(key, value)
            return value

        async_wrapper.stale_cache = cache  # type: ignore[attr-defined]
        return async_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not config._state.active:
            return fn(*args, **kwargs)
        key = call_key(args, kwargs)
        try:
            value = fn(*args, **kwargs)
        except Exception as exc:
            served = cache.serve(key, exc)
            if served is _MISS:
                raise
            return served
        cache.remember(key, value)
        return value

    wrapper.stale_cache = cache  # type: ignore[attr-defined]
    return wrapper
