"""The two children that perform the process lifecycle's operations: one selector (sync), one protocol (asyncio).

:func:`~paios_reliability._core.effects.run_effects` and
:func:`~paios_reliability._core.effects.arun_effects` hand each operation the
lifecycle yields to :meth:`_SyncChild.perform` or :meth:`_AsyncChild.perform`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from .process_call import _Call
from .process_group import _PROC, _group_alive, _signal_group
from .process_lifecycle import (
    _DRAIN,
    _POLL_FIRST,
    _POLL_MAX,
    _Drain,
    _Op,
    _Poll,
    _Pump,
    _Settled,
    _spawn_failed,
)

if TYPE_CHECKING:
    import asyncio
    import selectors

__all__: list[str] = []


_READ_CHUNK = 1 << 16
_WRITE_CHUNK = 1 << 20


# -- sync driver ----------------------------------------------------------------------


def _selector() -> selectors.BaseSelector:
    import selectors

    # poll() needs no fd of its own (epoll would add one per call).
    if hasattr(selectors, "PollSelector"):
        return selectors.PollSelector()
    return selectors.SelectSelector()  # pragma: no cover - no poll()


class _SyncChild:
    """A started child and its pipes, pumped with one selector (no threads).

    Built empty, then :meth:`start`-ed inside the caller's ``try``: a
    ``KeyboardInterrupt`` landing anywhere after the fork (inside ``Popen``,
    in the setup after it) still reaches :meth:`close`, which then kills the
    group; nothing is left running or unreaped.
    """

    pid: int
    proc: subprocess.Popen[bytes]

    def __init__(self) -> None:
        # What close() must end: set from the fork on, None when nothing runs.
        self._spawned: subprocess.Popen[bytes] | None = None
        self._selector = _selector()  # poll(): no fd of its own to leak
        self._chunks: dict[IO[bytes], list[bytes]] = {}
        self._input: memoryview | None = None
        self._offset = 0
        self._pidfd: int | None = None
        self.settled = _Settled()

    def start(self, call: _Call) -> None:
        import selectors

        # The object exists before Popen runs, so the pid it gets at the fork
        # is known to close() even when an interrupt ends Popen early.
        proc: subprocess.Popen[bytes] = subprocess.Popen.__new__(subprocess.Popen)
        self._spawned = self.proc = proc
        before = _children_of_this_thread()
        try:
            subprocess.Popen.__init__(proc, call.argv, **call.popen)
        except OSError as exc:
            # Never forked, or the failed child was reaped by Popen: nothing runs.
            if proc.returncode is not None or proc.pid is None:
                self._spawned = None
            _spawn_failed(call, exc)
            raise
        except BaseException:
            if getattr(proc, "pid", None) is None:
                # An interrupt raised as the fork returned, before Popen stored
                # the pid: the child runs all the same. It is the one new child
                # of this thread.
                after = _children_of_this_thread()
                if before is not None and after is not None:
                    new = after - before
                    if len(new) == 1:
                        proc.pid = new.pop()
            raise
        self.pid = proc.pid
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                self._chunks[stream] = []
                self._selector.register(stream, selectors.EVENT_READ)
        if proc.stdin is not None:
            data = call.data if call.data is not None else b""
            if len(data):
                os.set_blocking(proc.stdin.fileno(), False)
                self._input = memoryview(data)
                self._selector.register(proc.stdin, selectors.EVENT_WRITE)
            else:
                self._close(proc.stdin)
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # pragma: no cover - not Linux, or too old
            self._pidfd = None  # the leader is polled instead
        else:
            self._selector.register(self._pidfd, selectors.EVENT_READ)

    def perform(self, op: _Op) -> Any:
        if isinstance(op, _Poll):
            return self.proc.poll()
        if isinstance(op, _Pump):
            return self._pump(op.seconds, op.until_exit)
        return self._drain(op.seconds)

    def _pump(self, seconds: float | None, until_exit: bool) -> int | None:
        end = None if seconds is None else time.monotonic() + seconds
        backoff = _POLL_FIRST
        while True:
            if self.proc.returncode is not None and until_exit:
                return self.proc.returncode
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                return self.proc.poll()
            wait = left
            if self._pidfd is None and self.proc.returncode is None:
                # No exit notification: poll the leader, like Popen.wait does.
                wait = backoff if left is None else min(backoff, left)
                backoff = min(backoff * 2, _POLL_MAX)
            if self._selector.get_map():
                ready = self._selector.select(wait)
                for key, _ in ready:
                    self._service(key.fileobj)
            elif wait is None:  # pragma: no cover - nothing to watch at all
                self.proc.wait()
            else:
                time.sleep(wait)
            if self._pidfd is None:
                self.proc.poll()

    def _service(self, fileobj: Any) -> None:
        if isinstance(fileobj, int):  # the pidfd
            # The leader has exited: collect its status; the pidfd has done its job.
            self.proc.poll()
            self._forget_pidfd()
        elif fileobj is self.proc.stdin:
            self._feed()
        else:
            data = os.read(fileobj.fileno(), _READ_CHUNK)
            if data:
                self._chunks[fileobj].append(data)
            else:
                self._close(fileobj)

    def _feed(self) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        assert self._input is not None
        try:
            self._offset += os.write(
                stdin.fileno(), self._input[self._offset : self._offset + _WRITE_CHUNK]
            )
        except BlockingIOError:
            return
        except BrokenPipeError:
            # The child stopped reading: not an error, as in subprocess.
            self._offset = len(self._input)
        if self._offset >= len(self._input):
            self._close(stdin)

    def _drain(self, seconds: float) -> tuple[bytes | None, bytes | None]:
        if self.proc.stdin is not None:
            self._close(self.proc.stdin)
        self._forget_pidfd()
        end = time.monotonic() + seconds
        while self._selector.get_map() and (left := end - time.monotonic()) > 0:
            for key, _ in self._selector.select(left):
                self._service(key.fileobj)
        outputs: list[bytes | None] = []
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is None:
                outputs.append(None)
            else:
                outputs.append(b"".join(self._chunks.pop(stream, [])))
                self._close(stream)
        return outputs[0], outputs[1]

    def _close(self, stream: IO[bytes]) -> None:
        if stream.closed:
            return
        with contextlib.suppress(KeyError):
            self._selector.unregister(stream)
        with contextlib.suppress(BrokenPipeError):
            stream.close()

    def _forget_pidfd(self) -> None:
        if self._pidfd is not None:
            self._selector.unregister(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None

    def close(self) -> None:
        """Release everything; a group the lifecycle did not settle is killed."""
        proc = self._spawned
        if proc is not None:
            for name in ("stdin", "stdout", "stderr"):
                stream = getattr(proc, name, None)
                if stream is not None:
                    self._close(stream)
        self._forget_pidfd()
        self._selector.close()
        if not self.settled.done and proc is not None:
            # Interrupted outside a wait the lifecycle could catch: no grace left.
            _kill_unsettled(proc)


def _children_of_this_thread() -> set[int] | None:
    """Pids of the living (or unreaped) children this thread forked; None without /proc."""
    import threading

    try:
        with open(
            f"{_PROC}/self/task/{threading.get_native_id()}/children", "rb"
        ) as fh:
            return {int(pid) for pid in fh.read().split()}
    except (
        OSError,
        ValueError,
    ):  # pragma: no cover - not Linux, or no CONFIG_PROC_CHILDREN
        return None


def _kill_unsettled(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the group of ``proc``; wait (bounded) until it is gone and reaped."""
    pid: int | None = getattr(proc, "pid", None)
    if pid is None:
        return  # interrupted before the fork: nothing runs
    _signal_group(pid, signal.SIGKILL)
    if proc.returncode is None:
        # Not reaped, so the pid is still this child's. Interrupted before its
        # setsid(), it leads no group yet: the group signal missed it.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=_DRAIN)
    # SIGKILL is not instant: members orphaned to us (PID 1, subreaper) turn
    # into zombies of ours only once the kernel has torn them down.
    until = time.monotonic() + _DRAIN
    while _group_alive(pid, leader_reaped=proc.returncode is not None):
        if time.monotonic() >= until:
            break
        time.sleep(_POLL_FIRST)


