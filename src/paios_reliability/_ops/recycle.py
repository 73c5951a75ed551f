"""Worker recycling: restart a worker process before it dies slowly.

A long-running worker that leaks a little per request, or fragments its heap,
is cheapest to fix by restarting it every N requests, as gunicorn's
``max_requests`` does. :class:`Recycler` is the counter (with jitter drawn once
per worker, so a pool of workers started together does not restart together);
:class:`RecyclingWorker` runs a function in a child process and replaces the
child after N requests or above an RSS limit, always *between* requests: the
request in flight finishes and is answered first, and no request is dropped or
run twice.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pickle
import random
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .._core.events import emit
from .._core.exceptions import ConfigError, PermanentError, TimeoutExceeded

__all__ = ["Recycler", "RecyclingWorker"]

R = TypeVar("R")
_MB = float(1 << 20)


class Recycler:
    """Count requests and say when a worker should be recycled.

    The limit is ``max_requests + randint(0, jitter)``, drawn once per worker
    (at construction and at :meth:`reset`), as gunicorn does.

    Args:
        max_requests: Requests before recycling; 0 disables recycling.
        jitter: Up to this many extra requests, drawn once per worker.
        seed: Seed the draw (reproducible tests and replays).

    Thread-safe.
    """

    def __init__(
        self, max_requests: int = 1000, jitter: int = 50, *, seed: int | None = None
    ) -> None:
        if max_requests < 0 or jitter < 0:
            raise ConfigError(
                f"max_requests and jitter must be >= 0, got {max_requests}, {jitter}",
                code="USAGE_ERROR",
            )
        self.max_requests = int(max_requests)
        self.jitter = int(jitter)
        self._random = random.Random(seed)  # noqa: S311 - jitter, not cryptography
        self._lock = threading.Lock()
        self.count = 0
        self.limit = self._draw()

    def _draw(self) -> int:
        if self.max_requests == 0:
            return 0
        return self.max_requests + self._random.randint(0, self.jitter)

    def record(self, n: int = 1) -> bool:
        """Count ``n`` finished requests; true when the worker is due for recycling."""
        with self._lock:
            self.count += n
            return self.limit > 0 and self.count >= self.limit

    @property
    def due(self) -> bool:
        """Whether the limit has been reached."""
        return self.limit > 0 and self.count >= self.limit

    def reset(self) -> None:
        """A new worker: zero the count and draw a new limit."""
        with self._lock:
            self.count = 0
            self.limit = self._draw()

    def __repr__(self) -> str:
        return f"Recycler(count={self.count}, limit={self.limit})"


# -- the child side ------------------------------------------------------------------
#
# The child runs this source with ``python -c``: it imports nothing of ours (our
# package's import graph would add tens of milliseconds to every restart), only
# the target. Messages are length-prefixed pickles on two private pipes.

_CHILD_SOURCE = r"""
import os, pickle, struct, sys

def send(fd, obj):
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    data = struct.pack("!Q", len(data)) + data
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]

def recv(fd):
    def exactly(n):
        chunks = []
        while n:
            chunk = os.read(fd, min(n, 1 << 20))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)
    (size,) = struct.unpack("!Q", exactly(8))
    return pickle.loads(exactly(size))

def portable(exc):
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        import traceback
        from paios_reliability._core.exceptions import PermanentError
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return PermanentError(
            f"{type(exc).__qualname__}: {exc}",
            code="PROCESS_FAILED",
            context={"remote_traceback": text[-4000:]},
        )

def main(rfd, wfd):
    try:
        kind, path, target = recv(rfd)
        sys.path[:] = path
        if isinstance(target, str):
            import importlib
            module, _, attr = target.partition(":")
            fn = importlib.import_module(module)
            for part in attr.split("."):
                fn = getattr(fn, part)
        else:
            fn = pickle.loads(target)
        if not callable(fn):
            raise TypeError(f"{target!r} is not callable")
    except BaseException as exc:
        send(wfd, ("init_failed", f"{type(exc).__name__}: {exc}"))
        return
    send(wfd, ("ready", os.getpid()))
    while True:
        try:
            message = recv(rfd)
        except (EOFError, OSError):
            return
        if message[0] != "call":
            return
        _, req_id, args, kwargs = message
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            send(wfd, ("result", req_id, False, portable(exc)))
            continue
        try:
            send(wfd, ("result", req_id, True, result))
        except Exception as exc:
            send(wfd, ("result", req_id, False, portable(exc)))

