"""Reliable MCP tool handlers for the official ``mcp`` SDK (extra ``mcp``).

:func:`resilient_tool` puts :func:`~paios_reliability.resilient`'s policy stack
around a tool handler and turns whatever still fails into an MCP tool error
the model can act on::

    CIRCUIT_OPEN: search backend unavailable; retry after 12 s (ref 4bf92f35)

The text starts with the stable catalog code, says what failed in words and
what the agent can do, and never carries the exception's own text (which may
hold a token, a URL with credentials or a stranger's data). The full error,
redacted, goes to the ``mcp.tool_failed`` event and the log under the trace
id that the ``ref`` starts with.

Importing this module is cheap: the SDK is imported only when a failure has to
be turned into a result. ``import paios_reliability`` never imports it.
"""

from __future__ import annotations

import concurrent.futures
import functools
import inspect
import math
import re
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import (
    TYPE_CHECKING,
    Any,
    Literal,
    ParamSpec,
    Protocol,
    TypeVar,
    cast,
    overload,
)

from ._core import settings as _config
from ._core.checks import positive_number
from ._core.dispatch import callable_name, is_async_callable, through_method_descriptors

if TYPE_CHECKING:
    import asyncio

    from mcp.server.mcpserver import MCPServer
    from mcp.types import CallToolResult

    from ._core.catalog import CatalogEntry
    from ._core.events import Level
    from ._core.taxonomy import Failure

__all__ = [
    "StopReason",
    "ToolDecorator",
    "resilient_tool",
    "run_stdio",
    "tool_error_text",
]

P = ParamSpec("P")
R = TypeVar("R")

MAX_TEXT = 200
"""The longest agent-facing error text, in characters."""

_UNSET: Any = object()
# Rejections: the operation never ran, so there is nothing to debug.
_REJECTED = frozenset({"CIRCUIT_OPEN", "RATE_LIMITED", "BULKHEAD_FULL"})
# What failed, for codes whose catalog summary reads badly to a model.
_WHAT: dict[str, str] = {
    "UNCLASSIFIED": "the tool failed unexpectedly",
    "TRANSIENT": "the tool failed temporarily",
    "PERMANENT": "the tool failed",
    "RELIABILITY_ERROR": "the tool failed",
    "PROGRAMMING_ERROR": "the tool hit a bug",
    "RECURSION_LIMIT": "the tool hit a bug",
    "CIRCUIT_OPEN": "backend unavailable",
    "TIMEOUT": "the tool ran out of time",
    "RATE_LIMITED": "too many calls",
    "BULKHEAD_FULL": "too many calls at once",
    "CANCELLED": "the call was cancelled",
}
# What the agent can do about a permanent failure, by recovery mode.
_DO: dict[str, str] = {
    "fix_input": "fix the arguments before calling again",
    "refresh_credentials": "ask the user to re-authenticate",
    "request_approval": "ask the user to approve or complete the step first",
    "fail_fast": "do not retry the same call",
    "abort": "do not retry",
}
_DO_OPERATOR = "do not retry; the server's operator must fix it"
# fail_fast codes that are really about the arguments the model sent.
_ARGUMENT_CODES = frozenset({"HTTP_BAD_REQUEST", "HTTP_UNPROCESSABLE"})
_NAME_CHARS = re.compile(r"[^A-Za-z0-9 .]+")
_FIRST_CLAUSE = re.compile(r"(?<=[a-z0-9)])[.;](?:\s|$)")


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
                from ._core.exceptions import TransientError

                raise TransientError(
                    "the server is shutting down and takes no new calls",
                    code="SERVICE_UNAVAILABLE",
                )
            self.count += 1

    def __exit__(self, *exc_info: object) -> None:
        with self.lock:
            self.count -= 1


_in_flight = _InFlight()


class ToolDecorator(Protocol):
    """What :func:`resilient_tool` returns: a decorator for sync and async handlers.

    The wrapped handler keeps its parameters; its result may also be an
    ``mcp.types.CallToolResult`` with ``is_error=True`` (a failure).
    """

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]], /
    ) -> Callable[P, Coroutine[Any, Any, R | CallToolResult]]: ...

    @overload
    def __call__(self, fn: Callable[P, R], /) -> Callable[P, R | CallToolResult]: ...


