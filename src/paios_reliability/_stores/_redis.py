"""The Redis store: state shared by many hosts through one Redis server."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .._core.aio import require_asyncio
from .._core.checks import check_name
from .._core.events import emit
from .._core.exceptions import StoreUnavailableError

if TYPE_CHECKING:
    import redis

__all__ = ["RedisStore"]

R = TypeVar("R")

# Compare-and-set, one round trip: act only if the key still holds what we
# based the decision on; otherwise hand back what it holds now, so the caller
# can decide again without another GET. The pure update function runs in
# Python (one implementation for every store); the script makes its result
# land atomically or not at all. ARGV: expected present (1/0), expected
# value, action (1 set, 0 delete, 2 nothing: just confirm), new value, TTL ms.
_CAS = """
local cur = redis.call('GET', KEYS[1])
if (ARGV[1] == '1' and cur ~= ARGV[2]) or (ARGV[1] == '0' and cur) then
  if cur then return {0, cur} end
  return {0}
end
if ARGV[3] == '1' then
  redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[5])
elseif ARGV[3] == '0' then
  redis.call('DEL', KEYS[1])
end
return {1}
"""
_UNKNOWN = object()
_CACHE_SIZE = 4096
_BACKOFF_CAP = 0.02  # seconds: 200 attempts give up after about 2 s


def _encode(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def _decode(raw: bytes | str | None) -> Any:
    return None if raw is None else json.loads(raw)


class RedisStore:
    """State shared by every process on every host that talks to one Redis.

    Each :meth:`update` reads the key, runs the pure update function locally
    and writes the result with a server-side compare-and-set (a Lua script):
    when another writer changed the key in between, it reads again and
    retries, so no read-modify-write race can lose an update. Keys are
    ``<prefix>:<primitive>:<name>...`` and expire ``ttl`` seconds after their
    last write, so abandoned state does not pile up.

    Args:
        client_or_url: A ``redis.Redis`` client (used as it is configured) or
            a URL such as ``"redis://localhost:6379/0"``. For a URL the client
            gets bounded socket timeouts and no internal retries. A client
            must have a ``socket_timeout`` (and a blocking pool a ``timeout``):
            without one a server that accepts but never answers would hang
            every call for ever. Its worst case per operation is about
            ``(retries + 1) * socket_timeout`` of *its* settings.
        prefix: Namespace of every key this store writes.
        timeout: Socket connect/read timeout in seconds for a URL-built client:
            an unreachable server raises :class:`StoreUnavailableError` within
            about this long instead of hanging.
        max_attempts: Compare-and-set attempts under contention (with
            jittered backoff, a few seconds at most) before giving up with
            :class:`StoreUnavailableError`.

    Raises:
        ValueError: A client without a socket timeout (or with a blocking
            pool that waits for ever), naming the setting to add.
        StoreUnavailableError: From any operation when the server cannot be
            reached or refuses the command.
    """

    def __init__(
        self,
        client_or_url: redis.Redis | str,
        *,
        prefix: str = "paios",
        timeout: float = 1.0,
        max_attempts: int = 200,
    ) -> None:
        check_name("RedisStore prefix:", prefix)
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0, got {timeout!r}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts!r}")
        import redis as redis_module

        self._errors: tuple[type[BaseException], ...] = (
            redis_module.RedisError,
            OSError,
        )
        if isinstance(client_or_url, str):
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            self._client = redis_module.Redis.from_url(
                client_or_url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),
            )
            self._owns_client = True
            self._where = _describe_url(client_or_url)
        else:
            pool = getattr(client_or_url, "connection_pool", None)
            kwargs = getattr(pool, "connection_kwargs", None) or {}
            _check_bounded(pool, kwargs)
            self._client = client_or_url
            self._owns_client = False
            self._where = f"redis:{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
        self.prefix = prefix
        self._max_attempts = max_attempts
        self._seen: dict[str, Any] = {}
        self._cas = self._client.register_script(_CAS)

    @property
    def shared(self) -> bool:
        """Always ``True``: every client of the server sees the state."""
        return True

    @property
    def client(self) -> redis.Redis:
        """The underlying redis-py client."""
        return self._client

    def _key(self, key: str) -> str:
        return f"{self.prefix}:{key}"

    def _unavailable(self, exc: BaseException, what: str) -> StoreUnavailableError:
        emit(
            "store",
            "unavailable",
            level="error",
            subject=self._where,
            exc=exc,
            operation=what,
        )
        return StoreUnavailableError(
            f"Redis state store {self._where} is unavailable during {what}: "
            f"{type(exc).__name__}: {exc}",
            store=self._where,
        )

    def get(self, key: str) -> Any:
        full = self._key(key)
        try:
            raw = self._client.get(full)
        except self._errors as exc:
            raise self._unavailable(exc, "get") from exc
        self._remember(full, raw)
        return _decode(raw)

    def update(self, key: str, fn: Callable[[Any], tuple[Any, R]], *, ttl: float) -> R:
        full = self._key(key)
        ttl_ms = str(max(1, int(ttl * 1000)))
        # Start from the value this process saw last (no GET): the script
        # checks it, and on a mismatch returns the real one to decide again.
        raw: Any = self._seen.get(full, _UNKNOWN)
        try:
            if raw is _UNKNOWN:
                raw = self._client.get(full)
            for attempt in range(self._max_attempts):
                current = _decode(raw)
                new, result = fn(current)
                if new is current:
                    action, encoded = "2", ""
                elif new is None:
                    action, encoded = "0", ""
                else:
                    action, encoded = "1", _encode(new)
                reply = self._cas(
                    keys=[full],
                    args=[
                        "0" if raw is None else "1",
                        "" if raw is None else raw,
                        action,
                        encoded,
                        ttl_ms,
                    ],
                )
                if reply[0] == 1:
                    self._remember(full, raw if action == "2" else encoded or None)
                    return result
                raw = reply[1] if len(reply) > 1 else None
                if attempt >= 2:  # a hot key: spread the contenders out
                    cap = min(_BACKOFF_CAP, 0.0005 * 2 ** min(attempt, 10))
                    time.sleep(random.uniform(0, cap))  # noqa: S311
        except self._errors as exc:
            self._seen.pop(full, None)
            raise self._unavailable(exc, "update") from exc
        emit("store", "contention", level="error", subject=self._where, key=full)
        raise StoreUnavailableError(
            f"Redis state store {self._where}: key {full!r} changed under us "
            f"{self._max_attempts} times in a row (too much contention)",
            store=self._where,
        )

    def _remember(self, key: str, raw: Any) -> None:
        # Only a hint (every use is checked by the script); bounded by clearing.
        if len(self._seen) >= _CACHE_SIZE:
            self._seen.clear()
        self._seen[key] = raw

    async def aget(self, key: str) -> Any:
        import asyncio

        require_asyncio("RedisStore")  # trio: a clear error, not 'no running loop'
        return await asyncio.to_thread(self.get, key)

    async def aupdate(
        self, key: str, fn: Callable[[Any], tuple[Any, R]], *, ttl: float
    ) -> R:
        import asyncio

        require_asyncio("RedisStore")  # trio: a clear error, not 'no running loop'
        return await asyncio.to_thread(self.update, key, fn, ttl=ttl)

    def delete(self, key: str) -> None:
        self._seen.pop(self._key(key), None)
        try:
            self._client.delete(self._key(key))
        except self._errors as exc:
            raise self._unavailable(exc, "delete") from exc

    def close(self) -> None:
        """Close the client if this store made it from a URL."""
        if self._owns_client:
            self._client.close()

    def __repr__(self) -> str:
        return f"RedisStore({self._where!r}, prefix={self.prefix!r})"


_UNSET = object()


def _check_bounded(pool: Any, kwargs: dict[str, Any]) -> None:
    """Refuse a client whose calls can wait for ever (see :class:`RedisStore`).

    A client whose pool cannot be inspected (a cluster client, a stand-in) is
    taken as it is: only its own settings bound it.
    """
    if pool is None:
        return

    timeout = kwargs.get("socket_timeout", _UNSET)
    if timeout is _UNSET:
        # Not passed: the connection class's default (None before redis-py 8).
        timeout = _default_socket_timeout(getattr(pool, "connection_class", None))
        if timeout is _UNSET:
            return
    if timeout is None:
        raise ValueError(
            "RedisStore: the redis client has socket_timeout=None, so a server "
            "that accepts but never answers (stopped, partitioned, overloaded) "
            "would hang every breaker, limiter and lock call for ever; create "
            "the client with socket_timeout=<seconds> (socket_connect_timeout "
            "defaults to it), or pass a URL and RedisStore builds a bounded "
            "client (timeout=1.0)"
        )
    import redis

    if isinstance(pool, redis.BlockingConnectionPool) and pool.timeout is None:
        raise ValueError(
            "RedisStore: the redis client's BlockingConnectionPool has "
            "timeout=None, so a call waits for ever for a free connection; "
            "create the pool with timeout=<seconds>"
        )


def _default_socket_timeout(connection_class: object) -> Any:
    import inspect

    for cls in getattr(connection_class, "__mro__", ()):
        init = cls.__dict__.get("__init__")
        if init is None:
            continue
        try:
            parameter = inspect.signature(init).parameters.get("socket_timeout")
        except (TypeError, ValueError):
            continue
        if parameter is not None and parameter.default is not parameter.empty:
            return parameter.default
    return _UNSET


def _describe_url(url: str) -> str:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or parts.path or "?"
        port = parts.port or 6379
    except ValueError:
        return "redis:?"
    return f"redis:{host}:{port}"
