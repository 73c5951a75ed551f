"""LeakMonitor (real child processes whose RSS leaks or saws, FakeClock time)
and ResourceTracker (real timers, threads and asyncio tasks)."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from paios_reliability import (
    ConfigError,
    LeakMonitor,
    LeakReport,
    ResourceTracker,
)
from paios_reliability._observe.memory_readings import read_rss, sampling_times
from paios_reliability._observe.trend import (
    _MIN_CONFIDENT_POINTS,
    _Z_999,
    _pairwise_slopes,
    _sen_lower_bound,
    theil_sen,
)
from paios_reliability.testing import FakeClock, capture_events

HELPERS = Path(__file__).parent / "_proc_ops_helpers.py"
MiB = 1 << 20
INTERVAL = 60.0  # fake seconds between samples
STEPS = 80  # 80 fake minutes: 10 min warm-up, then a full 1 h window


class MemoryChild:
    """A real process whose memory we shape, one command per fake minute."""

    def __init__(self) -> None:
        env = dict(
            os.environ, MALLOC_MMAP_THRESHOLD_="131072"
        )  # big buffers: mmap, freed for real
        self.proc = subprocess.Popen(
            [sys.executable, str(HELPERS), "memory"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def command(self, text: str) -> None:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"

    def close(self) -> None:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.wait(10)
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def child() -> Iterator[MemoryChild]:
    made = MemoryChild()
    yield made
    made.close()


def drive(child: MemoryChild, commands: Iterator[str]) -> LeakReport:
    clock = FakeClock()
    monitor = LeakMonitor(pid=child.proc.pid, clock=clock)
    child.command("reset")
    for command in commands:
        child.command(command)
        assert monitor.sample() is not None
        clock.advance(INTERVAL)
    return monitor.check()


def test_a_child_leaking_about_10_mb_per_hour_is_flagged(child: MemoryChild) -> None:
    per_step = int(12 * MiB * INTERVAL / 3600)  # ~12 MB/h of fake time
    report = drive(child, (f"hold {per_step}" for _ in range(STEPS)))
    assert report.leaking, report.reason
    assert 10.0 < report.slope_mb_per_hour < 14.0  # type: ignore[operator]
    assert report.confidence > 0.9
    assert report.points == 12


def test_a_child_leaking_below_the_threshold_is_not_flagged(child: MemoryChild) -> None:
    per_step = int(5 * MiB * INTERVAL / 3600)
    report = drive(child, (f"hold {per_step}" for _ in range(STEPS)))
    assert not report.leaking
    assert 3.0 < report.slope_mb_per_hour < 7.0  # type: ignore[operator]


@settings(max_examples=6, deadline=None)
@given(
    amplitude=st.integers(4, 16),
    period=st.integers(2, 5),
    jitter=st.floats(0.0, 0.5),
    seed=st.integers(0, 2**16),
)
def test_a_child_with_a_big_gc_sawtooth_but_no_growth_is_not_flagged(
    child: MemoryChild, amplitude: int, period: int, jitter: float, seed: int
) -> None:
    rnd = random.Random(seed)
    phase = rnd.randrange(period)

    def shape() -> Iterator[str]:
        for step in range(STEPS):
            level = ((step + phase) % period + 1) / period
            size = amplitude * MiB * level * (1 + rnd.uniform(-jitter, jitter))
            yield f"churn {int(size)}"

    report = drive(child, shape())
    assert not report.leaking, report.reason
    assert report.points == 12


# -- the estimator on synthetic series (many more shapes, no processes) ------------------


def series_monitor(values: list[float], **options: float) -> LeakMonitor:
    clock = FakeClock()
    feed = iter(values)
    monitor = LeakMonitor(source=lambda: next(feed), clock=clock, **options)  # type: ignore[arg-type]
    for _ in values:
        monitor.sample()
        clock.advance(30.0)
    return monitor


def sampled(memory: Callable[[float], float], rnd: random.Random) -> LeakReport:
    """Sample ``memory(t)`` for 2.5 h, one sample at a random moment of each
    30 s slot, exactly as ``start()`` schedules them.

    The schedule matters: a GC cycle in step with a fixed (or +-20 % jittered)
    interval aliases into a slow fake trend (Hypothesis found two such with
    +-20 %: a 59.5 s and a 10 s sawtooth sampled about every 30 s).
    """
    clock = FakeClock()
    monitor = LeakMonitor(source=lambda: memory(clock.monotonic()), clock=clock)
    monitor.sample()
    for at in sampling_times(0.0, 30.0, rnd):
        if at >= 9000:
            break
        clock.advance(at - clock.monotonic())
        monitor.sample()
    return monitor.check()


FINDING_SAWTOOTH = {"amplitude": 40.0, "period": 10.0, "noise": 3.0, "seed": 2260}


@settings(max_examples=200, deadline=None)
@given(
    amplitude=st.floats(0, 60),
    period=st.floats(1, 290),
    noise=st.floats(0, 3),
    spikes=st.sampled_from([0.0, 0.02]),
    seed=st.integers(0, 2**32 - 1),
)
@example(amplitude=20.0, period=59.5, noise=0.0, spikes=0.0, seed=47326)
@example(**FINDING_SAWTOOTH, spikes=0.0)  # the flat sawtooth read as 10 MB/h
def test_noise_shapes_without_growth_are_never_a_leak(
    amplitude: float, period: float, noise: float, spikes: float, seed: int
) -> None:
    rnd = random.Random(seed)
    phase = rnd.uniform(0, period)

    def memory(t: float) -> float:
        v = 200 * MiB + amplitude * MiB * (((t + phase) % period) / period)
        v += rnd.gauss(0, noise * MiB)
        if rnd.random() < spikes:
            v += 50 * MiB
        return v

    report = sampled(memory, rnd)
    assert not report.leaking, report.reason


def test_finding_flat_40mb_sawtooth_is_not_read_as_10_mb_per_hour() -> None:
    """The CI failure, replayed sample for sample: a flat 40 MB sawtooth every
    10 s with 3 MB noise, sampled every 30 s +-20 % (the old schedule of
    ``start()``), was reported as sustained growth of 10.0 MB/h. Its sub-window
    minima scatter by several MB, and that scatter alone made the slope."""
    rnd = random.Random(FINDING_SAWTOOTH["seed"])
    phase = rnd.uniform(0, 10.0)

    def memory(t: float) -> float:
        v = 200 * MiB + 40 * MiB * (((t + phase) % 10.0) / 10.0)
        v += rnd.gauss(0, 3 * MiB)
        rnd.random()  # the property test's spike draw (spikes=0)
        return v

    clock = FakeClock()
    monitor = LeakMonitor(source=lambda: memory(clock.monotonic()), clock=clock)
    while clock.monotonic() < 9000:
        monitor.sample()
        clock.advance(30.0 * rnd.uniform(0.8, 1.2))
    report = monitor.check()
    assert report.slope_mb_per_hour is not None
    assert report.slope_mb_per_hour > 10.0  # the point estimate alone still errs
    assert not report.leaking, report.reason
    assert report.slope_lower_mb_per_hour is not None
    assert report.slope_lower_mb_per_hour < 5.0
    assert "scatter too much" in report.reason


@settings(max_examples=100, deadline=None)
@given(
    leak=st.floats(25, 200),
    amplitude=st.floats(0, 20),
    period=st.floats(10, 290),
    noise=st.floats(0, 1),
    seed=st.integers(0, 2**32 - 1),
)
def test_real_growth_under_moderate_noise_is_a_leak(
    leak: float, amplitude: float, period: float, noise: float, seed: int
) -> None:
    rnd = random.Random(seed)

    def memory(t: float) -> float:
        return (
            200 * MiB
            + leak * MiB * t / 3600
            + amplitude * MiB * ((t % period) / period)
            + rnd.gauss(0, noise * MiB)
        )

    report = sampled(memory, rnd)
    assert report.leaking, report.reason
    assert report.slope_mb_per_hour == pytest.approx(leak, rel=0.35)


def test_first_vs_last_would_have_cried_wolf() -> None:
    # Flat memory whose last sample catches a GC peak and first a trough.
    values = [100 * MiB + (40 * MiB if i % 7 == 6 else 0) for i in range(300)]
    values[-1] = 140 * MiB
    report = series_monitor(values).check()
    assert not report.leaking
    assert report.naive_mb_per_hour is not None


def test_warm_up_is_ignored_and_reported() -> None:
    clock = FakeClock()
    value = [0.0]
    monitor = LeakMonitor(source=lambda: value[0], clock=clock)
    for i in range(20):  # the first 10 minutes: a huge import-time ramp
        value[0] = i * 50 * MiB
        monitor.sample()
        clock.advance(30)
    assert "warming up" in monitor.check().reason
    for _ in range(250):
        monitor.sample()
        clock.advance(30)
    report = monitor.check()
    assert not report.leaking
    assert report.slope_mb_per_hour == 0


def test_on_leak_fires_once_per_episode_with_events() -> None:
    clock = FakeClock()
    value = [100.0 * MiB]
    fired: list[LeakReport] = []
    monitor = LeakMonitor(
        source=lambda: value[0], clock=clock, on_leak=fired.append, name="svc"
    )
    with capture_events() as events:
        for _ in range(200):
            value[0] += 1 * MiB  # 120 MB/h at 30 s per sample
            monitor.sample()
            monitor.check()
            clock.advance(30)
        assert len(fired) == 1
        assert monitor.leaking
        for _ in range(200):  # stops growing: the episode ends
            monitor.sample()
            monitor.check()
            clock.advance(30)
    assert not monitor.leaking
    assert len(fired) == 1
    assert fired[0].leaking
    assert [e.subject for e in events.of("leak_monitor.leak_detected")] == ["svc"]
    assert len(events.of("leak_monitor.leak_cleared")) == 1


def test_a_raising_callback_does_not_stop_monitoring() -> None:
    def boom(report: LeakReport) -> None:
        raise RuntimeError("callback bug")

    values = [100 * MiB + i * MiB for i in range(300)]
    clock = FakeClock()
    feed = iter(values)
    monitor = LeakMonitor(source=lambda: next(feed), clock=clock, on_leak=boom)
    with capture_events() as events:
        for _ in values:
            monitor.sample()
            clock.advance(30)
        assert monitor.check().leaking
    assert len(events.of("leak_monitor.callback_failed")) == 1


def test_theil_sen_resists_outliers() -> None:
    points = [(float(x), 2.0 * x + 1) for x in range(20)]
    points[3] = (3.0, 1000.0)
    points[15] = (15.0, -1000.0)
    slope, rising = theil_sen(points)
    assert slope == pytest.approx(2.0)
    assert rising > 0.8
    assert theil_sen([(1.0, 1.0)]) == (0.0, 0.0)


def test_sen_bound_needs_nine_points_and_is_exact_on_a_line() -> None:
    line = [(float(x), 3.0 * x) for x in range(_MIN_CONFIDENT_POINTS)]
    assert _sen_lower_bound(_pairwise_slopes(line), len(line), _Z_999) == 3.0
    short = line[:-1]
    assert _sen_lower_bound(_pairwise_slopes(short), len(short), _Z_999) is None
    # 12 points, 66 pairwise slopes 0..65: rank (66 - 3.29 * sd(S)) / 2 = 9.007
    bound = _sen_lower_bound([float(i) for i in range(66)], 12, _Z_999)
    assert bound == pytest.approx(8.007, abs=1e-3)


def test_a_clean_leak_waits_for_nine_minima_then_is_reported() -> None:
    clock = FakeClock()
    value = [100.0 * MiB]
    monitor = LeakMonitor(source=lambda: value[0], clock=clock)
    verdicts: list[LeakReport] = []
    for _ in range(240):  # 2 h at 30 s: 120 MB/h, no noise
        value[0] += 1 * MiB
        monitor.sample()
        verdicts.append(monitor.check())
        clock.advance(30)
    first = next(r for r in verdicts if r.leaking)
    assert first.points == _MIN_CONFIDENT_POINTS
    too_few = [r for r in verdicts if 6 <= r.points < _MIN_CONFIDENT_POINTS]
    assert too_few
    assert all("too few to be 99.9 % sure" in r.reason for r in too_few)
    assert not any(r.leaking for r in too_few)
    assert first.slope_lower_mb_per_hour == pytest.approx(120.0, rel=0.01)
    assert first.to_dict()["slope_lower_mb_per_hour"] == first.slope_lower_mb_per_hour


@given(
    start=st.floats(0, 1e6),
    interval=st.floats(0.01, 3600),
    seed=st.integers(0, 2**32 - 1),
)
def test_sampling_times_take_one_random_moment_per_slot(
    start: float, interval: float, seed: int
) -> None:
    times = sampling_times(start, interval, random.Random(seed))
    for slot in range(1, 50):
        at = next(times)
        low = start + slot * interval
        assert low - 1e-6 <= at <= low + interval + 1e-6


def test_random_slots_break_aliasing_that_fixed_jitter_does_not() -> None:
    """A 30 s sawtooth sampled every 30 s +-20 %: the phase seen drifts slowly,
    so the 10 samples of a sub-window share a narrow band of phases. One random
    moment per slot sees every phase alike."""
    period, interval = 30.0, 30.0

    def phase_spread(times: list[float]) -> float:
        """Median, over 5-minute groups of 10 samples, of the phase range seen."""
        spreads = []
        for i in range(0, len(times) - 10, 10):
            phases = sorted((t % period) / period for t in times[i : i + 10])
            gaps = [b - a for a, b in itertools.pairwise(phases)]
            gaps.append(1 - phases[-1] + phases[0])
            spreads.append(1 - max(gaps))  # the arc of phases covered
        spreads.sort()
        return spreads[len(spreads) // 2]

    rnd = random.Random(7)
    jittered, t = [], 0.0
    for _ in range(2000):
        t += interval * rnd.uniform(0.8, 1.2)
        jittered.append(t)
    slots = sampling_times(0.0, interval, random.Random(7))
    random_slots = [next(slots) for _ in range(2000)]
    assert phase_spread(jittered) < 0.5
    assert phase_spread(random_slots) > 0.65


def test_read_rss_of_self_and_of_a_missing_process() -> None:
    rss = read_rss()
    assert rss is not None
    assert rss > 1 * MiB
    assert read_rss(2**22 + 12345) is None


def test_background_thread_samples_and_never_keeps_the_process_alive() -> None:
    seen = threading.Event()
    count = [0]

    def source() -> float:
        count[0] += 1
        if count[0] >= 5:
            seen.set()
        return 1.0 * MiB

    monitor = LeakMonitor(source=source)
    monitor.start(interval=0.01)
    monitor.start(interval=0.01)  # no second thread
    assert monitor.running
    assert monitor._thread is not None
    assert monitor._thread.daemon
    assert seen.wait(10)
    monitor.stop()
    assert not monitor.running
    assert monitor.last_report is not None


def test_tracemalloc_capture_names_the_growing_site() -> None:
    monitor = LeakMonitor(source=lambda: 0.0)
    hoard: list[bytes] = []
    stop = threading.Event()
    result: list[object] = []

    def capture() -> None:
        result.extend(monitor.capture_allocations(0.3, top=20))
        stop.set()

    thread = threading.Thread(target=capture)
    thread.start()
    deadline = time.monotonic() + 10
    while not stop.is_set() and time.monotonic() < deadline:
        hoard.append(b"x" * 10_000)  # the growing allocation site
        time.sleep(0.001)
    thread.join(10)
    assert any(
        site.filename == __file__ and site.size_diff > 100_000  # type: ignore[attr-defined]
        for site in result
    ), result
    import tracemalloc

    assert not tracemalloc.is_tracing()  # started for the capture only


def test_constructor_validates() -> None:
    for bad in (
        {"threshold_mb_per_hour": 0},
        {"window": 100, "subwindow": 60},
        {"min_points": 2},
        {"min_confidence": 0.2},
        {"source": "psutil"},
        {"pid": 1, "source": "tracemalloc"},
    ):
        with pytest.raises(ConfigError):
            LeakMonitor(**bad)  # type: ignore[arg-type]


# -- ResourceTracker -----------------------------------------------------------------


def test_leftover_timer_and_thread_are_reported_with_where_they_were_created() -> None:
    release = threading.Event()
    tracker = ResourceTracker("unit")
    timer = tracker.timer(60, lambda: None)
    timer.start()
    worker = tracker.thread(release.wait, 30, name="stuck-worker")
    worker.start()
    done = tracker.thread(lambda: None, name="finished")
    done.start()
    done.join()
    never_started = tracker.timer(60, lambda: None)
    with capture_events() as events:
        leftovers = tracker.close(cancel=True)
    release.set()
    worker.join(10)
    assert sorted(r.kind for r in leftovers) == ["thread", "timer"]
    assert {r.name for r in leftovers} >= {"stuck-worker"}
    for resource in leftovers:
        assert "test_leaks.py" in resource.created_at
        assert "tracker." in resource.created_at
    assert len(events.of("resource_tracker.leaked")) == 2
    timer.join(10)
    assert not timer.is_alive()  # cancel=True cancelled it
    assert never_started.ident is None


def test_patch_tracks_threads_started_inside_the_block() -> None:
    release = threading.Event()
    with ResourceTracker() as tracker, tracker.patch():
        t = threading.Thread(target=release.wait, args=(30,), name="spawned")
        t.start()
    assert [r.name for r in tracker.alive()] == ["spawned"]
    release.set()
    t.join(10)
    assert tracker.alive() == []
    outside = threading.Thread(target=lambda: None)
    outside.start()
    outside.join()
    assert threading.Thread.start is not None
    assert tracker.alive() == []


async def test_tasks_are_tracked_and_reported() -> None:
    gate = asyncio.Event()
    async with ResourceTracker("async") as tracker:
        explicit = tracker.task(gate.wait(), name="explicit")
        with tracker.patch():
            patched = asyncio.create_task(gate.wait(), name="patched")
        untracked = asyncio.create_task(gate.wait(), name="untracked")
        assert sorted(r.name for r in tracker.alive()) == ["explicit", "patched"]
        leftovers = tracker.close(cancel=True)
        assert {r.kind for r in leftovers} == {"task"}
        await asyncio.sleep(0)
        assert explicit.cancelled() or explicit.done()
        assert patched.cancelled() or patched.done()
        gate.set()
        await untracked
    assert tracker.alive() == []