def resilient_tool(
    *,
    name: str | None = None,
    fallback_is_success: bool = False,
    **resilient_options: Any,
) -> ToolDecorator:
    """Make an MCP tool handler reliable and its failures readable by the model.

    Put it under ``@server.tool()`` (``MCPServer`` of the ``mcp`` SDK)::

        @server.tool()
        @resilient_tool(timeout=10.0, retry=True, breaker=search_backend)
        async def search(query: str) -> list[str]: ...

    The handler runs under :func:`~paios_reliability.resilient` with
    ``resilient_options`` passed through untouched (``timeout``, ``retry``,
    ``breaker``, ``limiter``, ``bulkhead`` and whatever else it accepts), inside
    its own :func:`~paios_reliability.trace` span. The wrapper keeps the
    handler's signature, annotations, docstring and sync/async nature, so the
    SDK derives exactly the same tool schema as for the bare handler.

    When the call still fails, the tool returns an MCP ``CallToolResult`` with
    ``is_error=True`` whose text is :func:`tool_error_text`: the catalog code,
    what failed and what the agent can do (``retry after 12 s``, ``fix the
    arguments``, ``do not retry``, ``ask the user to re-authenticate``...),
    plus a short ``ref`` to the trace id. The exception's own text is never in
    it. The full error goes to the ``mcp.tool_failed`` event (code, kind,
    recovery, ``retry_after``, tool name, trace id, the redacted
    :func:`~paios_reliability.audit_event` record) and from there to the log
    and to an :class:`~paios_reliability.EventStore` that records library
    events.

    A ``ToolError`` or ``ResourceError`` raised by the handler, and an
    ``MCPError`` (a JSON-RPC protocol error, such as a URL elicitation
    request), keep their SDK meaning: they are recorded and re-raised
    unchanged. ``KeyboardInterrupt``, ``SystemExit`` and cancellation always
    propagate. With the policies switched off (``set_active(False)``) the
    handler is called straight through.

    Concurrent calls share nothing but the policies given: every call has its
    own retry state, trace span and result.

    Args:
        name: Name of the operation in events and logs (default: the
            handler's ``__name__``, which is also the tool's name).
        fallback_is_success: With a ``fallback=`` option, return the fallback
            as the tool's normal result (``is_error=False``). By default a
            fallback is still reported as a failure: the result is an error
            whose first text is the coded message and whose second is the
            fallback, so the model can tell a failure from an answer.
        **resilient_options: Passed to :func:`~paios_reliability.resilient`.
            ``fallback`` (a value, or a callable taking the exception; awaited
            if it returns an awaitable in an async handler) is handled here.

    Returns:
        A decorator for sync and async handlers.

    Raises:
        PermanentError: ``DEPENDENCY_MISSING`` if the ``mcp`` SDK is not
            installed (``pip install 'paios-reliability[mcp]'``).
        ValueError: If ``fallback_is_success=True`` is given without a
            ``fallback``, ``name`` is empty, or on invalid policy options.
        TypeError: On an unknown option (from ``resilient``, when a handler
            is decorated).
    """
    _require_sdk()
    given: object = name
    if name is not None and (not isinstance(given, str) or not name):
        raise ValueError(
            f"resilient_tool(name=...) must be a non-empty string, got {name!r}"
        )
    fallback = resilient_options.pop("fallback", _UNSET)
    if fallback_is_success and fallback is _UNSET:
        raise ValueError(
            "resilient_tool(fallback_is_success=True) needs a fallback=: "
            "without one there is nothing to return as a success"
        )

    @through_method_descriptors
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        from ._policies.resilient import resilient

        label = name or getattr(fn, "__name__", None) or callable_name(fn)
        inner = resilient(name=label, **resilient_options)(fn)
        handle = _Handler(label, fallback, fallback_is_success=fallback_is_success)

        if is_async_callable(fn):
            ainner = cast(Callable[..., Awaitable[Any]], inner)

            @functools.wraps(inner)
            async def async_tool(*args: Any, **kwargs: Any) -> Any:
                if not _config.is_active():
                    return await ainner(*args, **kwargs)
                with _trace(label):
                    try:
                        with _in_flight:
                            return await ainner(*args, **kwargs)
                    except Exception as exc:
                        failed = handle.failed(exc)
                        if failed is None:
                            raise
                        text, value = failed
                        if inspect.isawaitable(value):
                            value = await value
                        return handle.result(text, value)

            return async_tool

        @functools.wraps(inner)
        def tool(*args: Any, **kwargs: Any) -> Any:
            if not _config.is_active():
                return inner(*args, **kwargs)
            with _trace(label):
                try:
                    with _in_flight:
                        return inner(*args, **kwargs)
                except Exception as exc:
                    failed = handle.failed(exc)
                    if failed is None:
                        raise
                    return handle.result(*failed)

        return tool

    return cast(ToolDecorator, decorate)


