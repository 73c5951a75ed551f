"""Crash handler: every way a process can die leaves a record in the event store.

:func:`install_crash_handler` records

- uncaught exceptions from ``sys.excepthook`` (main thread),
  ``threading.excepthook`` (other threads: Python would print and carry on,
  the process may even exit 0) and an asyncio loop exception handler, each with
  its traceback, the trace context and :func:`audit_event`;
- SIGTERM: recorded, then the process exits cleanly (``SystemExit(143)``, so
  ``atexit`` handlers, including the store's final flush, run);
- deaths that run no Python code at all (SIGKILL, the OOM killer,
  ``os._exit``, a segfault): a *running* marker is written at start and closed
  at a clean exit; the next start of the same service on the same host finds
  markers of processes that are gone and records each as a crash, with the
  ``faulthandler`` output of that run attached when there is one.

Every hook chains to the one installed before it. Where that is Python's own
default (which prints the traceback, and the secrets in the exception text,
to stderr), the handler prints the same traceback redacted instead. Records
never hold a secret: the traceback and the audit record are redacted.
Installing twice with the same store and service returns the same handler.
"""

from __future__ import annotations

import atexit
import contextlib
import faulthandler
import os
import signal
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable
from types import FrameType, TracebackType
from typing import IO, TYPE_CHECKING, Any

from .._core.events import emit
from .eventstore import EventStore
from .stored_event import StoredEvent

if TYPE_CHECKING:
    import asyncio

__all__ = ["CrashHandler", "install_crash_handler"]

_MAX_TRACEBACK = 20_000
_MAX_FAULT = 64_000
_lock = threading.RLock()
_current: CrashHandler | None = None

SignalHandler = Callable[[int, FrameType | None], Any] | int | None


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def _proc_start(pid: int) -> str | None:
    """Kernel start time of ``pid`` (Linux), to tell a reused pid from the original."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            data = fh.read()
    except OSError:
        return None
    # Field 2 (comm) may contain spaces and parentheses: split after the last ')'.
    fields = data.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            fields = fh.read().rsplit(")", 1)[-1].split()
    except OSError:
        return False
    return bool(fields) and fields[0] in ("Z", "X")


def _format_traceback(
    exc_type: type[BaseException] | None,
    exc: BaseException | None,
    tb: TracebackType | None,
) -> str:
    from .._core.redaction import redacted_traceback

    if exc is None:
        return f"<no exception for {exc_type!r}>"
    return redacted_traceback(exc, tb, limit=_MAX_TRACEBACK)


def _print_redacted(header: str, exc: BaseException, tb: TracebackType | None) -> None:
    """What Python's own hook prints, with the traceback redacted."""
    with contextlib.suppress(Exception):
        stream = sys.stderr
        if stream is not None:
            stream.write(header + _format_traceback(type(exc), exc, tb))
            stream.flush()


