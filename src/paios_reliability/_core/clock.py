"""The time seam: every primitive reads time and sleeps through a Clock.

Production code uses :class:`SystemClock`; tests install
:class:`paios_reliability.testing.FakeClock`, whose sleeps return at once and
advance fake time, so no test waits for real.
"""

from __future__ import annotations

import threading
import time

from ..typing import Clock
from .settings import Restorer

__all__ = ["SystemClock", "get_clock", "set_clock"]


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
    global _default
    with _lock:
        previous, _default = _default, clock

    def undo() -> None:
        global _default  # noqa: PLW0603
        with _lock:
            _default = previous

    return Restorer(undo)
