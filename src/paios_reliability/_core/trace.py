"""Trace context.

:func:`trace` binds ``trace_id``/``span_id``/``parent_span_id`` and any user
keys (run ids, tool names) in a :mod:`contextvars` variable, so every log line
and every event emitted inside the block carries them, across ``await`` and
without leaking between concurrent asyncio tasks or threads.

The logging pipeline that writes those keys lives in :mod:`.logging`.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import os
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from .dispatch import through_method_descriptors

if TYPE_CHECKING:
    pass

__all__ = ["current_trace", "new_id", "trace"]

P = ParamSpec("P")
T = TypeVar("T")

_EMPTY: Mapping[str, str] = MappingProxyType({})
_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "paios_reliability_trace", default=_EMPTY
)
_RESERVED = frozenset({"trace_id", "span_id", "parent_span_id"})


def new_id(nbytes: int = 8) -> str:
    """A random lowercase hex id (16 hex digits for spans, 32 for traces)."""
    return os.urandom(nbytes).hex()


def current_trace() -> Mapping[str, str]:
    """The trace context of the running code (empty outside any trace)."""
    return _context.get()


class trace:  # noqa: N801 - used like a function: `with trace(...)` / `@trace(...)`
    """Bind a trace span for a block or for every call of a function.

    Entering starts a new span: a fresh ``span_id``, the enclosing span as
    ``parent_span_id`` and the enclosing ``trace_id`` (or a new one at the
    top, or the one passed in). User keys are merged over the enclosing ones.

    Works as ``with``, ``async with`` and as a decorator of sync and async
    functions (each call gets its own span). Concurrent tasks never see each
    other's context, even when they enter the same ``trace`` object.

    Args:
        trace_id: Join an existing trace (e.g. one received in a request).
        **context: Extra keys to bind, e.g. ``run_id="r-42"``; values become
            strings.
    """

    __slots__ = ("_context", "_tokens", "_trace_id")

    def __init__(self, trace_id: str | None = None, **context: object) -> None:
        bad = _RESERVED & context.keys()
        if bad:
            raise ValueError(f"trace() sets {sorted(bad)} itself; pass trace_id= only")
        self._trace_id = trace_id
        self._context = {k: str(v) for k, v in context.items()}
        # span mapping id -> token; one object may be entered by several tasks
        # or threads at once, each in its own context.
        self._tokens: dict[int, contextvars.Token[Mapping[str, str]]] = {}

    def _enter(self) -> Mapping[str, str]:
        parent = _context.get()
        ctx = {**parent, **self._context}
        ctx["trace_id"] = self._trace_id or parent.get("trace_id") or new_id(16)
        parent_span = parent.get("span_id")
        if parent_span is not None:
            ctx["parent_span_id"] = parent_span
        else:
            ctx.pop("parent_span_id", None)
        ctx["span_id"] = new_id(8)
        frozen = MappingProxyType(ctx)
        self._tokens[id(frozen)] = _context.set(frozen)
        return frozen

    def _exit(self, exc: BaseException | None = None) -> None:
        if exc is not None and not hasattr(exc, "_paios_trace"):
            # Remember where the error left the innermost span: by the time
            # it reaches sys.excepthook (crash handler) the span is gone.
            with contextlib.suppress(Exception):
                exc._paios_trace = dict(_context.get())  # type: ignore[attr-defined]
        token = self._tokens.pop(id(_context.get()), None)
        if token is None:  # exited out of order: undo the newest span
            try:
                token = self._tokens.popitem()[1]
            except KeyError:
                return
        # A token of another context has nothing of ours to undo.
        with contextlib.suppress(ValueError):
            _context.reset(token)

    def __enter__(self) -> Mapping[str, str]:
        return self._enter()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exit(exc)

    async def __aenter__(self) -> Mapping[str, str]:
        return self._enter()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exit(exc)

    @through_method_descriptors
    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        trace_id, context = self._trace_id, self._context
        if inspect.iscoroutinefunction(fn):
            afn = cast(Callable[P, Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                with trace(trace_id, **context):
                    return await afn(*args, **kwargs)

            return cast(Callable[P, T], async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            with trace(trace_id, **context):
                return fn(*args, **kwargs)

        return wrapper