# -- asyncio driver -------------------------------------------------------------------


@functools.cache
def _protocol_class() -> Callable[[_AsyncChild], asyncio.SubprocessProtocol]:
    # Built on first use: asyncio is imported only by asyncio callers.
    import asyncio

    class Protocol(asyncio.SubprocessProtocol):
        """Collects output and reports the leader's exit into an :class:`_AsyncChild`.

        Its own protocol rather than asyncio's streams: ``Process.wait()``
        also waits for the pipes (3.12+), and a grandchild holding them must
        not keep us from seeing the leader exit.
        """

        def __init__(self, child: _AsyncChild) -> None:
            self.child = child

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.SubprocessTransport)
            for fd in (1, 2):
                if transport.get_pipe_transport(fd) is not None:
                    self.child.chunks[fd] = []
                    self.child.open.add(fd)
            self.child.check_closed()

        def pipe_data_received(self, fd: int, data: bytes | bytearray) -> None:
            self.child.chunks[fd].append(bytes(data))

        def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
            self.child.open.discard(fd)
            self.child.check_closed()

        def process_exited(self) -> None:
            if not self.child.exited.done():
                self.child.exited.set_result(None)

    return Protocol


class _AsyncChild:
    """A started child under the running event loop; its output collected by a protocol."""

    transport: asyncio.SubprocessTransport

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.chunks: dict[int, list[bytes]] = {}
        self.open: set[int] = set()
        self.settled = _Settled()

    def check_closed(self) -> None:
        if not self.open and not self.closed.done():
            self.closed.set_result(None)

    @classmethod
    async def spawn(cls, call: _Call) -> _AsyncChild:
        import asyncio

        loop = asyncio.get_running_loop()
        child = cls(loop)
        try:
            transport, _ = await loop.subprocess_exec(
                lambda: _protocol_class()(child), *call.argv, **call.popen
            )
        except OSError as exc:
            _spawn_failed(call, exc)
            raise
        child.transport = transport
        child.pid = transport.get_pid()
        stdin = transport.get_pipe_transport(0)
        if stdin is not None:
            assert isinstance(stdin, asyncio.WriteTransport)
            if call.data is not None and len(call.data):
                # The transport buffers what the pipe cannot take yet, and
                # closes only once the buffer is flushed.
                stdin.write(call.data)
            stdin.close()
        return child

    pid: int

    async def perform(self, op: _Op) -> Any:
        import asyncio

        if isinstance(op, _Pump):
            if op.until_exit:
                await asyncio.wait([self.exited], timeout=op.seconds)
            else:
                await asyncio.sleep(op.seconds or 0.0)
        elif isinstance(op, _Drain):
            stdin = self.transport.get_pipe_transport(0)
            if isinstance(stdin, asyncio.WriteTransport) and not stdin.is_closing():
                stdin.abort()  # nobody is left to read it
            if not self.closed.done():
                await asyncio.wait([self.closed], timeout=op.seconds)
            return tuple(
                b"".join(self.chunks[fd]) if fd in self.chunks else None
                for fd in (1, 2)
            )
        return self.transport.get_returncode()

    def close(self) -> None:
        """Release the transport; a group the lifecycle did not settle is killed."""
        if not self.settled.done:  # pragma: no cover - cancellation lands in waits
            _signal_group(self.pid, signal.SIGKILL)
        self.transport.close()
