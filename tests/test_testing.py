"""paios_reliability.testing: FakeClock, switches, capture_events, flaky."""

from __future__ import annotations

import asyncio
import inspect
import math
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import paios_reliability as pr
from paios_reliability._core import clock as _clock
from paios_reliability._core import settings as _config
from paios_reliability.testing import (
    FakeClock,
    Flaky,
    capture_events,
    flaky,
    set_testing,
)
from paios_reliability.typing import Clock

# -- FakeClock ------------------------------------------------------------------------------


def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock(start=100.0, wall=1_000.0)
    assert (clock.monotonic(), clock.time()) == (100.0, 1_000.0)
    clock.advance(2.5)
    assert (clock.monotonic(), clock.time()) == (102.5, 1_002.5)
    clock.advance(0)
    assert clock.monotonic() == 102.5
    assert clock.sleeps == []
    assert isinstance(clock, Clock)
    assert isinstance(_clock.SYSTEM_CLOCK, Clock)


def test_sync_sleep_advances_instantly_and_is_recorded() -> None:
    clock = FakeClock()
    clock.sleep(30.0)
    clock.sleep(0.0)
    clock.sleep(-1.0)  # recorded as asked, but time never goes back
    assert clock.sleeps == [30.0, 0.0, -1.0]
    assert clock.monotonic() == 30.0


async def test_async_sleep_advances_instantly_and_yields() -> None:
    clock = FakeClock()
    order: list[str] = []

    async def other() -> None:
        order.append("other ran")

    task = asyncio.ensure_future(other())
    await clock.asleep(3600.0)  # an hour, at once
    order.append("slept")
    await task
    assert order == ["other ran", "slept"]  # asleep is a real scheduling point
    assert (clock.monotonic(), clock.sleeps) == (3600.0, [3600.0])


@pytest.mark.parametrize("bad", [-0.001, -5, math.nan])
def test_advance_cannot_go_back(bad: float) -> None:
    clock = FakeClock(start=1.0)
    with pytest.raises(ValueError, match="back in time"):
        clock.advance(bad)
    assert clock.monotonic() == 1.0


def test_fake_clock_is_thread_safe() -> None:
    clock = FakeClock()

    def worker() -> None:
        for _ in range(1000):
            clock.sleep(1.0)
            clock.advance(1.0)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert clock.monotonic() == 8000.0
    assert len(clock.sleeps) == 4000


def test_install_sets_the_default_clock_and_restores_the_old_one() -> None:
    original = _clock.get_clock()
    first, second = FakeClock(), FakeClock()
    restore_first = first.install()
    assert _clock.get_clock() is first
    with second.install():
        assert _clock.get_clock() is second
    assert _clock.get_clock() is first
    restore_first()
    assert _clock.get_clock() is original
    explicit = FakeClock()
    assert _clock.get_clock(explicit) is explicit


def test_system_clock() -> None:
    clock = _clock.SystemClock()
    start = clock.monotonic()
    clock.sleep(0)
    clock.sleep(-1)
    assert clock.monotonic() >= start
    assert abs(clock.time() - __import__("time").time()) < 60
    asyncio.run(clock.asleep(0))
    assert repr(clock) == "SystemClock()"


# -- switches -------------------------------------------------------------------------------


def test_set_testing_nests_and_restores_in_lifo_order() -> None:
    assert (_config.is_testing(), _config.testing_attempts()) == (False, None)
    outer = set_testing(True, attempts=3)
    assert (_config.is_testing(), _config.testing_attempts()) == (True, 3)
    inner = set_testing(False)
    assert (_config.is_testing(), _config.testing_attempts()) == (False, None)
    innermost = set_testing(True)
    assert (_config.is_testing(), _config.testing_attempts()) == (True, None)
    innermost()
    assert (_config.is_testing(), _config.testing_attempts()) == (False, None)
    inner()
    assert (_config.is_testing(), _config.testing_attempts()) == (True, 3)
    outer()
    assert (_config.is_testing(), _config.testing_attempts()) == (False, None)


def test_set_active_and_set_testing_are_independent_and_nest_as_context_managers() -> (
    None
):
    assert pr.is_active() is True
    with pr.set_active(False):
        assert pr.is_active() is False
        with set_testing():
            assert (pr.is_active(), _config.is_testing()) == (False, True)
            with pr.set_active(True):
                assert (pr.is_active(), _config.is_testing()) == (True, True)
            assert pr.is_active() is False
        assert _config.is_testing() is False
    assert pr.is_active() is True