class CrashHandler:
    """The installed crash handler (see :func:`install_crash_handler`).

    Attributes:
        store: Where crashes are recorded.
        service: The service name of this process.
        run_id: Id of this process's *running* marker (``None`` until written).
        fault_path: The file faulthandler writes into, if enabled by us.
        previous_crashes: Unclean exits of earlier runs found at start.
    """

    def __init__(
        self,
        store: EventStore,
        service: str,
        *,
        faulthandler_dir: str | None,
        enable_faulthandler: bool | None,
        signals: Iterable[int],
    ) -> None:
        self.store = store
        self.service = service
        self.run_id: int | None = None
        self.fault_path: str | None = None
        self.previous_crashes: list[StoredEvent] = []
        self._fault_file: IO[str] | None = None
        self._faulthandler_dir = faulthandler_dir
        self._enable_faulthandler = enable_faulthandler
        self._signals = tuple(signals)
        self._prev_excepthook: Callable[..., Any] | None = None
        self._prev_threading_hook: Callable[..., Any] | None = None
        self._prev_signals: dict[int, SignalHandler] = {}
        self._status = "exited"
        self._installed = False
        self._pid = os.getpid()

    # -- install / uninstall -------------------------------------------------------

    def _install(self) -> None:
        self._find_unclean_exits()
        self._setup_faulthandler()
        self._write_running_marker()
        self._prev_excepthook = sys.excepthook
        sys.excepthook = self._excepthook
        self._prev_threading_hook = threading.excepthook
        threading.excepthook = self._threading_hook
        if threading.current_thread() is threading.main_thread():
            for signum in self._signals:
                try:
                    self._prev_signals[signum] = signal.getsignal(signum)
                    signal.signal(signum, self._on_signal)
                except (ValueError, OSError):  # pragma: no cover - exotic signal
                    self._prev_signals.pop(signum, None)
        aio = sys.modules.get("asyncio")  # never import asyncio just for this
        if aio is not None:
            with contextlib.suppress(RuntimeError):
                self.watch_loop(aio.get_running_loop())
        atexit.register(self._at_exit)
        self._installed = True
        emit(
            "crash_handler",
            "installed",
            level="debug",
            subject=self.service,
            run_id=self.run_id,
            fault_path=self.fault_path,
            previous_crashes=len(self.previous_crashes),
        )

    def uninstall(self) -> None:
        """Restore the previous hooks and close this run's marker as a clean exit.

        Idempotent. Hooks that someone else replaced after us are left alone.
        """
        global _current  # noqa: PLW0603
        with _lock:
            if not self._installed:
                return
            self._installed = False
            if sys.excepthook == self._excepthook:
                sys.excepthook = self._prev_excepthook or sys.__excepthook__
            if threading.excepthook == self._threading_hook:
                threading.excepthook = (
                    self._prev_threading_hook or threading.__excepthook__
                )
            if threading.current_thread() is threading.main_thread():
                for signum, previous in self._prev_signals.items():
                    with contextlib.suppress(ValueError, OSError, TypeError):
                        if signal.getsignal(signum) == self._on_signal:
                            signal.signal(
                                signum,
                                previous if previous is not None else signal.SIG_DFL,
                            )
            atexit.unregister(self._at_exit)
            self._close_run("exited")
            if _current is self:
                _current = None

    # -- unclean exits of earlier runs -----------------------------------------------

    def _find_unclean_exits(self) -> None:
        host = socket.gethostname()
        boot = _boot_id()

        def candidates(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return conn.execute(
                "SELECT id, pid, boot_id, proc_start, started, fault_path FROM runs "
                "WHERE service = ? AND host = ? AND status = 'running'",
                (self.service, host),
            ).fetchall()

        for run_id, pid, run_boot, run_start, started, fault_path in self.store._run(
            candidates, write=False
        ):
            if boot is not None and run_boot is not None and run_boot != boot:
                reason = "the machine rebooted while it ran"
            elif (
                pid != os.getpid()
                and _pid_alive(pid)
                and not _is_zombie(pid)
                and (run_start is None or _proc_start(pid) == run_start)
            ):
                continue  # another instance of the service, still running
            elif pid == os.getpid() and _proc_start(pid) == run_start:
                continue  # ours (installed again after an uninstall)
            else:
                reason = "the process ended without a clean exit"
            self._record_unclean(run_id, pid, started, fault_path, reason)

    def _record_unclean(
        self, run_id: int, pid: int, started: float, fault_path: str | None, reason: str
    ) -> None:
        now = time.time()

        def claim(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE runs SET status = 'crashed', ended = ? "
                "WHERE id = ? AND status = 'running'",
                (now, run_id),
            )
            return cursor.rowcount == 1

        # Two instances starting at once both see the marker; one claims it.
        if not self.store._run(claim, write=True):
            return
        fault = _read_fault(fault_path)
        metadata: dict[str, Any] = {
            "pid": pid,
            "run_id": run_id,
            "started": started,
            "ran_seconds": round(now - started, 3),
            "reason": reason,
            "host": socket.gethostname(),
            "detected_by_pid": os.getpid(),
        }
        if fault:
            metadata["faulthandler"] = fault
        self.store._emit_now(
            "crash",
            "unclean_exit",
            level="critical",
            service=self.service,
            metadata=metadata,
        )
        if fault_path:
            with contextlib.suppress(OSError):
                os.unlink(fault_path)
        found = self.store.query(
            category="crash", action="unclean_exit", service=self.service, limit=20
        )
        for event in reversed(found):
            if event.metadata.get("run_id") == run_id:
                self.previous_crashes.append(event)
                break
        emit(
            "crash_handler",
            "unclean_exit_found",
            level="error",
            subject=self.service,
            pid=pid,
            run_id=run_id,
            reason=reason,
        )

    # -- faulthandler / marker -----------------------------------------------------------

    def _setup_faulthandler(self) -> None:
        wanted = self._enable_faulthandler
        if wanted is None:
            wanted = not faulthandler.is_enabled()
        if not wanted:
            return
        directory = self._faulthandler_dir or os.path.join(
            os.path.dirname(os.path.abspath(self.store.path)), "crash"
        )
        try:
            os.makedirs(directory, exist_ok=True)
            safe = "".join(
                c if c.isalnum() or c in "-_." else "_" for c in self.service
            )
            path = os.path.join(directory, f"{safe}.{os.getpid()}.faulthandler.log")
            fh = open(path, "w", encoding="utf-8")  # noqa: SIM115 - must stay open for the process lifetime
            faulthandler.enable(file=fh, all_threads=True)
        except (OSError, ValueError, RuntimeError) as exc:
            emit(
                "crash_handler",
                "faulthandler_unavailable",
                level="warning",
                subject=self.service,
                exc=exc,
            )
            return
        self._fault_file = fh
        self.fault_path = path

    def _write_running_marker(self) -> None:
        pid = os.getpid()
        values = (
            self.service,
            socket.gethostname(),
            pid,
            _boot_id(),
            _proc_start(pid),
            time.time(),
            self.fault_path,
        )

        def insert(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "INSERT INTO runs (service, host, pid, boot_id, proc_start, started, "
                "status, fault_path) VALUES (?, ?, ?, ?, ?, ?, 'running', ?)",
                values,
            )
            return int(cursor.lastrowid or 0)

        self.run_id = self.store._run(insert, write=True)

    def _close_run(self, status: str) -> None:
        run_id = self.run_id
        if run_id is None or os.getpid() != self._pid:
            return  # a forked child must not close its parent's marker
        self.run_id = None

        def update(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE runs SET status = ?, ended = ? WHERE id = ? AND status = 'running'",
                (status, time.time(), run_id),
            )

        try:
            self.store._run(update, write=True)
        except Exception as exc:  # noqa: BLE001 - at exit: record what we can
            emit(
                "crash_handler",
                "marker_not_closed",
                level="error",
                subject=self.service,
                exc=exc,
            )
            return
        if self._fault_file is not None:
            with contextlib.suppress(Exception):
                if faulthandler.is_enabled():
                    faulthandler.disable()
                self._fault_file.close()
            self._fault_file = None
            if self.fault_path and os.path.exists(self.fault_path):
                with contextlib.suppress(OSError):
                    if os.path.getsize(self.fault_path) == 0:
                        os.unlink(self.fault_path)

    def _at_exit(self) -> None:
        if not self._installed:
            return
        self._installed = False
        if sys.excepthook == self._excepthook:
            sys.excepthook = self._prev_excepthook or sys.__excepthook__
        self._close_run(self._status)
        with contextlib.suppress(Exception):
            self.store.flush(timeout=10.0)

    # -- recording ---------------------------------------------------------------------

    def record_exception(
        self,
        exc: BaseException,
        *,
        action: str = "uncaught_exception",
        level: str = "critical",
        tb: TracebackType | None = None,
        **context: Any,
    ) -> None:
        """Record ``exc`` as a crash now (written before this returns).

        Never raises. Used by every hook; call it yourself for a failure that
        ends a process your own way.
        """
        try:
            from .._core.taxonomy import audit_event
            from .._core.trace import current_trace

            trace = dict(getattr(exc, "_paios_trace", None) or current_trace())
            audit = audit_event(exc, service=self.service, **context)
            audit.pop("event", None)
            for key in ("trace_id", "span_id"):  # columns of their own
                audit.pop(key, None)
            audit["traceback"] = _format_traceback(
                type(exc), exc, tb if tb is not None else exc.__traceback__
            )
            audit["pid"] = os.getpid()
            audit["run_id"] = self.run_id
            self.store._emit_now(
                "crash",
                action,
                level=level,
                service=self.service,
                trace_id=trace.get("trace_id"),
                span_id=trace.get("span_id"),
                metadata=audit,
            )
            emit(
                "crash_handler",
                "recorded",
                level="error",
                subject=self.service,
                kind=action,
                error_type=audit.get("error_type"),
            )
        except Exception as failure:  # noqa: BLE001 - a crash record must never raise
            with contextlib.suppress(Exception):
                import logging

                from .._core.event_log import log_redacted

                log_redacted(
                    logging.getLogger("paios_reliability.crash"),
                    logging.ERROR,
                    f"could not record a crash of {self.service}",
                    failure,
                )

    def _excepthook(
        self,
        exc_type: type[BaseException],
        exc: BaseException,
        tb: TracebackType | None,
    ) -> None:
        if not issubclass(exc_type, KeyboardInterrupt):
            self._status = "exception"
            self.record_exception(
                exc, action="uncaught_exception", tb=tb, thread="MainThread"
            )
        else:
            self._status = "interrupted"
        previous = self._prev_excepthook or sys.__excepthook__
        if previous is sys.__excepthook__ and not issubclass(
            exc_type, KeyboardInterrupt
        ):
            _print_redacted("", exc, tb)
            return
        previous(exc_type, exc, tb)

    def _threading_hook(self, args: threading.ExceptHookArgs) -> None:
        exc = args.exc_value
        if exc is not None and not isinstance(exc, SystemExit):
            name = args.thread.name if args.thread is not None else "?"
            self.record_exception(
                exc,
                action="thread_exception",
                level="error",
                tb=args.exc_traceback,
                thread=name,
            )
        previous = self._prev_threading_hook or threading.__excepthook__
        if (
            previous is threading.__excepthook__
            and exc is not None
            and not isinstance(exc, SystemExit)
        ):
            thread = args.thread.name if args.thread is not None else None
            _print_redacted(
                f"Exception in thread {thread or threading.get_ident()}:\n",
                exc,
                args.exc_traceback,
            )
            return
        previous(args)

    def asyncio_handler(
        self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]
    ) -> None:
        """An asyncio exception handler that records, then chains.

        ``watch_loop`` installs it; it is public for loops you configure yourself.
        """
        exc = context.get("exception")
        if isinstance(exc, BaseException):
            task = context.get("task") or context.get("future")
            self.record_exception(
                exc,
                action="asyncio_exception",
                level="error",
                message=str(context.get("message", "")),
                task=repr(task)[:300] if task is not None else None,
            )
        else:
            with contextlib.suppress(Exception):
                self.store._emit_now(
                    "crash",
                    "asyncio_error",
                    level="error",
                    service=self.service,
                    metadata={"message": str(context.get("message", ""))[:2000]},
                )
        previous = getattr(loop, "_paios_previous_handler", None)
        if previous is not None:
            previous(loop, context)
        else:
            _log_asyncio_redacted(context)

    def watch_loop(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Record unhandled exceptions of ``loop`` (default: the running loop).

        Chains to the loop's previous handler (or its default one).
        """
        import asyncio

        target = loop if loop is not None else asyncio.get_running_loop()
        current = target.get_exception_handler()
        if getattr(current, "__self__", None) is self:
            return
        target._paios_previous_handler = current  # type: ignore[attr-defined]
        target.set_exception_handler(self.asyncio_handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        self._status = "terminated"
        with contextlib.suppress(Exception):
            self.store._emit_now(
                "lifecycle",
                name.lower(),
                level="warning",
                service=self.service,
                metadata={"pid": os.getpid(), "run_id": self.run_id, "signal": name},
            )
        emit(
            "crash_handler",
            "signal",
            level="warning",
            subject=self.service,
            signal=name,
        )
        previous = self._prev_signals.get(signum)
        if callable(previous):
            previous(signum, frame)
            return
        if previous == signal.SIG_IGN:
            return
        # Exit like the default action would, but through SystemExit so that
        # finally blocks and atexit handlers (the store's flush) run.
        raise SystemExit(128 + signum)

    def __repr__(self) -> str:
        return f"CrashHandler(service={self.service!r}, store={self.store.path!r})"


def _log_asyncio_redacted(context: dict[str, Any]) -> None:
    """``loop.default_exception_handler``, redacted.

    The default prints the exception's traceback and the reprs of the task,
    future or handle, which show the arguments of the callback.
    """
    import logging

    from .._core.event_log import log_redacted

    message = str(context.get("message") or "Unhandled exception in event loop")
    lines = [message]
    for key in sorted(context):
        if key not in ("message", "exception"):
            try:
                value = repr(context[key])
            except Exception:  # noqa: BLE001 - a hostile repr still gets a line
                value = "<unrepresentable>"
            lines.append(f"{key}: {value}")
    exc = context.get("exception")
    with contextlib.suppress(Exception):
        log_redacted(
            logging.getLogger("asyncio"),
            logging.ERROR,
            "\n".join(lines),
            exc if isinstance(exc, BaseException) else None,
        )


def _read_fault(path: str | None) -> str | None:
    if not path:
        return None
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read(_MAX_FAULT + 1)
    except OSError:
        return None
    text = text.strip()
    if len(text) > _MAX_FAULT:
        text = text[:_MAX_FAULT] + "\n..."
    return text or None


def install_crash_handler(
    store: EventStore,
    *,
    service: str,
    faulthandler_dir: str | os.PathLike[str] | None = None,
    enable_faulthandler: bool | None = None,
    signals: Iterable[int] = (signal.SIGTERM,),
) -> CrashHandler:
    """Record every way this process can die in ``store``.

    Call it once, early in ``main()``. It first looks for runs of ``service``
    on this host that died without a clean exit and records each as a crash
    (see :meth:`EventStore.last_crash`), then writes this run's *running*
    marker, enables ``faulthandler`` into a per-run file, and installs the
    hooks (chained to the previous ones).

    Args:
        store: Where to record (usually shared by all services of a host).
        service: This service's name (markers are matched by it and the host).
        faulthandler_dir: Where faulthandler files go (default: ``crash/``
            beside the store).
        enable_faulthandler: ``True``: always; ``False``: never; ``None``:
            unless faulthandler is already enabled (e.g. by pytest or
            ``python -X faulthandler``), which we then leave alone.
        signals: Signals recorded and turned into a clean exit
            (``SystemExit(128 + signum)``, running ``atexit``). Installed only
            when called from the main thread.

    Returns:
        The :class:`CrashHandler`. Calling again with the same store path and
        service returns the same one; with others, the old one is uninstalled
        first.

    Raises:
        ReliabilityError: The store cannot be opened (the handler needs it at
            start, unlike :meth:`EventStore.emit`).
    """
    global _current  # noqa: PLW0603
    with _lock:
        current = _current
        if current is not None and current._installed and current._pid == os.getpid():
            if (
                os.path.abspath(current.store.path) == os.path.abspath(store.path)
                and current.service == service
            ):
                return current
            current.uninstall()
        handler = CrashHandler(
            store,
            service,
            faulthandler_dir=os.fspath(faulthandler_dir)
            if faulthandler_dir is not None
            else None,
            enable_faulthandler=enable_faulthandler,
            signals=signals,
        )
        handler._install()
        _current = handler
        return handler
