"""``timed``: record how long an operation takes, in a histogram with real buckets."""

from __future__ import annotations

import contextvars
import functools
import inspect
import sys
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

if TYPE_CHECKING:
    from .._core.exc_info import ExcType, ExcValue, Traceback
    from ..typing import Clock
    from .metric_types import Histogram
    from .metrics import MetricsRegistry

__all__ = ["timed"]

P = ParamSpec("P")
T = TypeVar("T")

_otel_lock = threading.Lock()
_otel_instruments: dict[str, Any] = {}


class timed:  # noqa: N801 - used like a function: `with timed(...)` / `@timed(...)`
    """Record the duration of a block or of every call, in seconds.

    Durations go into the histogram ``<name>_seconds`` of the metrics
    registry (default :func:`~paios_reliability.get_metrics`), labelled by
    ``labels`` and ``outcome`` (``ok``, or ``error`` when the block raised).
    The histogram keeps real buckets (``DEFAULT_BUCKETS``, 1 ms to 60 s,
    unless ``buckets`` is given): the Prometheus text shows them as
    ``_bucket{le=...}`` lines. When the application has imported
    ``opentelemetry``, each duration is also recorded in an OpenTelemetry
    histogram of the same name (unit ``s``, the same bucket boundaries as
    advice), so an OpenTelemetry SDK exports buckets too.

    Works as ``with``, ``async with`` and as a decorator of sync and async
    functions. Concurrent uses of one ``timed`` object (threads, tasks) each
    time themselves. Cancellation and ``KeyboardInterrupt`` record nothing:
    the operation neither succeeded nor failed.

    Args:
        name: Metric base name in lower snake case, e.g. ``kb_search``.
        buckets: Upper bounds in seconds.
        registry: Where to record (default: the process-wide registry).
        clock: Time source (default: the process clock).
        meter: An OpenTelemetry ``Meter`` to record into as well (default:
            the global one, once ``opentelemetry`` has been imported).
        **labels: Fixed label values, e.g. ``tool="search"``.

    Raises:
        ConfigError: ``USAGE_ERROR`` on an invalid name or label, or if the
            histogram already exists with other labels or buckets.
    """

    __slots__ = ("_clock", "_histogram", "_instrument", "_labels", "_starts", "name")

    def __init__(
        self,
        name: str,
        /,
        *,
        buckets: Sequence[float] | None = None,
        registry: MetricsRegistry | None = None,
        clock: Clock | None = None,
        meter: Any = None,
        **labels: str,
    ) -> None:
        from .._core.clock import get_clock
        from .metrics import get_metrics

        ours = registry if registry is not None else get_metrics()
        given: object = name
        metric = f"{name}_seconds" if isinstance(given, str) else name
        self._histogram: Histogram = ours.histogram(
            metric,
            f"Duration of {name}",
            (*sorted(labels), "outcome"),
            buckets=buckets,
        )
        self.name = name
        self._labels = {k: str(v) for k, v in labels.items()}
        self._clock = get_clock(clock)
        self._instrument: Any = (
            None if meter is None else _otel_histogram(meter, self._histogram)
        )
        self._starts: contextvars.ContextVar[tuple[float, ...]] = (
            contextvars.ContextVar(f"paios_timed_{name}", default=())
        )

    def _enter(self) -> None:
        self._starts.set((*self._starts.get(), self._clock.monotonic()))

    def _exit(self, exc: BaseException | None) -> None:
        starts = self._starts.get()
        if not starts:
            return
        self._starts.set(starts[:-1])
        if exc is not None and not isinstance(exc, Exception):
            return
        seconds = max(0.0, self._clock.monotonic() - starts[-1])
        outcome = "ok" if exc is None else "error"
        self._histogram.observe(seconds, **self._labels, outcome=outcome)
        instrument = self._instrument
        if instrument is None and "opentelemetry" in sys.modules:
            instrument = _global_instrument(self._histogram)
        if instrument is not None:
            instrument.record(seconds, {**self._labels, "outcome": outcome})

    def __enter__(self) -> timed:
        self._enter()
        return self

    def __exit__(self, exc_type: ExcType, exc: ExcValue, tb: Traceback) -> None:
        self._exit(exc)

    async def __aenter__(self) -> timed:
        self._enter()
        return self

    async def __aexit__(self, exc_type: ExcType, exc: ExcValue, tb: Traceback) -> None:
        self._exit(exc)

    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        if inspect.iscoroutinefunction(fn):
            afn = cast(Callable[P, Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                async with self:
                    return await afn(*args, **kwargs)

            return cast(Callable[P, T], async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            with self:
                return fn(*args, **kwargs)

        return wrapper

    def __repr__(self) -> str:
        return f"timed({self.name!r}, labels={self._labels!r})"


def _global_instrument(histogram: Histogram) -> Any:
    instrument = _otel_instruments.get(histogram.name)
    if instrument is not None:
        return instrument
    try:
        from opentelemetry import metrics as otel_metrics
    except ImportError:
        return None
    with _otel_lock:
        instrument = _otel_instruments.get(histogram.name)
        if instrument is None:
            meter = otel_metrics.get_meter("paios_reliability")
            instrument = _otel_histogram(meter, histogram)
            _otel_instruments[histogram.name] = instrument
    return instrument


def _otel_histogram(meter: Any, histogram: Histogram) -> Any:
    from .exporters import otel_histogram

    return otel_histogram(meter, histogram, unit="s")
