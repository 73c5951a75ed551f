"""Leak detection: a cheap, robust RSS alarm, and a tracker of leftover resources.

:class:`LeakMonitor` samples the resident set size (``/proc`` on Linux, ``ps``
elsewhere; no psutil) or tracemalloc's traced total, and estimates the growth
rate robustly:

1. samples of the warm-up period (imports, caches filling) are ignored;
2. the window is cut into sub-windows (5 minutes by default) and only the
   *minimum* of each is kept: a garbage-collected heap saws up and down, but
   its troughs only rise when memory is really retained;
3. the slope through those minima is the Theil-Sen estimate (the median of the
   slopes of all pairs), which a few outliers cannot move;
4. a leak is reported only if that slope exceeds the threshold, most pairs agree
   (``confidence``), the lower end of the slope's 99.9 % confidence interval
   is at least half the threshold, and the lowest point of the second half of
   the window is above the lowest point of the first half.

The confidence interval (Sen's, from Kendall's rank statistic) is what keeps
noise from reading as growth: a flat sawtooth sampled at random moments gives
sub-window minima that scatter by a good part of its amplitude, and over an
hour such scatter alone makes a Theil-Sen slope of 10-25 MB/h about once in a
thousand windows. The interval is distribution-free and widens with that
scatter, so a flat series clears it only with a probability below 0.05 % even
with an unbounded sawtooth, and in practice never (a 60 MB sawtooth reaches
a bound of about 2 MB/h, against the 5 MB/h needed), while a clean 10.5 MB/h
leak clears it at once. With fewer than 9 minima no 99.9 % interval exists,
so no leak is reported before that (40 minutes after the warm-up by default).

The background sampler takes one sample at a random moment of each interval
(jittered slots). Samples at a fixed interval, even one jittered by +-20 %, can
fall in step with a GC cycle of a similar period, and then the minima wander
together for an hour (aliasing): no estimator can tell that from growth.

First-versus-last RSS, by comparison, swung from -81 to +60 MB/h on the same
non-leaking process. "MB" here is MiB (2**20 bytes), as ``ps`` and ``top``
report memory.

When the alarm fires, an optional short tracemalloc capture (never on by
default: it slows allocation-heavy code 7-15x) names the allocation sites that
grew during the capture.

:class:`~.resources.ResourceTracker` (its own module, exported here too)
reports timers, threads and asyncio tasks that are still alive when they
should be gone, with where they were created.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .._core.clock import get_clock
from .._core.events import emit
from .._core.exceptions import ConfigError
from .memory_readings import MB, _traced_bytes, read_rss, sampling_times
from .resources import ResourceTracker, TrackedResource
from .trend import (
    _MIN_CONFIDENT_POINTS,
    _Z_999,
    _median,
    _pairwise_slopes,
    _sen_lower_bound,
)

if TYPE_CHECKING:
    from ..typing import Clock

__all__ = [
    "AllocationSite",
    "LeakMonitor",
    "LeakReport",
    "ResourceTracker",
    "TrackedResource",
]


@dataclass(frozen=True, slots=True)
class AllocationSite:
    """A place in the code whose allocations grew during a tracemalloc capture."""

    filename: str
    lineno: int
    size_diff: int
    count_diff: int

    def __str__(self) -> str:
        return (
            f"{self.filename}:{self.lineno}: +{self.size_diff / 1024:.1f} KiB "
            f"({self.count_diff:+d} blocks)"
        )


@dataclass(frozen=True, slots=True)
class LeakReport:
    """What :meth:`LeakMonitor.check` concluded.

    Attributes:
        leaking: Sustained growth above the threshold, with confidence.
        slope_mb_per_hour: Robust growth estimate (``None``: not enough data).
        confidence: Share of sub-window pairs that agree memory rose (0-1).
        threshold_mb_per_hour: The alarm threshold.
        points: Sub-window minima the estimate used.
        samples: Samples taken so far (warm-up included).
        span_seconds: Time between the first and last minimum used.
        current_mb: The latest sample.
        naive_mb_per_hour: First-vs-last slope over the same points, for
            comparison only (it is what misleads).
        reason: One line explaining the verdict.
        source: ``rss``, ``tracemalloc`` or ``custom``.
        top_allocations: Growing allocation sites, when a capture ran.
        slope_lower_mb_per_hour: Lower end of the slope's 99.9 % confidence
            interval (``None``: too few points for that confidence). A leak
            needs it at half the threshold or more.
    """

    leaking: bool
    slope_mb_per_hour: float | None
    confidence: float
    threshold_mb_per_hour: float
    points: int
    samples: int
    span_seconds: float
    current_mb: float | None
    naive_mb_per_hour: float | None
    reason: str
    source: str
    top_allocations: tuple[AllocationSite, ...] = ()
    slope_lower_mb_per_hour: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view."""
        return {
            "leaking": self.leaking,
            "slope_mb_per_hour": self.slope_mb_per_hour,
            "slope_lower_mb_per_hour": self.slope_lower_mb_per_hour,
            "confidence": round(self.confidence, 3),
            "threshold_mb_per_hour": self.threshold_mb_per_hour,
            "points": self.points,
            "samples": self.samples,
            "span_seconds": round(self.span_seconds, 1),
            "current_mb": self.current_mb,
            "naive_mb_per_hour": self.naive_mb_per_hour,
            "reason": self.reason,
            "source": self.source,
            "top_allocations": [str(site) for site in self.top_allocations],
        }


