"""Logging setup: one redacting pipeline for structlog and stdlib logging.

:func:`configure_logging` routes stdlib logging and structlog through one
pipeline to **stderr**: JSON when stderr is not a terminal, readable text when
it is. Every line carries the trace context of :func:`~.trace.trace` and is
redacted on its way out (values under secret names, secret-shaped text,
tracebacks); tracebacks never show frame locals.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

from .trace import current_trace

if TYPE_CHECKING:
    from .settings import Restorer

__all__ = ["configure_logging"]

_HANDLER_MARK = "_paios_reliability_handler"


def _add_trace(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in current_trace().items():
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
    from .redaction import REDACTED, is_secret_key, json_safe, redact_text

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
    secret-looking keys, secret-shaped text in every value and in tracebacks.
    Tracebacks never include frame locals: JSON mode renders them as
    structured frames (``exc_type``, ``exc_value``, ``frames``) without
    ``locals``.

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
