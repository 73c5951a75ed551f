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
import os
import re
import sys
from collections.abc import Callable, Mapping, MutableMapping
from types import MappingProxyType

from .dispatch import is_coroutine_function, through_method_descriptors
from .typing_lite import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from collections.abc import Awaitable
    from typing import Any, ParamSpec, TypeVar

    from .exc_info import ExcType, ExcValue, Traceback

    P = ParamSpec("P")
    T = TypeVar("T")

__all__ = ["current_trace", "extract", "inject", "new_id", "trace", "traceparent"]

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
    ``parent_span_id`` and the enclosing ``trace_id`` (or the one passed in).
    At the top (no enclosing span) the span joins a trace that reached this
    process from outside, in this order: the current OpenTelemetry span
    (when ``opentelemetry`` is imported, e.g. the MCP SDK's span for a tool
    call whose request ``_meta`` carried a ``traceparent``), then the
    ``TRACEPARENT`` environment variable (set by
    :func:`~paios_reliability.run_process` for its children); else it
    starts a new trace. While a top span runs and no OpenTelemetry span is
    active, it is made the current OpenTelemetry span context (non
    recording), so OpenTelemetry-aware clients (the MCP SDK) propagate it.
    User keys are merged over the enclosing ones.

    Works as ``with``, ``async with`` and as a decorator of sync and async
    functions (each call gets its own span). Concurrent tasks never see each
    other's context, even when they enter the same ``trace`` object.

    Args:
        trace_id: Join an existing trace (e.g. one received in a request).
        parent_span_id: The remote parent span (with ``trace_id``; see
            :func:`extract`: ``trace(**extract(headers))``).
        **context: Extra keys to bind, e.g. ``run_id="r-42"``; values become
            strings.
    """

    __slots__ = ("_context", "_otel_tokens", "_parent_span_id", "_tokens", "_trace_id")

    def __init__(
        self,
        trace_id: str | None = None,
        parent_span_id: str | None = None,
        **context: object,
    ) -> None:
        bad = _RESERVED & context.keys()
        if bad:
            raise ValueError(f"trace() sets {sorted(bad)} itself; pass trace_id= only")
        if parent_span_id is not None and trace_id is None:
            raise ValueError(
                "trace(parent_span_id=...) names a span of another trace: pass its "
                "trace_id= too (trace(**extract(carrier)) does)"
            )
        self._trace_id = trace_id
        self._parent_span_id = parent_span_id
        self._context = {k: str(v) for k, v in context.items()}
        # span mapping id -> token; one object may be entered by several tasks
        # or threads at once, each in its own context.
        self._tokens: dict[int, contextvars.Token[Mapping[str, str]]] = {}
        self._otel_tokens: dict[int, object] = {}

    def _enter(self) -> Mapping[str, str]:
        parent = _context.get()
        ctx = {**parent, **self._context}
        trace_id = self._trace_id or parent.get("trace_id")
        parent_span = parent.get("span_id") if trace_id else None
        if self._trace_id is not None:
            parent_span = self._parent_span_id or (
                parent_span if self._trace_id == parent.get("trace_id") else None
            )
        remote = None if trace_id else _remote_parent()
        if remote is not None:
            trace_id, parent_span = remote
        ctx["trace_id"] = trace_id or new_id(16)
        if parent_span is not None:
            ctx["parent_span_id"] = parent_span
        else:
            ctx.pop("parent_span_id", None)
        ctx["span_id"] = new_id(8)
        frozen = MappingProxyType(ctx)
        self._tokens[id(frozen)] = _context.set(frozen)
        if not parent and "opentelemetry" in sys.modules:
            otel = _otel_attach(ctx["trace_id"], ctx["span_id"])
            if otel is not None:
                self._otel_tokens[id(frozen)] = otel
        return frozen

    def _exit(self, exc: BaseException | None = None) -> None:
        if exc is not None and not hasattr(exc, "_paios_trace"):
            # Remember where the error left the innermost span: by the time
            # it reaches sys.excepthook (crash handler) the span is gone.
            with contextlib.suppress(Exception):
                exc._paios_trace = dict(_context.get())  # type: ignore[attr-defined]
        otel = self._otel_tokens.pop(id(_context.get()), None)
        if otel is not None:
            _otel_detach(otel)
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

    def __exit__(self, exc_type: ExcType, exc: ExcValue, tb: Traceback) -> None:
        self._exit(exc)

    async def __aenter__(self) -> Mapping[str, str]:
        return self._enter()

    async def __aexit__(self, exc_type: ExcType, exc: ExcValue, tb: Traceback) -> None:
        self._exit(exc)

    @through_method_descriptors
    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        trace_id, context = self._trace_id, self._context
        if is_coroutine_function(fn):
            afn = cast("Callable[P, Awaitable[Any]]", fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                with trace(trace_id, **context):
                    return await afn(*args, **kwargs)

            return cast("Callable[P, T]", async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            with trace(trace_id, **context):
                return fn(*args, **kwargs)

        return wrapper


# -- W3C trace context across processes ---------------------------------------

_TRACEPARENT = re.compile(
    r"^(?P<version>[0-9a-f]{2})-(?P<trace>[0-9a-f]{32})-(?P<span>[0-9a-f]{16})"
    r"-(?P<flags>[0-9a-f]{2})(?:-.*)?$"
)
_MAX_HEADER = 512


def _parse(value: object) -> tuple[str, str] | None:
    if not isinstance(value, str) or len(value) > _MAX_HEADER:
        return None
    m = _TRACEPARENT.match(value.strip().lower())
    if m is None or m["version"] == "ff":
        return None
    # Version 00 has exactly four fields; later versions may append more.
    if m["version"] == "00" and value.strip().count("-") != 3:
        return None
    if m["trace"] == "0" * 32 or m["span"] == "0" * 16:
        return None
    return m["trace"], m["span"]


def traceparent() -> str | None:
    """The W3C ``traceparent`` of the running span, or ``None`` outside a trace."""
    ctx = _context.get()
    trace_id, span_id = ctx.get("trace_id"), ctx.get("span_id")
    if not trace_id or not span_id or _parse(f"00-{trace_id}-{span_id}-01") is None:
        return None
    return f"00-{trace_id}-{span_id}-01"


def inject(carrier: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Put the running span's ``traceparent`` into ``carrier`` (headers, MCP ``_meta``).

    Outside a trace, ``carrier`` is left as it is.

    Returns:
        ``carrier``.
    """
    value = traceparent()
    if value is not None:
        carrier["traceparent"] = value
    return carrier