def _trace(label: str) -> Any:
    from ._core.trace import trace

    return trace(tool=label)


class _Handler:
    """The failure path shared by the sync and async wrappers of one handler."""

    __slots__ = ("fallback", "fallback_is_success", "label")

    def __init__(self, label: str, fallback: Any, *, fallback_is_success: bool) -> None:
        self.label = label
        self.fallback = fallback
        self.fallback_is_success = fallback_is_success

    def failed(self, exc: Exception) -> tuple[str, Any] | None:
        """Record ``exc``; its agent-facing text and the fallback (maybe awaitable).

        ``None`` for a deliberate SDK error, which the caller re-raises. A
        fallback callable that raises propagates, chained to ``exc``.
        """
        from ._core.taxonomy import classify
        from ._core.trace import current_trace

        failure = classify(exc)
        deliberate = _is_deliberate(exc)
        ref = current_trace().get("trace_id", "")[:8] or None
        text = tool_error_text(exc, ref=ref, failure=failure)
        _record(self.label, exc, failure, text, ref, deliberate=deliberate)
        if deliberate:
            return None
        if self.fallback is _UNSET:
            return text, _UNSET
        if callable(self.fallback):
            return text, self.fallback(exc)
        return text, self.fallback

    def result(self, text: str, value: Any) -> Any:
        """The tool's answer: the fallback as a success, or an error result."""
        if value is not _UNSET and self.fallback_is_success:
            return value
        return _error_result(text, value)


def _is_deliberate(exc: BaseException) -> bool:
    """An SDK error whose meaning the SDK defines: ToolError, ResourceError, MCPError."""
    from ._core.taxonomy import _is_mcp_tool_error

    if _is_mcp_tool_error(exc):
        return True
    return any(
        cls.__name__ in ("MCPError", "McpError")
        and str(cls.__module__).startswith("mcp.")
        for cls in type(exc).__mro__
    )


def _record(
    label: str,
    exc: Exception,
    failure: Failure,
    text: str,
    ref: str | None,
    *,
    deliberate: bool,
) -> None:
    from ._core.catalog import CATALOG
    from ._core.events import emit
    from ._core.taxonomy import audit_event

    entry = CATALOG.get(failure.code)
    level: Level = "warning" if deliberate or failure.code in _REJECTED else "error"
    emit(
        "mcp",
        "tool_failed",
        level=level,
        subject=label,
        exc=exc,
        tool=label,
        code=failure.code,
        kind=failure.kind,
        retryable=failure.retryable,
        retry_after=failure.retry_after,
        recovery=entry.recovery if entry is not None else None,
        deliberate=deliberate,
        ref=ref,
        # What the client read; a deliberate error reaches it in the SDK's words.
        text=None if deliberate else text,
        audit=audit_event(exc, tool=label),
    )


def _error_result(text: str, fallback: Any) -> CallToolResult:
    from mcp.types import CallToolResult

    content: list[dict[str, str]] = [{"type": "text", "text": text}]
    if fallback is not _UNSET and fallback is not None:
        content.append({"type": "text", "text": _as_text(fallback)})
    # Aliases: the same payload validates on every SDK version (isError/is_error).
    return CallToolResult.model_validate({"content": content, "isError": True})


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    import pydantic_core

    try:
        return pydantic_core.to_json(value, fallback=str).decode()
    except Exception:  # noqa: BLE001 - a fallback that cannot be shown is shown by type
        return f"<{type(value).__name__}>"


# -- the agent-facing text -----------------------------------------------------------


