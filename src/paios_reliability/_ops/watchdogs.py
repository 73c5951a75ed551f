"""Notice an event loop that stopped turning, or a worker loop that stopped beating.

Both watchdogs share one state machine (:class:`_Silence`) driven by a watcher
thread: the watched code leaves a timestamp (the loop, from a callback it
runs every quarter of the threshold; a worker, from :meth:`HangWatchdog.beat`),
and the thread checks its age. A silence longer than the threshold is
reported once, with the stack of the silent thread, and again when it ends,
with its length. With systemd's watchdog enabled (``WatchdogSec=``), the
``WATCHDOG=1`` pings are sent by the watched code itself, so they stop when
it stops and systemd restarts the hung service.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from typing import TYPE_CHECKING, Literal

from .._core.checks import check_number

if TYPE_CHECKING:
    import asyncio

__all__ = ["HangWatchdog", "StallWatchdog"]

_MAX_FRAMES = 30


class _Silence:
    """The pure state machine: quiet -> silent (report once) -> quiet (report length)."""

    __slots__ = ("silent_since", "threshold")

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.silent_since: float | None = None

    def observe(self, now: float, last: float) -> Literal["began", "ended"] | None:
        """What changed, given the time now and the last sign of life."""
        if self.silent_since is None:
            if now - last > self.threshold:
                self.silent_since = last
                return "began"
            return None
        if last > self.silent_since:
            return "ended"
        return None

    def end(self, last: float) -> float:
        """Close the silence; its length in seconds."""
        since = self.silent_since if self.silent_since is not None else last
        self.silent_since = None
        return max(0.0, last - since)


def _stack(thread_id: int | None) -> list[str]:
    # sys._current_frames is the one way to read another thread's stack.
    frame = sys._current_frames().get(thread_id) if thread_id is not None else None
    if frame is None:
        return []
    summary = traceback.extract_stack(frame)[-_MAX_FRAMES:]
    # File, line and function only: source lines and locals may hold secrets.
    return [f"{f.filename}:{f.lineno} in {f.name}" for f in summary]


class _Watcher:
    """The shared driver: a daemon thread that feeds :class:`_Silence`."""

    def __init__(
        self, kind: Literal["stall", "hang"], name: str, threshold: float
    ) -> None:
        self.kind = kind
        self.name = name
        self.threshold = threshold
        self.last = time.monotonic()
        self.thread_id: int | None = None
        self.stalls = 0
        self._state = _Silence(threshold)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self.last = time.monotonic()
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run,
            name=f"paios-reliability-{self.kind}-watchdog",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        if self._state.silent_since is not None:
            self._ended(time.monotonic())

    @property
    def running(self) -> bool:
        return self._thread is not None

    def _run(self) -> None:
        tick = min(self.threshold / 4, 0.25)
        while not self._stop.wait(tick):
            now, last = time.monotonic(), self.last
            change = self._state.observe(now, last)
            if change == "began":
                self._began(now, last)
            elif change == "ended":
                self._ended(last)

    def _began(self, now: float, last: float) -> None:
        from .._core.events import emit

        self.stalls += 1
        emit(
            "watchdog",
            self.kind,
            level="warning",
            subject=self.name,
            threshold=self.threshold,
            silent_for=round(now - last, 3),
            stack=_stack(self.thread_id),
        )

    def _ended(self, last: float) -> None:
        from .._core.events import emit
        from .._observe.metrics import get_metrics

        seconds = self._state.end(last)
        get_metrics().histogram(
            f"paios_reliability_watchdog_{self.kind}_seconds",
            f"Length of each {self.kind} noticed by a watchdog",
            ("watchdog",),
        ).observe(seconds, watchdog=self.name)
        emit(
            "watchdog",
            f"{self.kind}_ended",
            level="info",
            subject=self.name,
            seconds=round(seconds, 3),
        )


class _Pinger:
    """Sends ``WATCHDOG=1`` at most every half ``WatchdogSec``, from the caller."""

    __slots__ = ("_every", "_next")

    def __init__(self) -> None:
        from .sd_notify import watchdog_interval

        self._every = watchdog_interval()
        self._next = 0.0

    def __call__(self, now: float) -> None:
        if self._every is None or now < self._next:
            return
        from .sd_notify import sd_notify

        self._next = now + self._every
        sd_notify(watchdog=True)


class StallWatchdog:
    """Report an asyncio event loop that stops turning for ``threshold`` seconds.

    The loop runs a tiny callback every ``threshold / 4`` seconds (at most
    0.25 s); a daemon thread checks that it did. When the loop has not
    turned for ``threshold`` seconds (a handler called blocking code) it
    emits ``watchdog.stall`` (warning) once, with the loop thread's stack at
    that moment (``file:line in function`` lines, no source or locals), so the
    blocking function is named. When the loop turns again it emits
    ``watchdog.stall_ended`` with the stall's length and records it in the
    ``paios_reliability_watchdog_stall_seconds`` histogram. A stall is
    reported within ``threshold`` + 0.25 s.

    Under systemd with ``WatchdogSec=``, the loop's callback also sends
    ``WATCHDOG=1`` (every half period): a stalled loop stops the pings and
    systemd restarts the service.

    Use as ``async with StallWatchdog():`` or call :meth:`start` and
    :meth:`stop` from the loop. One watchdog watches one loop.

    Args:
        threshold: Seconds without a turn that count as a stall (> 0).
        name: Names the loop in events and metrics.
    """

    __slots__ = ("_handle", "_loop", "_ping", "_watcher")

    def __init__(self, threshold: float = 1.0, *, name: str = "event_loop") -> None:
        self._watcher = _Watcher(
            "stall", name, check_number("StallWatchdog", "threshold", threshold)
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._ping = _Pinger()

    @property
    def stalls(self) -> int:
        """How many stalls have been reported."""
        return self._watcher.stalls

    def start(self) -> None:
        """Start watching the running loop (idempotent).

        Raises:
            RuntimeError: If called outside a running event loop.
        """
        import asyncio

        if self._watcher.running:
            return
        self._loop = asyncio.get_running_loop()
        self._watcher.thread_id = threading.get_ident()
        self._turn()
        self._watcher.start()

    def stop(self) -> None:
        """Stop watching; an open stall is closed and recorded (idempotent)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._watcher.stop()

    def _turn(self) -> None:
        now = time.monotonic()
        self._watcher.last = now
        self._ping(now)
        assert self._loop is not None
        self._handle = self._loop.call_later(
            min(self._watcher.threshold / 4, 0.25), self._turn
        )

    async def __aenter__(self) -> StallWatchdog:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        w = self._watcher
        return f"StallWatchdog(threshold={w.threshold}, name={w.name!r}, stalls={w.stalls})"


