"""Trace context and logging setup.

:func:`trace` binds ``trace_id``/``span_id``/``parent_span_id`` and any user
keys (run ids, tool names) in a :mod:`contextvars` variable, so every log line
and every event emitted inside the block carries them, across ``await`` and
without leaking between concurrent asyncio tasks or threads.

:func:`configure_logging` routes stdlib logging and structlog through one
pipeline to **stderr**: JSON when stderr is not a terminal, readable text when
it is. Every line is redacted on its way out (values under secret names,
secret-shaped text, tracebacks); tracebacks never show frame locals.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

if TYPE_CHECKING:
    from .settings import Restorer

__all__ = ["configure_logging", "current_trace", "new_id", "trace"]

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


# -- logging -------------------------------------------------------------------

_HANDLER_MARK = "_paios_reliability_handler"


def _add_trace(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in _context.get().items():
        event_dict.setdefault(key, value)
    return event_dict


def _lift_event(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Restore the structured fields of records logged by the default event hook."""
    record = event_dict.get("_record")
    payload = getattr(record, "paios_event", None)
    if isinstance(payload, dict):
        event_dict.update(payload)
    return event_dict


def _redact_event_dict(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Mask secrets in every value of a log line, tracebacks included."""
    from .taxonomy import REDACTED, is_secret_key, json_safe, redact_text

    for key, value in list(event_dict.items()):
        if value is None or isinstance(value, (bool, int, float)):
            continue
        if key != "event" and is_secret_key(key):
            event_dict[key] = REDACTED
        elif isinstance(value, str):
            event_dict[key] = redact_text(value)
        else:
            event_dict[key] = json_safe(value)
    return event_dict


def configure_logging(
    *, json: bool | None = None, level: int | str = "INFO"
) -> Restorer:
    """Route structlog and stdlib logging through one pipeline to stderr.

    Calling it again replaces the previous setup (it never stacks handlers).
    Log lines carry the trace context of :func:`trace`.

    Every line is redacted before it is written, whoever logged it (the
    library, structlog or stdlib callers, third-party libraries): values under
    secret-looking keys, secret-shaped text in every value and in tracebacks
    (see :func:`~paios_reliability._core.taxonomy.redact_text`). Tracebacks never
    include frame locals: JSON mode renders them as structured frames
    (``exc_type``, ``exc_value``, ``frames``) without ``locals``.

    Args:
        json: ``True`` for one JSON object per line, ``False`` for readable
            text; ``None`` picks JSON unless stderr is a terminal.
        level: Root log level, a name (``"INFO"``) or a number.

    Returns:
        A :class:`Restorer` that puts back the previous logging setup (root
        handlers and level, structlog configuration); most programs ignore it,
        tests use it.

    Raises:
        ValueError: If ``level`` is not a known level name.
    """
    import logging

    import structlog

    from .settings import Restorer

    if isinstance(level, str):
        levelno = logging.getLevelName(level.upper())
        if not isinstance(levelno, int):
            raise ValueError(  # noqa: TRY004 - a bad level name is a bad value
                f"configure_logging(level=...): unknown level {level!r}"
            )
    else:
        levelno = int(level)
    if json is None:
        json = not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())

    previous_config = structlog.get_config()
    was_configured = structlog.is_configured()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _add_trace,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    final: list[Any]
    if json:
        # structlog's dict_tracebacks shows frame locals by default: an
        # argument such as api_key would be printed with every traceback.
        from structlog.tracebacks import ExceptionDictTransformer

        no_locals = ExceptionDictTransformer(show_locals=False)
        final = [
            structlog.processors.ExceptionRenderer(no_locals),
            _redact_event_dict,
            structlog.processors.JSONRenderer(),
        ]
    else:
        colors = sys.stderr.isatty() and "NO_COLOR" not in os.environ
        final = [
            # Formatted here so the text is redacted before it is printed;
            # rich tracebacks would show frame locals.
            structlog.processors.format_exc_info,
            _redact_event_dict,
            structlog.dev.ConsoleRenderer(
                colors=colors, exception_formatter=structlog.dev.plain_traceback
            ),
        ]

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[_lift_event, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    previous_level = root.level
    removed = [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]
    for old in removed:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(levelno)

    def undo() -> None:
        root.removeHandler(handler)
        for old in removed:
            root.addHandler(old)
        root.setLevel(previous_level)
        if was_configured:
            structlog.configure(**previous_config)
        else:
            # configure() would mark structlog as configured, and the
            # library's events would keep following a pipeline nobody set up.
            structlog.reset_defaults()

    return Restorer(undo)