def tool_error_text(
    exc: BaseException, *, ref: str | None = None, failure: Failure | None = None
) -> str:
    """What an agent should read about ``exc``: ``CODE: what failed; what to do``.

    Built only from the classification (:func:`~paios_reliability.classify`),
    the catalog entry's summary and recovery mode, ``retry_after``, and, for
    a :class:`~paios_reliability.CircuitOpenError`, the breaker's name. The
    exception's own text is never used: it may hold secrets. At most
    :data:`MAX_TEXT` characters.

    Args:
        exc: The failure.
        ref: A short reference for the operator (the trace id's start),
            appended as ``(ref ...)``.
        failure: ``classify(exc)``, if already computed.

    Returns:
        The text for the agent.

    Two examples of the text::

        CIRCUIT_OPEN: search backend unavailable; retry after 12 s (ref 4bf92f35)
        HTTP_NOT_FOUND: HTTP 404: the resource does not exist; do not retry the same call
    """
    from ._core.catalog import CATALOG
    from ._core.taxonomy import classify

    if failure is None:
        failure = classify(exc)
    entry = CATALOG.get(failure.code)
    action = _what_to_do(failure, entry)
    tail = f"; {action}" + (f" (ref {ref})" if ref else "")
    room = MAX_TEXT - len(failure.code) - 2 - len(tail)
    what = _what_failed(exc, failure, entry)
    if len(what) > room:
        what = what[: max(room - 1, 0)].rstrip() + "…"
    return f"{failure.code}: {what}{tail}"[:MAX_TEXT]


def _what_failed(
    exc: BaseException, failure: Failure, entry: CatalogEntry | None
) -> str:
    if failure.code == "CIRCUIT_OPEN":
        breaker = getattr(exc, "breaker_name", None)
        if isinstance(breaker, str):
            words = _NAME_CHARS.sub(" ", breaker).strip()
            if words:
                return f"{words[:60]} unavailable"
    if failure.code in _WHAT:
        return _WHAT[failure.code]
    if entry is None:
        return "the tool failed"
    # The first sentence: "A credential has expired; refresh it." -> "a credential
    # has expired". Acronyms keep their case: "HTTP 404: ...", "MCP -32042: ...".
    summary = _FIRST_CLAUSE.split(entry.summary.strip(), maxsplit=1)[0].rstrip(". ")
    first = summary.split(" ", 1)[0]
    if first[:1].isupper() and (len(first) == 1 or first[1:].islower()):
        summary = summary[0].lower() + summary[1:]
    return summary or "the tool failed"


def _what_to_do(failure: Failure, entry: CatalogEntry | None) -> str:
    if failure.retryable:
        if failure.retry_after is not None:
            return f"retry after {_duration(failure.retry_after)}"
        recovery = entry.recovery if entry is not None else "retry"
        if recovery == "reduce_load":
            return "retry later with fewer calls at once"
        if recovery == "wait_for_lock":
            return "retry in a few seconds"
        return "retry later"
    if failure.code in _ARGUMENT_CODES:
        return _DO["fix_input"]
    recovery = entry.recovery if entry is not None else "fail_fast"
    return _DO.get(
        recovery, _DO_OPERATOR if recovery not in _RETRY_MODES else _DO["fail_fast"]
    )


_RETRY_MODES = frozenset({"retry", "retry_after", "wait_for_lock", "reduce_load"})


def _duration(seconds: float) -> str:
    whole = max(1, math.ceil(seconds))
    if whole < 120:
        return f"{whole} s"
    if whole < 2 * 3600:
        return f"{math.ceil(whole / 60)} min"
    return f"{math.ceil(whole / 3600)} h"


def _require_sdk() -> None:
    # Decorating a tool happens in a server that uses the SDK anyway; failing
    # here, at start-up, beats failing on the first error of the first call.
    try:
        import mcp.types  # noqa: F401
    except ImportError as exc:
        from ._core.imports import missing_extra

        raise missing_extra(
            "mcp", "mcp", message="paios_reliability.mcp needs the mcp SDK"
        ) from exc


# -- running a stdio server ------------------------------------------------------------

StopReason = Literal["eof", "SIGINT", "SIGTERM", "parent_gone"]
"""Why :func:`run_stdio` returned."""

_MAX_LINE = 64 * 1024 * 1024


