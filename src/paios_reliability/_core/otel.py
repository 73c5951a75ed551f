"""OpenTelemetry tracing of ``@resilient`` calls, off until switched on.

The policies check one attribute per call (:data:`TRACING`), so a program
that never calls :func:`trace_opentelemetry` pays a single attribute load
and never imports OpenTelemetry.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .settings import Restorer

__all__ = ["TRACING", "async_span", "sync_span", "trace_opentelemetry"]


class _Tracing:
    """The tracer the policies use, or ``None`` (tracing off)."""

    __slots__ = ("tracer",)

    def __init__(self) -> None:
        self.tracer: Any = None


TRACING = _Tracing()
_lock = threading.Lock()


def trace_opentelemetry(tracer: Any = None) -> Restorer:
    """Record every ``@resilient`` call as an OpenTelemetry span from now on.

    Each call becomes a span ``resilient <name>`` (a child of the current
    span, so it sits inside your request's trace) with the attribute
    ``paios.resilient.name``. A call that raises gets status ERROR, the
    attribute ``paios.error.code`` (the catalog code, e.g.
    ``CIRCUIT_OPEN``) and an ``exception`` event whose message is redacted:
    the SDK's own ``record_exception`` would copy secrets from the exception
    text into the trace. A call answered by its fallback is a successful span
    (the caller got an answer); its failure is in the library's events.

    Thread-safe; spans follow ``contextvars``, so concurrent asyncio tasks
    get their own. Calls already running keep the tracer they started with.

    Args:
        tracer: An ``opentelemetry.trace.Tracer`` (default:
            ``get_tracer("paios_reliability")`` of the global provider).

    Returns:
        A :class:`Restorer` that switches tracing back to what it was.

    Raises:
        PermanentError: ``DEPENDENCY_MISSING`` if ``opentelemetry-api`` is
            not installed (``pip install 'paios-reliability[otel]'``).
    """
    from .settings import Restorer

    if tracer is None:
        try:
            from opentelemetry import trace as otel_trace
        except ImportError as exc:
            from .imports import missing_extra

            raise missing_extra("opentelemetry", "otel") from exc
        tracer = otel_trace.get_tracer("paios_reliability")
    with _lock:
        previous, TRACING.tracer = TRACING.tracer, tracer

    def undo() -> None:
        with _lock:
            TRACING.tracer = previous

    return Restorer(undo)


def _failed(span: Any, exc: BaseException) -> None:
    from opentelemetry.trace import Status, StatusCode

    from .taxonomy import classify, redact_text

    code = classify(exc).code
    span.set_attribute("paios.error.code", code)
    span.add_event(
        "exception",
        {
            "exception.type": type(exc).__qualname__,
            "exception.message": redact_text(str(exc))[:2000],
        },
    )
    span.set_status(Status(StatusCode.ERROR, code))


@contextmanager
def _span(tracer: Any, name: str) -> Iterator[None]:
    """Run the block inside a span ``resilient <name>``; record what escapes it."""
    with tracer.start_as_current_span(
        f"resilient {name}",
        attributes={"paios.resilient.name": name},
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield
        except BaseException as exc:
            _failed(span, exc)
            raise


def sync_span(tracer: Any, name: str, call: Callable[..., Any], *args: Any) -> Any:
    """Run ``call(*args)`` inside a span named ``resilient <name>``."""
    with _span(tracer, name):
        return call(*args)


async def async_span(
    tracer: Any, name: str, call: Callable[..., Awaitable[Any]], *args: Any
) -> Any:
    """Await ``call(*args)`` inside a span named ``resilient <name>``."""
    with _span(tracer, name):
        return await call(*args)