class LeakMonitor:
    """Watch a process's memory and say when it grows for real.

    Args:
        threshold_mb_per_hour: Alarm above this sustained growth (MiB/hour).
        window: Seconds of history the estimate looks at.
        subwindow: Width of the sub-windows whose minima are kept (make it
            longer than the process's GC/caching cycle).
        warmup: Seconds after the first sample that are ignored.
        min_points: Sub-window minima needed before any verdict (a leak
            verdict needs at least 9 whatever this says: fewer cannot give a
            99.9 % confidence interval).
        min_confidence: Share of rising pairs needed to call it a leak.
        source: ``"rss"`` (default), ``"tracemalloc"`` (starts tracing: slow)
            or a callable returning bytes.
        pid: Watch another process's RSS (``source="rss"`` only).
        on_leak: Called with the :class:`LeakReport` when a leak starts
            (once per episode; again only after it cleared). Exceptions it
            raises are logged and swallowed.
        trace_on_leak: When a leak starts, run a tracemalloc capture for
            ``trace_seconds`` and attach the top growing sites to the report
            (this process only).
        trace_seconds: Length of that capture.
        trace_top: How many sites to keep.
        clock: Time source (default: the process clock at call time).
        name: Subject of events (default ``"pid <pid>"``).

    Events: ``leak_monitor.leak_detected`` (warning) and
    ``leak_monitor.leak_cleared`` (info). Thread-safe.
    """

    def __init__(
        self,
        *,
        threshold_mb_per_hour: float = 10.0,
        window: float = 3600.0,
        subwindow: float = 300.0,
        warmup: float = 600.0,
        min_points: int = 6,
        min_confidence: float = 0.75,
        source: Literal["rss", "tracemalloc"] | Callable[[], float] = "rss",
        pid: int | None = None,
        on_leak: Callable[[LeakReport], object] | None = None,
        trace_on_leak: bool = False,
        trace_seconds: float = 10.0,
        trace_top: int = 10,
        clock: Clock | None = None,
        name: str | None = None,
    ) -> None:
        if not threshold_mb_per_hour > 0:
            raise ConfigError(
                f"threshold_mb_per_hour must be > 0, got {threshold_mb_per_hour!r}",
                code="USAGE_ERROR",
            )
        if not (window > 0 and 0 < subwindow <= window / 2):
            raise ConfigError(
                f"need window > 0 and 0 < subwindow <= window / 2, got "
                f"window={window!r}, subwindow={subwindow!r}",
                code="USAGE_ERROR",
            )
        if warmup < 0 or min_points < 3 or not 0.5 <= min_confidence <= 1:
            raise ConfigError(
                "need warmup >= 0, min_points >= 3 and 0.5 <= min_confidence <= 1",
                code="USAGE_ERROR",
            )
        if pid is not None and source != "rss":
            raise ConfigError("pid= works with source='rss' only", code="USAGE_ERROR")
        self.threshold_mb_per_hour = float(threshold_mb_per_hour)
        self.window = float(window)
        self.subwindow = float(subwindow)
        self.warmup = float(warmup)
        self.min_points = int(min_points)
        self.min_confidence = float(min_confidence)
        self.pid = pid
        self.on_leak = on_leak
        self.trace_on_leak = trace_on_leak
        self.trace_seconds = float(trace_seconds)
        self.trace_top = int(trace_top)
        self.name = name or f"pid {pid if pid is not None else os.getpid()}"
        self._clock = clock
        if callable(source):
            self._read: Callable[[], float | None] = source
            self.source = "custom"
        elif source == "rss":
            self._read = lambda: read_rss(pid)
            self.source = "rss"
        elif source == "tracemalloc":
            self._read = _traced_bytes
            self.source = "tracemalloc"
        else:
            raise ConfigError(
                f"source must be 'rss', 'tracemalloc' or a callable, got {source!r}",
                code="USAGE_ERROR",
            )
        self._lock = threading.Lock()
        self._check_lock = threading.Lock()
        self._first: float | None = None
        self._buckets: dict[int, tuple[float, float]] = {}  # index -> (min, t)
        self._samples = 0
        self._last_value: float | None = None
        self._last_time: float | None = None
        self._leaking = False
        self.last_report: LeakReport | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # -- sampling ------------------------------------------------------------

    def sample(self) -> float | None:
        """Take one sample now; returns it in bytes (``None`` if unreadable)."""
        value = self._read()
        if value is None:
            return None
        self.add_sample(float(value))
        return float(value)

    def add_sample(self, value: float, at: float | None = None) -> None:
        """Record a measurement taken elsewhere (bytes, at monotonic time ``at``)."""
        now = get_clock(self._clock).monotonic() if at is None else float(at)
        with self._lock:
            if self._first is None:
                self._first = now
            self._samples += 1
            self._last_value = value
            self._last_time = now
            if now - self._first < self.warmup:
                return
            index = int((now - self._first) // self.subwindow)
            current = self._buckets.get(index)
            if current is None or value < current[0]:
                self._buckets[index] = (value, now)
            oldest = int((now - self._first - self.window) // self.subwindow)
            for stale in [i for i in self._buckets if i <= oldest]:
                del self._buckets[stale]

    # -- the verdict ---------------------------------------------------------

    def _assess(self) -> LeakReport:
        with self._lock:
            points = sorted((t, v) for v, t in self._buckets.values())
            samples = self._samples
            current = self._last_value
        current_mb = None if current is None else round(current / MB, 3)

        def report(
            leaking: bool,
            slope: float | None,
            confidence: float,
            naive: float | None,
            reason: str,
            *,
            lower: float | None = None,
        ) -> LeakReport:
            span = points[-1][0] - points[0][0] if len(points) > 1 else 0.0
            return LeakReport(
                leaking=leaking,
                slope_mb_per_hour=None if slope is None else round(slope, 3),
                confidence=confidence,
                threshold_mb_per_hour=self.threshold_mb_per_hour,
                points=len(points),
                samples=samples,
                span_seconds=span,
                current_mb=current_mb,
                naive_mb_per_hour=None if naive is None else round(naive, 3),
                reason=reason,
                source=self.source,
                slope_lower_mb_per_hour=None if lower is None else round(lower, 3),
            )

        if len(points) < self.min_points:
            return report(
                False,
                None,
                0.0,
                None,
                f"warming up: {len(points)} of {self.min_points} sub-window minima "
                f"after {self.warmup:.0f}s warm-up",
            )
        scale = 3600.0 / MB
        slopes = _pairwise_slopes(points)
        slope_h = _median(slopes) * scale if slopes else 0.0
        rising = sum(1 for s in slopes if s > 0) / len(slopes) if slopes else 0.0
        bound = _sen_lower_bound(slopes, len(points), _Z_999) if slopes else None
        lower_h = None if bound is None else bound * scale
        (t0, v0), (t1, v1) = points[0], points[-1]
        naive = (v1 - v0) / (t1 - t0) * scale if t1 > t0 else 0.0
        half = len(points) // 2
        first_low = min(v for _, v in points[:half])
        second_low = min(v for _, v in points[half:])
        gap = (points[half][0] + points[-1][0]) / 2 - (
            points[0][0] + points[half - 1][0]
        ) / 2
        trough_rate = (second_low - first_low) / gap * scale if gap > 0 else 0.0
        threshold = self.threshold_mb_per_hour
        if slope_h <= threshold:
            return report(
                False,
                slope_h,
                rising,
                naive,
                f"growth {slope_h:.1f} MB/h is within {threshold:g} MB/h",
                lower=lower_h,
            )
        if rising < self.min_confidence:
            return report(
                False,
                slope_h,
                rising,
                naive,
                f"growth {slope_h:.1f} MB/h but only {rising:.0%} of pairs rise "
                f"(need {self.min_confidence:.0%}): noise, not a trend",
                lower=lower_h,
            )
        if lower_h is None:
            return report(
                False,
                slope_h,
                rising,
                naive,
                f"growth {slope_h:.1f} MB/h but {len(points)} sub-window minima "
                f"are too few to be 99.9 % sure (need {_MIN_CONFIDENT_POINTS})",
            )
        if lower_h < threshold / 2:
            return report(
                False,
                slope_h,
                rising,
                naive,
                f"growth {slope_h:.1f} MB/h but the minima scatter too much to be "
                f"sure: 99.9 % lower bound {lower_h:.1f} MB/h < {threshold / 2:g} "
                f"MB/h: noise, not a trend",
                lower=lower_h,
            )
        if trough_rate < threshold / 2:
            return report(
                False,
                slope_h,
                rising,
                naive,
                f"growth {slope_h:.1f} MB/h but the low points rose only "
                f"{trough_rate:.1f} MB/h: a sawtooth, not a leak",
                lower=lower_h,
            )
        return report(
            True,
            slope_h,
            rising,
            naive,
            f"sustained growth {slope_h:.1f} MB/h > {threshold:g} MB/h "
            f"(99.9 % lower bound {lower_h:.1f} MB/h; {rising:.0%} of pairs rising "
            f"over {len(points)} sub-windows)",
            lower=lower_h,
        )

    def check(self) -> LeakReport:
        """Assess the samples so far; fire ``on_leak`` and an event when a leak starts.

        With ``trace_on_leak``, this call runs the tracemalloc capture first
        (``trace_seconds`` of the monitor's clock) when a leak starts.
        """
        with self._check_lock:  # one verdict at a time: on_leak fires once
            return self._check()

    def _check(self) -> LeakReport:
        report = self._assess()
        started = report.leaking and not self._leaking
        cleared = (
            self._leaking and not report.leaking and report.points >= self.min_points
        )
        if started:
            self._leaking = True
            if self.trace_on_leak and self.pid is None:
                sites = self.capture_allocations(self.trace_seconds, top=self.trace_top)
                report = _with_sites(report, sites)
            emit(
                "leak_monitor",
                "leak_detected",
                level="warning",
                subject=self.name,
                **{k: v for k, v in report.to_dict().items() if k != "leaking"},
            )
            if self.on_leak is not None:
                try:
                    self.on_leak(report)
                except Exception as exc:  # noqa: BLE001 - a callback must not stop monitoring
                    emit(
                        "leak_monitor",
                        "callback_failed",
                        level="error",
                        subject=self.name,
                        exc=exc,
                    )
        elif cleared:
            self._leaking = False
            emit(
                "leak_monitor",
                "leak_cleared",
                subject=self.name,
                slope_mb_per_hour=report.slope_mb_per_hour,
            )
        self.last_report = report
        return report

    @property
    def leaking(self) -> bool:
        """Whether the last :meth:`check` found a leak."""
        return self._leaking

    def reset(self) -> None:
        """Forget every sample (e.g. after a deliberate cache resize)."""
        with self._lock:
            self._first = None
            self._buckets.clear()
            self._samples = 0
            self._last_value = None
        self._leaking = False
        self.last_report = None

    # -- tracemalloc capture -------------------------------------------------

    def capture_allocations(
        self, seconds: float = 10.0, *, top: int = 10
    ) -> tuple[AllocationSite, ...]:
        """Trace allocations for ``seconds`` and return the sites that grew most.

        Starts tracemalloc if it is off (and stops it again afterwards), so the
        7-15x allocation slowdown lasts only for the capture. Blocks the
        calling thread for ``seconds`` (of the monitor's clock).
        """
        import tracemalloc

        started_here = not tracemalloc.is_tracing()
        if started_here:
            tracemalloc.start(1)
        try:
            before = tracemalloc.take_snapshot()
            get_clock(self._clock).sleep(seconds)
            after = tracemalloc.take_snapshot()
        finally:
            if started_here:
                tracemalloc.stop()
        ignore = (
            tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, __file__),
        )
        stats = after.filter_traces(ignore).compare_to(
            before.filter_traces(ignore), "lineno"
        )
        sites = []
        for stat in stats:
            if stat.size_diff <= 0:
                continue
            frame = stat.traceback[0]
            sites.append(
                AllocationSite(
                    frame.filename, frame.lineno, stat.size_diff, stat.count_diff
                )
            )
            if len(sites) >= top:
                break
        return tuple(sites)

    # -- background thread ---------------------------------------------------

    def start(self, interval: float = 60.0) -> LeakMonitor:
        """Sample about every ``interval`` seconds on a daemon thread.

        The first sample is taken at once, then one at a uniformly random
        moment of each following ``interval``-long slot (see
        :func:`sampling_times`), so a GC cycle of any period cannot alias into
        a fake trend. The thread never keeps the process alive. Starting twice
        is a no-op. Returns ``self``.

        Raises:
            ConfigError: ``interval`` is not > 0.
        """
        if not interval > 0:
            raise ConfigError(
                f"interval must be > 0, got {interval!r}", code="USAGE_ERROR"
            )
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        thread = threading.Thread(
            target=self._run,
            args=(float(interval),),
            name="paios-leak-monitor",
            daemon=True,
        )
        self._thread = thread
        thread.start()
        return self

    def _run(self, interval: float) -> None:
        rnd = random.Random()  # noqa: S311 - sampling jitter, not a secret
        times = sampling_times(time.monotonic(), interval, rnd)
        while True:
            try:
                self.sample()
                self.check()
            except Exception as exc:  # noqa: BLE001 - a monitor must outlive its errors
                emit(
                    "leak_monitor",
                    "sample_failed",
                    level="error",
                    subject=self.name,
                    exc=exc,
                )
            due = next(times)
            now = time.monotonic()
            if due < now - interval:
                # Suspended or starved for more than a slot: start the slots
                # afresh instead of sampling in a burst to catch up.
                times = sampling_times(now, interval, rnd)
                due = next(times)
            if self._stop.wait(max(0.0, due - now)):
                return

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the background thread (waits at most ``timeout`` seconds)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._thread = None

    @property
    def running(self) -> bool:
        """Whether the background thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> LeakMonitor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (
            f"LeakMonitor({self.name!r}, threshold_mb_per_hour="
            f"{self.threshold_mb_per_hour:g}, source={self.source!r})"
        )


def _with_sites(report: LeakReport, sites: tuple[AllocationSite, ...]) -> LeakReport:
    from dataclasses import replace

    return replace(report, top_allocations=sites)
