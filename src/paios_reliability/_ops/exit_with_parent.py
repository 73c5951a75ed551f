"""Make a process exit when the process that started it dies.

A stdio MCP server, a hook worker or any helper whose only purpose is to
serve its parent should not outlive it: when the client is killed (``kill
-9``, an OOM kill, a crashed IDE) its children are re-parented to init or a
subreaper and keep running, holding memory, file locks and sockets.
:func:`exit_with_parent` turns the parent's death into a normal, clean exit
of this process: ``atexit`` handlers and ``finally`` blocks run, events are
flushed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from types import FrameType

from .._core.checks import check_number

__all__ = ["ParentWatch", "exit_with_parent"]

EXIT_CODE = 128 + signal.SIGTERM
"""Exit status of a process that ended because its parent died (as for SIGTERM)."""

_PR_SET_PDEATHSIG = 1
_lock = threading.Lock()
_active: ParentWatch | None = None


class ParentWatch:
    """A running :func:`exit_with_parent` watch; :meth:`stop` ends it.

    Attributes:
        parent_pid: The pid of the parent being watched.
        interval: Seconds between two checks of the parent.
        grace: Seconds the process gets to exit cleanly before it is ended
            with ``os._exit``.
    """

    __slots__ = ("_fired", "_stopped", "_thread", "grace", "interval", "parent_pid")

    def __init__(self, parent_pid: int, interval: float, grace: float) -> None:
        self.parent_pid = parent_pid
        self.interval = interval
        self.grace = grace
        self._stopped = threading.Event()
        self._fired = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="paios-reliability-parent-watch", daemon=True
        )

    @property
    def parent_gone(self) -> bool:
        """Whether the parent has been seen dead (this process is exiting)."""
        return self._fired.is_set() or os.getppid() != self.parent_pid

    @property
    def active(self) -> bool:
        """Whether the watch still runs."""
        return not self._stopped.is_set()

    def stop(self) -> None:
        """Stop watching (idempotent). The process no longer exits with its parent.

        A parent-death signal set with ``prctl`` stays set: the kernel offers
        no way to ask whether it was ours to clear, and clearing it is harmless
        only for the watch that set it, so it is cleared here too.
        """
        global _active  # noqa: PLW0603 - the process has one parent, so one watch
        self._stopped.set()
        with _lock:
            if _active is self:
                _active = None
        _set_pdeathsig(0)

    def __enter__(self) -> ParentWatch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            if os.getppid() != self.parent_pid:
                self._fire()
                return

    def _fire(self, *, signal_self: bool = True) -> None:
        if self._fired.is_set() or self._stopped.is_set():
            return
        self._fired.set()
        from .._core.events import emit

        emit(
            "process",
            "parent_gone",
            level="warning",
            subject=str(self.parent_pid),
            parent_pid=self.parent_pid,
            pid=os.getpid(),
            grace=self.grace,
        )
        if signal_self:
            # The main thread owns the exit, and only a signal aimed at it
            # interrupts a blocking call there (a process-wide one may land
            # on this thread and wait until the main thread wakes up).
            _signal_main_thread(signal.SIGTERM)
        backstop = threading.Thread(
            target=self._backstop, name="paios-reliability-exit-backstop", daemon=True
        )
        backstop.start()

    def _backstop(self) -> None:
        # A main thread stuck in C code never runs the handler; a process that
        # should be gone must not linger for that.
        if self._stopped.wait(self.grace):
            return
        from .._core.events import emit

        emit(
            "process",
            "exit_forced",
            level="error",
            subject=str(self.parent_pid),
            pid=os.getpid(),
            grace=self.grace,
        )
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os._exit(EXIT_CODE)

    def __repr__(self) -> str:
        return (
            f"ParentWatch(parent_pid={self.parent_pid}, interval={self.interval}, "
            f"active={self.active})"
        )


def exit_with_parent(
    *, interval: float = 0.5, grace: float = 10.0, pdeathsig: bool = True
) -> ParentWatch:
    """Exit this process cleanly, within ~``interval`` s, when its parent dies.

    The parent is the process's parent at the time of the call. A daemon
    thread checks every ``interval`` seconds whether this process has been
    re-parented (to init or a subreaper); on Linux the kernel is also asked
    to send ``SIGTERM`` the moment the parent dies (``PR_SET_PDEATHSIG``), so
    the exit does not wait for the next check. On the parent's death the
    process gets ``SIGTERM``: with no handler of its own (the default
    disposition, checked at this call from the main thread) the handler
    installed here raises ``SystemExit(143)`` in the main thread, so
    ``atexit`` handlers and ``finally`` blocks run; an event loop's handler
    (as :func:`~paios_reliability.mcp.run_stdio` installs) stops the loop
    instead. If the process is still alive ``grace`` seconds later (the main
    thread blocked in C code), it ends with ``os._exit(143)``.

    A ``paios_reliability.process.parent_gone`` event (warning) is emitted
    first, and ``process.exit_forced`` (error) before a forced exit.

    The process has one parent, so there is one watch: calling this again
    while a watch runs returns that watch unchanged. Thread-safe.

    Linux caveat: the kernel's parent-death signal fires when the parent
    *thread* that started this process exits, even if the parent process
    lives on. A parent that starts children from short-lived threads must
    pass ``pdeathsig=False`` (the re-parenting check alone is exact).

    Args:
        interval: Seconds between checks of the parent (> 0). Sets how late
            the exit can be where the kernel's signal is not used.
        grace: Seconds allowed for the clean exit before the hard one (> 0).
        pdeathsig: Use ``PR_SET_PDEATHSIG`` on Linux.

    Returns:
        The running :class:`ParentWatch`.

    Raises:
        ValueError: If ``interval`` or ``grace`` is not a positive finite
            number.
    """
    global _active  # noqa: PLW0603 - one watch per process
    for label, value in (("interval", interval), ("grace", grace)):
        check_number("exit_with_parent", label, value)
    with _lock:
        if _active is not None and _active.active:
            return _active
        watch = ParentWatch(os.getppid(), float(interval), float(grace))
        _active = watch
    _install_sigterm_exit(watch)
    if pdeathsig:
        _set_pdeathsig(signal.SIGTERM)
    watch._thread.start()
    # The parent may have died before the kernel signal was armed.
    if os.getppid() != watch.parent_pid:
        watch._fire()
    return watch


def _install_sigterm_exit(watch: ParentWatch) -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if os.getppid() != watch.parent_pid:
            watch._fire(signal_self=False)
        raise SystemExit(EXIT_CODE)

    signal.signal(signal.SIGTERM, on_sigterm)


def _signal_main_thread(signum: int) -> None:
    ident = threading.main_thread().ident
    if hasattr(signal, "pthread_kill") and ident is not None:
        try:
            signal.pthread_kill(ident, signum)
        except (ProcessLookupError, OSError):
            pass
        else:
            return
    os.kill(os.getpid(), signum)


def _set_pdeathsig(signum: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False
