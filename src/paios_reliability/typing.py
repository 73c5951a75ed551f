"""Public protocols: the seams users implement or substitute.

Nothing here imports a third-party package, so annotating against these types
is free at run time.
"""

from __future__ import annotations

from typing import (
    TYPE_CHECKING,
    Any,
    ParamSpec,
    Protocol,
    TypeVar,
    overload,
    runtime_checkable,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from ._core.event import Event
    from ._core.taxonomy import Failure
    from ._observe.alert_model import Alert
    from ._policies.outcome import Outcome
    from ._policies.resilient_stack import Layer

__all__ = [
    "AsyncResilientFunction",
    "CallPolicy",
    "Channel",
    "Classifier",
    "Clock",
    "EventHook",
    "ResilientDecorator",
    "ResilientFunction",
    "ResilientPolicy",
    "StateStore",
]


@runtime_checkable
class Clock(Protocol):
    """A source of time and a way to wait.

    ``monotonic()`` measures durations and deadlines; ``time()`` is the wall
    clock (seconds since the epoch) for timestamps. Both sleeps must accept 0
    and return promptly for it.
    """

    def monotonic(self) -> float: ...

    def time(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    async def asleep(self, seconds: float) -> None: ...


class EventHook(Protocol):
    """Receives every event a primitive emits.

    A hook must be fast and thread-safe; it is called on the thread (or task)
    that caused the event. An exception raised by a hook is logged and
    swallowed: a hook can never break the call that emitted the event.
    """

    def __call__(self, event: Event, /) -> None: ...


class Classifier(Protocol):
    """Decides whether an exception is transient or permanent."""

    def __call__(self, exc: BaseException, /) -> Failure: ...


_R = TypeVar("_R")


@runtime_checkable
class StateStore(Protocol):
    """Where breakers, limiters and bulkheads keep their state.

    A store maps string keys to small JSON-compatible values (``None``, bools,
    numbers, strings, lists and dicts of them) and offers one primitive:
    :meth:`update`, an atomic read-modify-write. Everything else (trip rules,
    GCRA, leases) is pure code run inside it, so every primitive behaves the
    same on every store. ``MemoryStore`` (one process), ``SQLiteStore`` (many
    processes on one host) and ``RedisStore`` (many hosts) implement it.

    Attributes:
        shared: ``True`` when other processes can see the state. Shared
            state is timed with the wall clock (``Clock.time()``), which all
            processes agree on; process-local state uses ``Clock.monotonic()``.
    """

    @property
    def shared(self) -> bool: ...

    def get(self, key: str) -> Any:
        """The current value under ``key``, or ``None``.

        Raises:
            StoreUnavailableError: The store cannot be reached (bounded time).
        """
        ...

    def update(
        self, key: str, fn: Callable[[Any], tuple[Any, _R]], *, ttl: float
    ) -> _R:
        """Atomically replace the value under ``key`` with ``fn(value)[0]``.

        ``fn`` receives the current value (``None`` when absent), must not
        mutate it, and returns ``(new_value, result)``; ``new_value`` is
        ``None`` to delete the key, or the very object it received to leave
        it unchanged. ``fn`` must be pure: a store may call it more than once
        when it loses a race. The key expires ``ttl`` seconds after the last
        write (garbage collection only: primitives keep their own times inside
        the value).

        Returns:
            The ``result`` of the ``fn`` call that was committed.

        Raises:
            StoreUnavailableError: The store cannot be reached (bounded time).
        """
        ...

    async def aget(self, key: str) -> Any:
        """:meth:`get` without blocking the event loop."""
        ...

    async def aupdate(
        self, key: str, fn: Callable[[Any], tuple[Any, _R]], *, ttl: float
    ) -> _R:
        """:meth:`update` without blocking the event loop."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key`` (no error when absent)."""
        ...

    def close(self) -> None:
        """Release connections; the store may not be used afterwards."""
        ...


_P = ParamSpec("_P")
_T = TypeVar("_T")


class CallPolicy(Protocol):
    """Anything that decorates a function and keeps its signature.

    ``policy(fn)`` returns a wrapped function with the same parameters and
    return type, sync for sync and ``async def`` for ``async def``. The
    ``CircuitBreaker``, ``RateLimiter`` and ``Bulkhead`` objects are call
    policies, and so is the result of ``retry(...)``; ``resilient`` composes
    them.
    """

    def __call__(self, fn: Callable[_P, _T], /) -> Callable[_P, _T]: ...


@runtime_checkable
class Channel(Protocol):
    """Somewhere alerts go (log, event store, desktop notification, webhook).

    ``send`` may raise: the ``AlertDispatcher`` counts and logs the failure
    and carries on with the other channels. ``blocking`` channels (network,
    subprocesses) are called on their own thread.
    """

    name: str
    blocking: bool

    def send(self, alert: Alert, /) -> None: ...


AlertChannel = Channel
"""The name ``paios_reliability.AlertChannel`` gives :class:`Channel`."""


_R_co = TypeVar("_R_co", covariant=True)
_RP = ParamSpec("_RP")
_RR = TypeVar("_RR")


class ResilientPolicy(Protocol):
    """What ``fn.policy`` of a ``resilient`` function tells (read-only)."""

    @property
    def name(self) -> str: ...

    @property
    def worst_case_seconds(self) -> float: ...

    @property
    def deadline(self) -> float | None: ...

    @property
    def timeout(self) -> float | None: ...

    @property
    def layers(self) -> tuple[Layer, ...]: ...

    @property
    def warnings(self) -> tuple[str, ...]: ...

    def describe(self) -> str: ...


class ResilientFunction(Protocol[_RP, _R_co]):
    """A sync function decorated with ``resilient``: same call, plus
    ``.policy`` and ``.outcome(...)`` (an :class:`Outcome` instead of a raise).
    """

    __name__: str

    def __call__(self, *args: _RP.args, **kwargs: _RP.kwargs) -> _R_co: ...

    @property
    def policy(self) -> ResilientPolicy: ...

    def outcome(self, *args: _RP.args, **kwargs: _RP.kwargs) -> Outcome[_R_co]: ...

    # On a method, looked up on an instance: bound like a function. The bound
    # form keeps the return type; its parameters are not checked (a
    # ParamSpec cannot drop ``self``).
    @overload
    def __get__(
        self, instance: None, owner: type[Any] | None = None, /
    ) -> ResilientFunction[_RP, _R_co]: ...

    @overload
    def __get__(
        self, instance: object, owner: type[Any] | None = None, /
    ) -> ResilientFunction[..., _R_co]: ...


class AsyncResilientFunction(Protocol[_RP, _R_co]):
    """A coroutine function decorated with ``resilient``; ``await f.outcome(...)``."""

    __name__: str

    def __call__(
        self, *args: _RP.args, **kwargs: _RP.kwargs
    ) -> Coroutine[Any, Any, _R_co]: ...

    @property
    def policy(self) -> ResilientPolicy: ...

    def outcome(
        self, *args: _RP.args, **kwargs: _RP.kwargs
    ) -> Coroutine[Any, Any, Outcome[_R_co]]: ...

    @overload
    def __get__(
        self, instance: None, owner: type[Any] | None = None, /
    ) -> AsyncResilientFunction[_RP, _R_co]: ...

    @overload
    def __get__(
        self, instance: object, owner: type[Any] | None = None, /
    ) -> AsyncResilientFunction[..., _R_co]: ...


class ResilientDecorator(Protocol):
    """What ``resilient(...)`` returns: keeps the signature, adds the extras."""

    @overload
    def __call__(  # type: ignore[overload-overlap]
        self, fn: Callable[_RP, Coroutine[Any, Any, _RR]], /
    ) -> AsyncResilientFunction[_RP, _RR]: ...

    @overload
    def __call__(self, fn: Callable[_RP, _RR], /) -> ResilientFunction[_RP, _RR]: ...
