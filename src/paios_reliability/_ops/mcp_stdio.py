"""Serving an MCP server over stdio: in-flight tool calls and their drain, daemon worker threads, stdin read by the event loop."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    import asyncio

    from mcp.server.mcpserver import MCPServer

R = TypeVar("R")


class _InFlight:
    """Tool calls running in this process, and whether new ones are refused (draining).

    ``with _in_flight:`` counts one call for its duration; entering raises
    ``TransientError`` once the server is draining.
    """

    __slots__ = ("count", "draining", "lock")

    def __init__(self) -> None:
        import threading

        self.lock = threading.Lock()
        self.count = 0
        self.draining = False

    def __enter__(self) -> None:
        with self.lock:
            if self.draining:
                from .._core.exceptions import TransientError

                raise TransientError(
                    "the server is shutting down and takes no new calls",
                    code="SERVICE_UNAVAILABLE",
                )
            self.count += 1

    def __exit__(self, *exc_info: object) -> None:
        with self.lock:
            self.count -= 1


_in_flight = _InFlight()


_MAX_LINE = 64 * 1024 * 1024


class _DaemonThreads(concurrent.futures.ThreadPoolExecutor):
    """A default executor whose threads never hold the process open.

    Each job runs on its own daemon thread; ``shutdown`` waits at most
    ``grace`` seconds for the jobs still running, then lets them be
    (``mcp.threads_left`` says how many). A ``ThreadPoolExecutor`` only
    because asyncio accepts nothing else as a default executor.
    """

    def __init__(self, name: str, grace: float) -> None:
        super().__init__(max_workers=1, thread_name_prefix=f"mcp:{name}")
        self._label = name
        self._grace = grace
        self._running: set[threading.Thread] = set()
        self._guard = threading.Lock()

    def submit(
        self, fn: Callable[..., R], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[R]:
        future: concurrent.futures.Future[R] = concurrent.futures.Future()

        def run() -> None:
            try:
                if future.set_running_or_notify_cancel():
                    try:
                        result = fn(*args, **kwargs)
                    except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
                        future.set_exception(exc)
                    else:
                        future.set_result(result)
            finally:
                with self._guard:
                    self._running.discard(thread)

        thread = threading.Thread(
            target=run, name=f"mcp:{self._label}:worker", daemon=True
        )
        with self._guard:
            self._running.add(thread)
        thread.start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if not wait:
            return
        give_up = time.monotonic() + self._grace
        with self._guard:
            running = list(self._running)
        for thread in running:
            thread.join(max(0.0, give_up - time.monotonic()))
        left = sum(thread.is_alive() for thread in running)
        if left:
            from .._core.events import emit

            emit(
                "mcp",
                "threads_left",
                level="warning",
                subject=self._label,
                count=left,
                grace=self._grace,
            )


async def _drain(name: str, serving: asyncio.Future[None], grace: float) -> None:
    import asyncio

    from .._core.events import emit

    with _in_flight.lock:
        _in_flight.draining = True
        busy = _in_flight.count
    emit("mcp", "draining", level="info", subject=name, in_flight=busy, grace=grace)
    deadline = time.monotonic() + grace
    # Polled: the calls may run in worker threads, which cannot wake the loop.
    while _in_flight.count > 0 and not serving.done() and time.monotonic() < deadline:  # noqa: ASYNC110 - see above
        await asyncio.sleep(0.02)
    left = _in_flight.count
    emit(
        "mcp",
        "drained",
        level="info" if left == 0 else "warning",
        subject=name,
        unfinished=left,
    )


async def _serve(server: MCPServer, readers: list[_StdinLines]) -> None:
    from mcp.server.stdio import stdio_server

    lowlevel = getattr(server, "_lowlevel_server", None)
    lines = _StdinLines.claim() if lowlevel is not None else None
    if lines is not None:
        readers.append(lines)
    if lines is None or lowlevel is None:
        # No pollable stdin (a regular file, or a platform without it): the
        # SDK's own reader, which never blocks on a file.
        await server.run_stdio_async()
        return
    try:
        async with stdio_server(stdin=cast(Any, lines)) as (read, write):
            await lowlevel.run(read, write, lowlevel.create_initialization_options())
    finally:
        lines.release()


class _StdinLines:
    """stdin as an async iterator of text lines, read by the event loop.

    A thread blocked in ``read(0)`` can be neither cancelled nor joined; the
    loop's pipe transport can, so a stop never waits for the client's next
    byte.
    """

    __slots__ = ("_fd", "_reader", "_transport")

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._reader: asyncio.StreamReader | None = None
        self._transport: asyncio.BaseTransport | None = None

    @classmethod
    def claim(cls) -> _StdinLines | None:
        import os
        import stat

        try:
            mode = os.fstat(0).st_mode
        except OSError:
            return None
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)):
            return None
        import fcntl

        private = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 3)
        null = os.open(os.devnull, os.O_RDONLY)
        try:
            os.dup2(null, 0)
        finally:
            os.close(null)
        return cls(private)

    def release(self) -> None:
        import contextlib
        import os

        if self._transport is not None:
            self._transport.close()
        with contextlib.suppress(OSError):
            os.dup2(self._fd, 0)
        if self._transport is None:
            with contextlib.suppress(OSError):
                os.close(self._fd)

    def finish(self) -> None:
        """Read no further: the iteration ends as at end of file."""
        if self._reader is not None:
            self._reader.feed_eof()

    def __aiter__(self) -> _StdinLines:
        return self

    async def __anext__(self) -> str:
        import asyncio
        import os

        if self._reader is None:
            loop = asyncio.get_running_loop()
            self._reader = asyncio.StreamReader(limit=_MAX_LINE)
            protocol = asyncio.StreamReaderProtocol(self._reader)
            pipe = os.fdopen(self._fd, "rb", buffering=0)
            self._transport, _ = await loop.connect_read_pipe(lambda: protocol, pipe)
        line = await self._reader.readline()
        if not line:
            raise StopAsyncIteration
        return line.decode("utf-8", errors="replace")