def extract(carrier: Mapping[Any, Any] | None) -> dict[str, str]:
    """The trace a ``carrier`` belongs to, as keyword arguments for :class:`trace`.

    Reads ``traceparent`` (any case of the key, as in HTTP headers or the
    ``TRACEPARENT`` environment variable). A missing or malformed value
    (wrong length, non-hex, all-zero ids, version ``ff``, over 512
    characters) gives ``{}``, so ``trace(**extract(carrier))`` starts a new
    trace instead of failing.

    Returns:
        ``{"trace_id": ..., "parent_span_id": ...}`` or ``{}``.
    """
    if not carrier:
        return {}
    value = carrier.get("traceparent")
    if value is None:
        for key, item in carrier.items():
            if isinstance(key, str) and key.lower() == "traceparent":
                value = item
                break
    parsed = _parse(value)
    if parsed is None:
        return {}
    return {"trace_id": parsed[0], "parent_span_id": parsed[1]}


def _remote_parent() -> tuple[str, str] | None:
    if "opentelemetry" in sys.modules:
        found = _otel_current()
        if found is not None:
            return found
    return _parse(os.environ.get("TRACEPARENT"))


def _otel_current() -> tuple[str, str] | None:
    try:
        from opentelemetry import trace as otel_trace
    except ImportError:
        return None
    span_context = otel_trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return f"{span_context.trace_id:032x}", f"{span_context.span_id:016x}"


def _otel_attach(trace_id: str, span_id: str) -> object | None:
    try:
        from opentelemetry import context as otel_context
        from opentelemetry import trace as otel_trace
    except ImportError:
        return None
    if otel_trace.get_current_span().get_span_context().is_valid:
        return None  # a real span is current: never shadow it
    span = otel_trace.NonRecordingSpan(
        otel_trace.SpanContext(
            int(trace_id, 16),
            int(span_id, 16),
            is_remote=False,
            trace_flags=otel_trace.TraceFlags(otel_trace.TraceFlags.SAMPLED),
        )
    )
    return otel_context.attach(otel_trace.set_span_in_context(span))


def _otel_detach(token: object) -> None:
    from opentelemetry import context as otel_context

    # A token of another context (exited out of order) has nothing to undo.
    with contextlib.suppress(Exception):
        otel_context.detach(token)  # type: ignore[arg-type]
