"""``error_boundary``: the last line of defence around a handler.

An error boundary turns an :class:`Exception` escaping a function (or block)
into a logged, audited event and a fallback value, so one bad request cannot
take down an MCP server, a gateway worker or a daemon loop. It never catches
``KeyboardInterrupt``, ``SystemExit`` or ``asyncio.CancelledError``: those are
requests to stop, and swallowing them makes a process unkillable.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from .._core import settings as _config
from .._core.dispatch import (
    callable_name,
    is_async_callable,
    through_method_descriptors,
)

if TYPE_CHECKING:
    from .._core.exc_info import ExcType, ExcValue, Traceback

__all__ = ["error_boundary"]

P = ParamSpec("P")
T = TypeVar("T")


def never_a_fallback(exc: BaseException) -> bool:
    """Errors that mean the library itself is misused: they always propagate.

    A fallback for "this event loop is not supported" would answer every
    call with the fallback, silently, for ever.
    """
    from .._core.exceptions import UnsupportedEventLoopError

    return isinstance(exc, UnsupportedEventLoopError)


def _record(name: str, exc: Exception, *, mode: str) -> None:
    """Emit the ``error_boundary.caught`` event with the audit record."""
    from .._core.events import emit
    from .._core.taxonomy import audit_event

    audit = audit_event(exc, boundary=name)
    emit(
        "error_boundary",
        "caught",
        level="error",
        subject=name,
        exc=exc,
        mode=mode,
        code=audit["code"],
        kind=audit["kind"],
        exit_code=audit["exit_code"],
        recovery=audit["recovery"],
        audit=audit,
    )


class error_boundary:  # noqa: N801 - used like a function: `@error_boundary(...)`
    """Catch any :class:`Exception`, record it, and return a fallback instead.

    As a decorator of a sync or async function: an exception escaping the call
    is logged (with the trace context of :func:`trace`) through the
    ``error_boundary.caught`` event, which carries the JSON-safe
    :func:`audit_event` record, and the call returns ``fallback`` - or, if
    ``fallback`` is callable, ``fallback(exc)`` (awaited when it returns an
    awaitable inside an async function).

    As a context manager (``with`` / ``async with``): the exception is
    recorded the same way and suppressed; the caught exception is then in
    :attr:`error`. One object per block: :attr:`error` is per object.

    ``KeyboardInterrupt``, ``SystemExit``, ``GeneratorExit`` and
    ``asyncio.CancelledError`` always propagate, and so does
    :class:`UnsupportedEventLoopError`: a library used where it cannot work
    must fail loudly, not answer every call with the fallback. Works the
    same under asyncio and trio. With the policies switched
    off (:func:`set_active(False) <paios_reliability.set_active>`) nothing is
    caught: decorated functions are called straight through and blocks let
    their errors propagate.

    Args:
        fallback: The value to return after a failure, or a callable taking
            the exception and returning it. If that callable raises, its
            exception propagates (chained to the original one). Give a value
            that fits the function's return type.
        name: Name for events and logs (default: the function's qualified
            name, or ``"error_boundary"`` for blocks).

    Attributes:
        error: The exception the last block caught, or ``None``.
    """

    __slots__ = ("_fallback", "error", "name")

    def __init__(self, *, fallback: Any = None, name: str | None = None) -> None:
        self._fallback = fallback
        self.name = name
        self.error: Exception | None = None

    def __repr__(self) -> str:
        return f"error_boundary(fallback={self._fallback!r}, name={self.name!r})"

    def _fallback_for(
        self,
        exc: Exception,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        fallback = self._fallback
        # A failover chain needs the call's arguments, not only the error.
        with_args = getattr(fallback, "fallback_with_args", None)
        if with_args is not None:
            return with_args(exc, args, kwargs or {})
        return fallback(exc) if callable(fallback) else fallback

    # -- decorator --------------------------------------------------------------

    @through_method_descriptors
    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        label = self.name or callable_name(fn)
        fallback_for = self._fallback_for
        is_active = _config.is_active

        if is_async_callable(fn):
            afn = cast(Callable[P, Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                if not is_active():
                    return await afn(*args, **kwargs)
                try:
                    return await afn(*args, **kwargs)
                except Exception as exc:
                    if never_a_fallback(exc):
                        raise
                    _record(label, exc, mode="async")
                    value = fallback_for(exc, args, kwargs)
                    if inspect.isawaitable(value):
                        value = await value
                    return value

            return cast(Callable[P, T], async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            if not is_active():
                return fn(*args, **kwargs)
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if never_a_fallback(exc):
                    raise
                _record(label, exc, mode="sync")
                return cast(T, fallback_for(exc, args, kwargs))

        return wrapper

    # -- block ------------------------------------------------------------------

    def __enter__(self) -> error_boundary:
        self.error = None
        return self

    def __exit__(self, exc_type: ExcType, exc: ExcValue, tb: Traceback) -> bool:
        if (
            not isinstance(exc, Exception)
            or not _config.is_active()
            or never_a_fallback(exc)
        ):
            return False
        self.error = exc
        _record(self.name or "error_boundary", exc, mode="block")
        return True

    async def __aenter__(self) -> error_boundary:
        return self.__enter__()

    async def __aexit__(self, exc_type: ExcType, exc: ExcValue, tb: Traceback) -> bool:
        return self.__exit__(exc_type, exc, tb)
