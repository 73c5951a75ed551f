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

import functools
import inspect
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
from ._core.checks import check_number
from ._core.dispatch import callable_name, is_async_callable, through_method_descriptors
from ._ops.mcp_results import (
    _UNSET,
    _error_result,
    _is_deliberate,
    _record,
    _what_failed,
    _what_to_do,
)
from ._ops.mcp_stdio import _DaemonThreads, _drain, _in_flight, _serve, _StdinLines

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer
    from mcp.types import CallToolResult

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
            check_number("run_stdio", label, given)
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
