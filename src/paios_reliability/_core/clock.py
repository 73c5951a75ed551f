"""The time seam: every primitive reads time and sleeps through a Clock.

Production code uses :class:`SystemClock`; tests install
:class:`paios_reliability.testing.FakeClock`, whose sleeps return at once and
advance fake time, so no test waits for real.
"""

from __future__ import annotations

import threading
import time

from .settings import Restorer, swap_global
from .typing_lite import TYPE_CHECKING

if TYPE_CHECKING:
    from ..typing import Clock

__all__ = ["FakeClock", "SystemClock", "get_clock", "set_clock"]


class SystemClock:
    """The real clock: ``time.monotonic``, ``time.time`` and real sleeps."""

    __slots__ = ()

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        from .aio import sleep

        await sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK = SystemClock()
_lock = threading.Lock()
_default: Clock = SYSTEM_CLOCK


def get_clock(clock: Clock | None = None) -> Clock:
    """Return ``clock`` if given, else the process default clock."""
    return clock if clock is not None else _default


def set_clock(clock: Clock) -> Restorer:
    """Make ``clock`` the default for every primitive created without one.

    Returns:
        A :class:`Restorer` that brings back the previous default.
    """
    return swap_global(globals(), "_default", clock, _lock)


class FakeClock:
    """A clock for tests: it moves only when advanced or slept on.

    ``sleep()`` and ``asleep()`` return at once after advancing fake time, and
    record every duration in :attr:`sleeps`. Thread-safe.

    Args:
        start: Initial monotonic reading.
        wall: Initial wall-clock reading (seconds since the epoch).
    """

    def __init__(self, start: float = 0.0, *, wall: float = 1_700_000_000.0) -> None:
        self._lock = threading.Lock()
        self._now = float(start)
        self._wall_offset = float(wall) - float(start)
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self._now + self._wall_offset

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (must not be negative)."""
        if not seconds >= 0:  # also rejects NaN, which would poison every reading
            raise ValueError(f"FakeClock.advance() cannot go back in time: {seconds!r}")
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self._now += max(0.0, seconds)

    async def asleep(self, seconds: float) -> None:
        from .aio import checkpoint

        self.sleep(seconds)
        await checkpoint()  # still a scheduling point, as a real sleep is (any loop)

    def install(self) -> Restorer:
        """Make this the default clock of every primitive; returns a restorer."""
        return set_clock(self)

    def __repr__(self) -> str:
        return f"FakeClock(monotonic={self._now!r})"