def run_stdio(
    server: MCPServer,
    *,
    interval: float = 0.5,
    register: bool = True,
    stop_grace: float = 5.0,
    drain: float | None = None,
) -> StopReason:
    """Serve ``server`` over stdin/stdout until the client goes away or a signal.

    Unlike ``server.run("stdio")``, the server stops cleanly, and promptly, in
    every way its client can leave:

    - stdin reaches end of file (the client closed the pipe): ``"eof"``;
    - SIGINT or SIGTERM: ``"SIGINT"`` / ``"SIGTERM"`` (the SDK's own loop
      ignores SIGINT while its reader thread blocks on stdin);
    - the client process dies, even with ``kill -9`` and with the pipe held
      open by another process: :func:`~paios_reliability.exit_with_parent`
      notices within ``interval`` seconds (at once on Linux): ``"parent_gone"``.

    Stopping cancels the calls in flight and waits at most ``stop_grace``
    seconds for them; ``atexit`` handlers run after the return as usual.
    Work a tool handed to a thread (``asyncio.to_thread``,
    ``run_in_executor(None, ...)``) gets the same grace and is then left
    behind (``mcp.threads_left``): a blocking call without a timeout never
    keeps the process alive.
    With ``drain`` (opt-in; 30 matches systemd's and launchd's default stop
    timeout), SIGINT and SIGTERM first drain: new
    :func:`resilient_tool` calls are refused with a retryable
    ``SERVICE_UNAVAILABLE`` tool error, and the calls in flight get up to
    ``drain`` seconds to finish before the rest is cancelled (emits
    ``mcp.draining`` and ``mcp.drained``). A client that died is not
    drained for: nobody would read the answers.
    stdin is read without a blocking thread, so nothing is left waiting on
    it. While serving, fd 0 points at the null device (a child process never
    reads the protocol stream) and stdout belongs to the protocol.

    With ``register=True`` the server is listed in the per-user runtime
    directory while it runs, so ``paios-reliability mcp sweep --kill`` can
    end it should it ever outlive its client. Emits ``mcp.server_started``
    and ``mcp.server_stopped`` (with the reason).

    Args:
        server: An ``MCPServer`` of the ``mcp`` SDK.
        interval: Seconds between checks that the client process is alive.
        register: List the server in the runtime directory while it runs.
        stop_grace: Seconds cancelled calls get to unwind.
        drain: Seconds in-flight tool calls get to finish on SIGINT/SIGTERM
            (``None``: cancel them at once).

    Returns:
        Why the server stopped.

    Raises:
        PermanentError: ``DEPENDENCY_MISSING`` without the ``mcp`` SDK.
        ValueError: If ``interval`` or ``stop_grace`` is not positive.
        Exception: Whatever the server's own run raised.
    """
    import asyncio

    _require_sdk()
    for label, given in (("stop_grace", stop_grace), ("drain", drain)):
        if label != "drain" or given is not None:
            positive_number("run_stdio", label, given)
    from ._ops.exit_with_parent import exit_with_parent

    watch = exit_with_parent(interval=interval, grace=stop_grace + (drain or 0) + 5.0)
    registration = None
    name = str(getattr(server, "name", None) or "mcp-server")
    if register:
        from ._ops.registry import register_server

        registration = register_server(name)
    try:
        return asyncio.run(_serve_until_stopped(server, name, watch, stop_grace, drain))
    finally:
        if registration is not None:
            registration.close()
        watch.stop()


async def _serve_until_stopped(
    server: MCPServer,
    name: str,
    watch: Any,
    stop_grace: float,
    drain: float | None,
) -> StopReason:
    import asyncio
    import os
    import signal

    from ._core.events import emit

    loop = asyncio.get_running_loop()
    # asyncio.run, and then the interpreter, wait for every thread of the
    # default executor: one tool stuck in asyncio.to_thread would keep the
    # process alive after the server stopped.
    loop.set_default_executor(_DaemonThreads(name, stop_grace))
    stopping = asyncio.Event()
    reasons: list[StopReason] = []

    def request_stop(signame: str) -> None:
        gone = signame == "SIGTERM" and os.getppid() != watch.parent_pid
        reasons.append("parent_gone" if gone else cast(StopReason, signame))
        stopping.set()

    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, request_stop, signal.Signals(signum).name)
    emit("mcp", "server_started", subject=name, pid=os.getpid())
    readers: list[_StdinLines] = []
    serving = asyncio.ensure_future(_serve(server, readers))
    waiting = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({serving, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if serving.done():
            waiting.cancel()
            serving.result()
            reason: StopReason = "eof"
        else:
            reason = reasons[0]
            if drain is not None and reason != "parent_gone":
                await _drain(name, serving, drain)
                # End of input: the SDK's session ends the way it does for a
                # client that hung up, writing out the answers still queued.
                for reader in readers:
                    reader.finish()
                await asyncio.wait({serving}, timeout=stop_grace)
            serving.cancel()
            done, _ = await asyncio.wait({serving}, timeout=stop_grace)
            if not done:
                emit(
                    "mcp", "stop_overdue", level="error", subject=name, grace=stop_grace
                )
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
        with _in_flight.lock:
            _in_flight.draining = False
    emit("mcp", "server_stopped", subject=name, reason=reason, pid=os.getpid())
    return reason


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
            from ._core.events import emit

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

    from ._core.events import emit

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