def test_a_restorer_runs_once() -> None:
    restore = pr.set_active(False)
    restore()
    later = pr.set_active(False)
    restore()  # must not undo `later`
    assert pr.is_active() is False
    later()
    assert pr.is_active() is True


def test_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        set_testing(True, attempts=0)
    assert _config.is_testing() is False


def test_testing_module_reexports_the_switch() -> None:
    assert set_testing is _config.set_testing


def test_switches_under_threads() -> None:
    errors: list[BaseException] = []

    def flip() -> None:
        try:
            for _ in range(500):
                with pr.set_active(False):
                    pass
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=flip) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert isinstance(pr.is_active(), bool)


# -- flaky ------------------------------------------------------------------------------------


class Boom(Exception):
    pass


def make_sync() -> Callable[[int], int]:
    def double(x: int) -> int:
        """Double it."""
        return x * 2

    return double


def make_async() -> Callable[[int], Awaitable[int]]:
    async def double(x: int) -> int:
        """Double it."""
        await asyncio.sleep(0)
        return x * 2

    return double


async def call(fn: Callable[[int], Any], x: int) -> int:
    result = fn(x)
    if inspect.isawaitable(result):
        result = await result
    return int(result)


KINDS = {"sync": make_sync, "async": make_async}
SOURCES: dict[str, Any] = {
    "instance": Boom("the same instance"),
    "class": Boom,
    "factory": lambda n: Boom(f"call {n}"),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("source", SOURCES)
async def test_flaky_fails_the_first_calls_then_passes(kind: str, source: str) -> None:
    injector = flaky(2, SOURCES[source])
    fn = injector(KINDS[kind]())
    assert inspect.iscoroutinefunction(fn) is (kind == "async")
    assert (fn.__name__, fn.__doc__) == ("double", "Double it.")

    messages = []
    for _ in range(2):
        with pytest.raises(Boom) as info:
            await call(fn, 1)
        messages.append(str(info.value))
    assert await call(fn, 21) == 42
    assert await call(fn, 1) == 2
    assert (injector.calls, injector.failures, injector.fail_times) == (4, 2, 2)
    expected = {
        "instance": ["the same instance"] * 2,
        "class": ["injected failure 1 of 2", "injected failure 2 of 2"],
        "factory": ["call 1", "call 2"],
    }[source]
    assert messages == expected


@pytest.mark.parametrize("kind", KINDS)
async def test_flaky_zero_never_fails(kind: str) -> None:
    injector = flaky(0)
    fn = injector(KINDS[kind]())
    assert await call(fn, 2) == 4
    assert (injector.calls, injector.failures) == (1, 0)


@pytest.mark.parametrize("kind", KINDS)
async def test_flaky_default_is_a_transient_connection_reset(kind: str) -> None:
    fn = flaky(1)(KINDS[kind]())
    with pytest.raises(ConnectionResetError) as info:
        await call(fn, 1)
    assert pr.is_retryable(info.value)


def test_flaky_counts_exactly_under_threads() -> None:
    injector = flaky(50, Boom)
    fn = injector(make_sync())
    failures = []

    def worker() -> None:
        for _ in range(100):
            try:
                fn(1)
            except Boom:
                failures.append(1)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert (injector.calls, injector.failures, len(failures)) == (400, 50, 50)


def test_flaky_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        flaky(-1)
    assert isinstance(flaky(1), Flaky)


# -- capture_events ---------------------------------------------------------------------------


def test_capture_events_nests_and_filters() -> None:
    from paios_reliability._core.events import emit

    with capture_events() as outer:
        emit("retry", "scheduled")
        with capture_events() as inner:
            emit("breaker", "opened")
        emit("retry", "gave_up")

    assert outer.names() == [
        "paios_reliability.retry.scheduled",
        "paios_reliability.breaker.opened",
        "paios_reliability.retry.gave_up",
    ]
    assert inner.names() == ["paios_reliability.breaker.opened"]
    assert [e.action for e in outer.of("retry.scheduled")] == ["scheduled"]
    assert outer.of("paios_reliability.breaker.opened") == [inner[0]]
    assert outer.of("scheduled") == [outer[0]]
    assert outer.of("duled") == []
    assert outer[1:] == [inner[0], outer[2]]
    assert "breaker.opened" in repr(outer)