class HangWatchdog:
    """Report a sync worker loop that stops calling :meth:`beat` for ``timeout`` s.

    Call :meth:`beat` once per iteration of the loop (it only stores a
    timestamp). A daemon thread emits ``watchdog.hang`` (warning) once when
    no beat came for ``timeout`` seconds, with the stack of the thread that
    beat last, and ``watchdog.hang_ended`` with the length when beats resume
    (also recorded in ``paios_reliability_watchdog_hang_seconds``). Under
    systemd with ``WatchdogSec=``, :meth:`beat` also sends ``WATCHDOG=1``
    (every half period), so a hung worker stops the pings.

    Use as ``with HangWatchdog(60, name="ingest") as wd:`` or
    :meth:`start` / :meth:`stop`. :meth:`beat` may be called from any thread.

    Args:
        timeout: Seconds without a beat that count as a hang (> 0).
        name: Names the worker in events and metrics.
    """

    __slots__ = ("_ping", "_watcher")

    def __init__(self, timeout: float, *, name: str = "worker") -> None:
        self._watcher = _Watcher(
            "hang", name, check_number("HangWatchdog", "timeout", timeout)
        )
        self._ping = _Pinger()

    @property
    def hangs(self) -> int:
        """How many hangs have been reported."""
        return self._watcher.stalls

    def beat(self) -> None:
        """Record a sign of life from the calling thread."""
        now = time.monotonic()
        self._watcher.thread_id = threading.get_ident()
        self._watcher.last = now
        self._ping(now)

    def start(self) -> None:
        """Start watching (idempotent); counts as a beat from the calling thread."""
        self._watcher.start()
        self.beat()

    def stop(self) -> None:
        """Stop watching; an open hang is closed and recorded (idempotent)."""
        self._watcher.stop()

    def __enter__(self) -> HangWatchdog:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        w = self._watcher
        return f"HangWatchdog(timeout={w.threshold}, name={w.name!r}, hangs={w.stalls})"