main(int(sys.argv[1]), int(sys.argv[2]))
"""


class _Pipe:
    """Length-prefixed pickles over a pair of pipe file descriptors."""

    __slots__ = ("rfd", "wfd")

    def __init__(self, rfd: int, wfd: int) -> None:
        self.rfd = rfd
        self.wfd = wfd

    @staticmethod
    def frame(obj: object) -> bytes:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        return struct.pack("!Q", len(data)) + data

    def send(self, obj: object) -> None:
        self.write(self.frame(obj))

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.wfd, view) :]

    def poll(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.rfd], [], [], max(0.0, timeout))
        return bool(ready)

    def _exactly(self, n: int) -> bytes:
        chunks = []
        while n:
            chunk = os.read(self.rfd, min(n, 1 << 20))
            if not chunk:
                raise EOFError("worker pipe closed")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def recv(self) -> Any:
        (size,) = struct.unpack("!Q", self._exactly(8))
        return pickle.loads(self._exactly(size))  # noqa: S301 - from our own child

    def close(self) -> None:
        for fd in (self.rfd, self.wfd):
            with contextlib.suppress(OSError):
                os.close(fd)


# -- the parent side ------------------------------------------------------------------


class _Child:
    __slots__ = ("pipe", "process", "ready", "recycler")

    def __init__(
        self, process: subprocess.Popen[bytes], pipe: _Pipe, recycler: Recycler
    ) -> None:
        self.process = process
        self.pipe = pipe
        self.recycler = recycler
        self.ready = False


class RecyclingWorker(Generic[R]):
    """Run ``target`` in a child process that is replaced every N requests.

    ``call(*args, **kwargs)`` sends the arguments to the child, which runs
    ``target`` and sends back the result (or the exception, re-raised here).
    After ``max_requests`` (+ jitter) requests, or when the child's RSS is
    above ``max_rss_mb`` after a request, the child is told to exit and a fresh
    one is started: always between two requests, so the request in flight is
    answered first and no request is ever dropped or run twice. If the child
    dies *during* a request, that request fails with
    :class:`PermanentError` (``PROCESS_FAILED``) and is **not** retried (it may
    have had effects); the next call gets a new child.

    Requests are served one at a time (calls from several threads queue up);
    use several workers for parallelism. The child's stdout goes to this
    process's stderr (stdout may be a protocol channel, e.g. MCP stdio).

    Args:
        target: ``"module:function"``, or a picklable module-level function;
            arguments and results must be picklable.
        max_requests: Requests per child (0: never recycle by count).
        jitter: Extra requests, drawn once per child.
        max_rss_mb: Recycle when the child's RSS exceeds this (MiB).
        request_timeout: Seconds a request may take; then the child is killed
            and :class:`TimeoutExceeded` raised (``None``: no limit).
        start_timeout: Seconds a new child has to import ``target``.
        stop_timeout: Seconds a retiring child has to exit before SIGKILL.
        name: Subject of events.
        seed: Seed for the jitter draws.

    Events: ``recycling_worker.started`` (debug), ``.recycled`` (info, with
    the reason), ``.died`` and ``.timed_out`` (error).
    """

    def __init__(
        self,
        target: Callable[..., R] | str,
        *,
        max_requests: int = 1000,
        jitter: int = 50,
        max_rss_mb: float | None = None,
        request_timeout: float | None = None,
        start_timeout: float = 60.0,
        stop_timeout: float = 10.0,
        name: str | None = None,
        seed: int | None = None,
    ) -> None:
        if isinstance(target, str):
            self._target: str | bytes = target
            label = target
        else:
            try:
                self._target = pickle.dumps(target)
            except Exception as exc:
                raise ConfigError(
                    f"target {target!r} cannot be sent to a worker process (it must "
                    "be a module-level function, or give 'module:function')",
                    code="USAGE_ERROR",
                ) from exc
            label = getattr(target, "__qualname__", repr(target))
        if max_rss_mb is not None and not max_rss_mb > 0:
            raise ConfigError(
                f"max_rss_mb must be > 0, got {max_rss_mb!r}", code="USAGE_ERROR"
            )
        Recycler(max_requests, jitter)  # validates
        self.max_requests = max_requests
        self.jitter = jitter
        self.max_rss_mb = max_rss_mb
        self.request_timeout = request_timeout
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.name = name or label
        self._random = random.Random(seed)  # noqa: S311 - jitter seeds
        self._lock = threading.Lock()
        self._child: _Child | None = None
        self._next_id = 0
        self._closed = False
        self.requests = 0
        self.restarts = 0
        self.started = 0

    # -- child management ------------------------------------------------------

    def _spawn(self) -> _Child:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        try:
            process = subprocess.Popen(  # noqa: S603 - our interpreter, fixed code
                [
                    sys.executable,
                    "-c",
                    _CHILD_SOURCE,
                    str(to_child_r),
                    str(from_child_w),
                ],
                pass_fds=(to_child_r, from_child_w),
                stdin=subprocess.DEVNULL,
                stdout=sys.stderr.fileno()
                if _has_fileno(sys.stderr)
                else subprocess.DEVNULL,
                close_fds=True,
            )
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        pipe = _Pipe(from_child_r, to_child_w)
        recycler = Recycler(
            self.max_requests, self.jitter, seed=self._random.getrandbits(32)
        )
        child = _Child(process, pipe, recycler)
        with contextlib.suppress(OSError):  # a child that died at once is seen later
            pipe.send(("init", list(sys.path), self._target))
        self.started += 1
        emit(
            "recycling_worker",
            "started",
            level="debug",
            subject=self.name,
            pid=process.pid,
            limit=recycler.limit,
        )
        return child

    def _wait_ready(self, child: _Child) -> None:
        if child.ready:
            return
        message = self._receive(child, self.start_timeout, "start")
        if message[0] == "init_failed":
            self._discard(child)
            raise PermanentError(
                f"worker {self.name!r} could not load its target: {message[1]}",
                code="PROCESS_FAILED",
            )
        child.ready = True

    def _receive(self, child: _Child, timeout: float | None, what: str) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = (
                0.5
                if deadline is None
                else max(0.0, min(0.5, deadline - time.monotonic()))
            )
            try:
                if child.pipe.poll(step):
                    return child.pipe.recv()
            except (EOFError, OSError):
                pass
            else:
                if child.process.poll() is None:
                    if deadline is not None and time.monotonic() >= deadline:
                        self._kill(child)
                        self._child = None
                        emit(
                            "recycling_worker",
                            "timed_out",
                            level="error",
                            subject=self.name,
                            pid=child.process.pid,
                            during=what,
                            timeout=timeout,
                        )
                        raise TimeoutExceeded(
                            f"worker {self.name!r} did not answer within {timeout}s "
                            f"({what}); it was killed",
                            seconds=timeout,
                        )
                    continue
                # Exited: anything it sent before dying is still in the pipe.
                with contextlib.suppress(EOFError, OSError):
                    if child.pipe.poll(0):
                        return child.pipe.recv()
            code = child.process.wait(5)
            self._discard(child)
            emit(
                "recycling_worker",
                "died",
                level="error",
                subject=self.name,
                pid=child.process.pid,
                exit_code=code,
                during=what,
            )
            raise PermanentError(
                f"worker {self.name!r} (pid {child.process.pid}) died during {what} "
                f"(exit code {code}); the request was not retried",
                code="PROCESS_FAILED",
                context={"pid": child.process.pid, "exit_code": code},
            )

    def _discard(self, child: _Child) -> None:
        child.pipe.close()  # a child blocked on its pipe now sees EOF and exits
        try:
            child.process.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            child.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(5)
        if self._child is child:
            self._child = None

    def _kill(self, child: _Child) -> None:
        with contextlib.suppress(OSError):
            child.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.process.wait(5)
        self._discard(child)

    def _retire(
        self, child: _Child, reason: str, *, action: str = "recycled", **fields: Any
    ) -> None:
        with contextlib.suppress(OSError):
            child.pipe.send(("stop",))
        try:
            code = child.process.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            child.process.terminate()
            try:
                code = child.process.wait(5)
            except subprocess.TimeoutExpired:
                child.process.kill()
                code = child.process.wait(5)
        self._discard(child)
        emit(
            "recycling_worker",
            action,
            subject=self.name,
            reason=reason,
            pid=child.process.pid,
            requests=child.recycler.count,
            exit_code=code,
            **fields,
        )

    # -- calls -------------------------------------------------------------------

    def call(self, *args: Any, **kwargs: Any) -> R:
        """Run ``target(*args, **kwargs)`` in the worker; return its result.

        Raises:
            Whatever ``target`` raised (re-raised here).
            PermanentError: ``PROCESS_FAILED`` when the child died during the
                request (not retried) or could not load the target.
            TimeoutExceeded: The request took longer than ``request_timeout``.
        """
        with self._lock:
            if self._closed:
                raise PermanentError(
                    f"worker {self.name!r} is closed", code="PROGRAMMING_ERROR"
                )
            child = self._child
            if child is None:
                child = self._child = self._spawn()
            self._wait_ready(child)
            self._next_id += 1
            req_id = self._next_id
            try:
                data = _Pipe.frame(("call", req_id, args, kwargs))
            except Exception as exc:
                raise ConfigError(
                    f"arguments for worker {self.name!r} cannot be pickled: {exc}",
                    code="USAGE_ERROR",
                ) from exc
            try:
                child.pipe.write(data)
            except OSError as exc:
                # The child is gone before it got the request: nothing ran.
                self._kill(child)
                raise PermanentError(
                    f"worker {self.name!r} could not be sent the request: {exc}",
                    code="PROCESS_FAILED",
                ) from exc
            message = self._receive(child, self.request_timeout, f"request {req_id}")
            _, got_id, ok, payload = message
            if got_id != req_id:  # pragma: no cover - the protocol is strictly serial
                self._kill(child)
                raise PermanentError(
                    f"worker {self.name!r} answered request {got_id}, expected {req_id}",
                    code="PROCESS_FAILED",
                )
            self.requests += 1
            self._after_request(child)
        if ok:
            return payload  # type: ignore[no-any-return]
        raise payload

    def _after_request(self, child: _Child) -> None:
        if child.recycler.record():
            self._recycle(child, "max_requests")
            return
        if self.max_rss_mb is not None:
            from .._observe.memory_readings import read_rss

            rss = read_rss(child.process.pid)
            if rss is not None and rss / _MB > self.max_rss_mb:
                self._recycle(child, "max_rss", rss_mb=round(rss / _MB, 1))

    def _recycle(self, child: _Child, reason: str, **fields: Any) -> None:
        # Start the replacement first: it boots while the old one exits and
        # while the caller works on the answer.
        replacement = self._spawn()
        self._retire(child, reason, **fields)
        self.restarts += 1
        self._child = replacement

    async def acall(self, *args: Any, **kwargs: Any) -> R:
        """:meth:`call` from async code, in a thread (the loop never blocks).

        If the awaiting task is cancelled, the request still completes in the
        worker (it is never run twice); its result is discarded.
        """
        import asyncio

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            None, functools.partial(self.call, *args, **kwargs)
        )

    @property
    def pid(self) -> int | None:
        """The current child's pid, if one is running."""
        child = self._child
        return None if child is None else child.process.pid

    def close(self) -> None:
        """Stop the child (after the request in flight). Idempotent."""
        with self._lock:
            self._closed = True
            child, self._child = self._child, None
            if child is not None:
                self._retire(child, "closed", action="stopped")

    def __enter__(self) -> RecyclingWorker[R]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"RecyclingWorker({self.name!r}, requests={self.requests}, "
            f"restarts={self.restarts})"
        )


def _has_fileno(stream: Any) -> bool:
    try:
        stream.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    return True
