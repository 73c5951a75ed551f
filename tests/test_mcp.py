"""paios_reliability.mcp: resilient_tool with a real mcp server and client.

Every promise of issue #14 item 3 is checked over both transports the SDK
offers: in memory (``Client(server)``) and stdio (a real server subprocess,
tests/_proc_mcp_server.py). The server is the same code either way.

- the tool schema is the bare handler's;
- a failure is an ``is_error`` result whose text starts with its catalog code
  and says what the agent can do, with a ``ref`` to the trace id of the
  ``mcp.tool_failed`` event;
- while the breaker is open a call fails at once with ``CIRCUIT_OPEN`` and
  ``retry after N s``;
- ``deadline=`` bounds the whole call;
- no secret of the exception's text reaches the client;
- a fallback is still an error unless ``fallback_is_success=True``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

pytest.importorskip("mcp")

from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError

import paios_reliability as pr
from _proc_mcp_server import SECRET, build_server, failure
from paios_reliability.mcp import MAX_TEXT, resilient_tool, tool_error_text
from paios_reliability.testing import capture_events

SERVER = Path(__file__).resolve().parent / "_proc_mcp_server.py"
TRANSPORTS = ["memory", "stdio"]
SESSION_TIMEOUT = 60.0  # a hang is infinite; every session here takes seconds
REF = re.compile(r" \(ref (?P<ref>[0-9a-f]{8})\)$")


class Session:
    """A connected client plus a way to read the events the server emitted."""

    def __init__(self, client: Client, transport: str, tmp_path: Path) -> None:
        self.client = client
        self.transport = transport
        self.tmp_path = tmp_path
        self.captured: Sequence[pr.Event] = ()

    async def call(self, tool: str, **arguments: Any) -> Any:
        return await self.client.call_tool(tool, arguments)

    async def calls(self) -> dict[str, int]:
        result = await self.call("handler_calls")
        assert not result.is_error, _texts(result)
        content = result.structured_content
        return dict(content.get("result", content))

    async def failed_events(self, count: int) -> list[dict[str, Any]]:
        """The ``mcp.tool_failed`` events so far: fields plus ``trace_id``."""
        if self.transport == "memory":
            return [
                {**e.to_dict(), "trace_id": e.trace.get("trace_id")}
                for e in self.captured
                if e.name == "paios_reliability.mcp.tool_failed"
            ]
        # The server's store writes from a background thread: wait for the
        # rows (bounded), then read them.
        with anyio.fail_after(30):
            while True:
                rows = _stored(self.tmp_path / "events.sqlite")
                if len(rows) >= count:
                    return rows
                await anyio.sleep(0.05)


def _stored(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    store = pr.EventStore(path)
    try:
        return [
            {**e.metadata, "trace_id": e.trace_id}
            for e in store.query(category="mcp", action="tool_failed", limit=None)
        ]
    finally:
        store.close()


@asynccontextmanager
async def connect(
    transport: str, scenario: str, tmp_path: Path
) -> AsyncIterator[Session]:
    if transport == "memory":
        server = build_server(scenario)
        with capture_events() as captured:
            async with Client(server, read_timeout_seconds=SESSION_TIMEOUT) as client:
                session = Session(client, transport, tmp_path)
                session.captured = captured
                yield session
        return
    params = StdioServerParameters(
        command=sys.executable,
        args=[str(SERVER), scenario, str(tmp_path / "events.sqlite")],
        cwd=tmp_path,
    )
    stderr = tmp_path / "server.stderr"
    with stderr.open("w") as errlog:
        async with contextlib.AsyncExitStack() as stack:
            try:
                client = await stack.enter_async_context(
                    Client(
                        stdio_client(params, errlog=errlog),
                        read_timeout_seconds=SESSION_TIMEOUT,
                    )
                )
            except Exception as exc:  # say why, not just "Connection closed"
                errlog.flush()
                pytest.fail(
                    f"the stdio server did not start ({exc!r}); its stderr ends:\n"
                    + stderr.read_text()[-2000:]
                )
            yield Session(client, transport, tmp_path)


def _texts(result: Any) -> list[str]:
    return [getattr(part, "text", "") for part in result.content]


def _only_text(result: Any) -> str:
    texts = _texts(result)
    assert len(texts) == 1, texts
    return texts[0]


# -- the schema is the bare handler's --------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_issue14_schema_is_the_bare_handlers(
    transport: str, tmp_path: Path
) -> None:
    with anyio.fail_after(SESSION_TIMEOUT):
        async with connect(transport, "schema", tmp_path) as session:
            tools = {t.name: t for t in (await session.client.list_tools()).tools}
            answer = await session.call("search", query="wal", limit=3)

    for name in ("search", "count", "ping"):
        bare, wrapped = tools[f"bare_{name}"], tools[name]
        assert wrapped.input_schema == bare.input_schema, name
        assert wrapped.output_schema == bare.output_schema, name
        assert wrapped.description == bare.description, name
    search = tools["search"].input_schema
    assert search["required"] == ["query"]
    assert search["properties"]["query"]["description"] == "What to look for"
    assert search["properties"]["limit"]["maximum"] == 50
    assert tools["count"].input_schema["properties"]["exact"]["default"] is False
    assert not answer.is_error
    assert answer.structured_content == {"result": [{"title": "wal", "body": ""}]}


# -- a failure is an is_error result with the code and what to do -------------------------

EXPECTED = {
    # kind: (text without the ref, handler runs under retry attempts=3)
    "reset": ("CONNECTION_RESET: the peer reset the connection (ECONNRESET); retry later", 3),
    "status-404-text": ("HTTP_NOT_FOUND: HTTP 404: the resource does not exist; do not retry the same call", 1),
    "httpx-404": ("HTTP_NOT_FOUND: HTTP 404: the resource does not exist; do not retry the same call", 1),
    "rate-limited": ("HTTP_TOO_MANY_REQUESTS: HTTP 429: the server asks us to slow down; retry after 12 s", 1),
    "unauthorized": ("HTTP_UNAUTHORIZED: HTTP 401: the credentials were missing or rejected; ask the user to re-authenticate", 1),
    "bug": ("PROGRAMMING_ERROR: the tool hit a bug; do not retry; the server's operator must fix it", 1),
    "invalid-params": ("USAGE_ERROR: a command or function was called with wrong arguments; fix the arguments before calling again", 1),
}  # fmt: skip


@pytest.mark.parametrize("tool", ["fail", "fail_sync"])
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_issue14_a_failure_is_an_error_result_with_its_code(
    transport: str, tool: str, tmp_path: Path
) -> None:
    with anyio.fail_after(SESSION_TIMEOUT):
        async with connect(transport, "errors", tmp_path) as session:
            results = {kind: await session.call(tool, kind=kind) for kind in EXPECTED}
            calls = await session.calls()
            events = await session.failed_events(len(EXPECTED))

    refs = {}
    for kind, (expected, runs) in EXPECTED.items():
        result = results[kind]
        assert result.is_error, kind
        text = _only_text(result)
        match = REF.search(text)
        assert match is not None, text
        assert text[: match.start()] == expected
        assert len(text) <= MAX_TEXT
        assert calls[f"{tool}:{kind}"] == runs, kind  # permanent: never retried
        refs[kind] = match["ref"]
    # Each failure is one event, under the trace id the ref points to.
    assert len(events) == len(EXPECTED)
    for kind, event in zip(EXPECTED, events, strict=True):
        assert event["tool"] == tool
        assert event["code"] == EXPECTED[kind][0].split(":", 1)[0]
        assert event["trace_id"].startswith(refs[kind])
        assert event["text"] == _only_text(results[kind])
        assert event["audit"]["code"] == event["code"]
    assert len(set(refs.values())) == len(refs)  # one trace per call


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_issue14_deliberate_sdk_errors_keep_their_meaning(
    transport: str, tmp_path: Path
) -> None:
    with anyio.fail_after(SESSION_TIMEOUT):
        async with connect(transport, "errors", tmp_path) as session:
            tool_error = await session.call("fail", kind="tool-error")
            with pytest.raises(MCPError) as protocol_error:
                await session.call("fail", kind="mcp-error")
            calls = await session.calls()
            events = await session.failed_events(2)

    # A ToolError's text is the tool author's message for the model.
    assert tool_error.is_error
    assert _only_text(tool_error) == "Error executing tool fail: no note is called 'x'"
    assert protocol_error.value.error.code == -32602
    assert calls == {"fail:tool-error": 1, "fail:mcp-error": 1}  # never retried
    assert [(e["code"], e["deliberate"]) for e in events] == [
        ("TOOL_ERROR", True),
        ("JSONRPC_INVALID_PARAMS", True),
    ]


# -- fail fast while the breaker is open ---------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_issue14_fail_fast_while_open(transport: str, tmp_path: Path) -> None:
    with anyio.fail_after(SESSION_TIMEOUT):
        async with connect(transport, "breaker", tmp_path) as session:
            # Two failures open the breaker; the third attempt is rejected.
            opened = await session.call("search", query="x")
            state = _only_text(await session.call("breaker_state"))
            started = time.monotonic()
            rejected = await session.call("search", query="x")
            elapsed = time.monotonic() - started
            calls = await session.calls()

    assert state == "open"
    for result in (opened, rejected):
        assert result.is_error
        text = _only_text(result)
        assert text.startswith("CIRCUIT_OPEN: search backend unavailable; retry after ")
        seconds = int(re.search(r"retry after (\d+) s", text)[1])  # type: ignore[index]
        assert 50 <= seconds <= 60  # the breaker's reset_timeout, counting down
    assert calls == {"search": 2}  # the rejected call never ran the handler
    # Failing fast: far less than the retry deadline (30 s) or the reset (60 s).
    assert elapsed < 5.0


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_issue14_fail_fast_when_tripped_by_hand(
    transport: str, tmp_path: Path
) -> None:
    with anyio.fail_after(SESSION_TIMEOUT):
        async with connect(transport, "breaker", tmp_path) as session:
            assert _only_text(await session.call("trip")) == "open"
            rejected = await session.call("search", query="x")
            calls = await session.calls()

    assert rejected.is_error
    assert _only_text(rejected).startswith("CIRCUIT_OPEN: search backend unavailable; ")
    assert calls == {}


# -- the deadline bounds the whole call ---------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_issue14_deadline_respected(transport: str, tmp_path: Path) -> None:
    with anyio.fail_after(SESSION_TIMEOUT):
        async with connect(transport, "deadline", tmp_path) as session:
            started = time.monotonic()
            result = await session.call("slow", seconds=60.0)
            elapsed = time.monotonic() - started

    assert result.is_error
    assert _only_text(result).startswith("TIMEOUT: the tool ran out of time; ")
    # deadline=1.0: without it the 20 s per-attempt timeout would run out first.
    assert elapsed < 8.0


# -- no secret reaches the client ---------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_issue14_no_secret_in_the_tool_error_text(
    transport: str, tmp_path: Path
) -> None:
    kinds = [*EXPECTED, "tool-error"]
    with anyio.fail_after(SESSION_TIMEOUT):
        async with connect(transport, "errors", tmp_path) as session:
            results = [
                await session.call(tool, kind=kind)
                for tool in ("fail", "fail_sync")
                for kind in kinds
            ]
            events = await session.failed_events(len(results))

    for result in results:
        assert result.is_error
        assert SECRET not in result.model_dump_json()
    # The full error is in the events, redacted; the secret never.
    assert len(events) == len(results)
    for event in events:
        assert SECRET not in repr(event)
        assert event["error_type"]
    for path in tmp_path.glob("events.sqlite*"):  # the database, its WAL
        assert SECRET.encode() not in path.read_bytes()


# -- a fallback is still a failure, unless it is declared a success --------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_issue14_fallback_is_reported_as_an_error(
    transport: str, tmp_path: Path
) -> None:
    with anyio.fail_after(SESSION_TIMEOUT):
        async with connect(transport, "fallback", tmp_path) as session:
            fallback = await session.call("lookup", key="k")
            success = await session.call("lookup_or_default", key="k")
            structured = await session.call("lookup_sync", key="k")

    assert fallback.is_error
    first, second = _texts(fallback)
    assert first.startswith("CONNECTION_RESET: ")
    assert second == "no answer"
    assert not success.is_error
    assert _texts(success) == ["default for ConnectionResetError"]
    assert structured.is_error
    assert _texts(structured)[0].startswith("PROGRAMMING_ERROR: the tool hit a bug")
    assert _texts(structured)[1] == '{"items":[],"stale":true}'


# -- in process: the decorator itself ------------------------------------------------


def test_issue14_the_wrapper_keeps_sync_and_async_nature() -> None:
    @resilient_tool()
    async def a(x: int) -> int:
        return x

    @resilient_tool()
    def s(x: int) -> int:
        return x

    assert inspect.iscoroutinefunction(a)
    assert not inspect.iscoroutinefunction(s)
    assert (asyncio.run(a(2)), s(3)) == (2, 3)  # type: ignore[func-returns-value]
    assert (a.__name__, s.__name__) == ("a", "s")


def test_issue14_unknown_options_and_bad_arguments_are_clear_errors() -> None:
    with pytest.raises(TypeError, match="unexpected keyword"):

        @resilient_tool(retires=3)
        def typo() -> None: ...

    with pytest.raises(ValueError, match="needs a fallback="):
        resilient_tool(fallback_is_success=True)
    with pytest.raises(ValueError, match="non-empty string"):
        resilient_tool(name="")


def test_issue14_policies_off_calls_straight_through() -> None:
    @resilient_tool()
    def broken() -> str:
        raise failure("reset")

    with pr.set_active(False), pytest.raises(ConnectionResetError):
        broken()
    result = broken()
    assert result.is_error  # type: ignore[union-attr]


def test_issue14_cancellation_and_interrupts_propagate() -> None:
    @resilient_tool(fallback="x", fallback_is_success=True)
    def interrupted() -> str:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()

    @resilient_tool(fallback="x", fallback_is_success=True)
    async def cancelled() -> str:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(cancelled())


def test_issue14_a_raising_fallback_propagates_chained() -> None:
    def no_fallback(exc: Exception) -> str:
        raise LookupError("fallback failed")

    @resilient_tool(fallback=no_fallback)
    def broken() -> str:
        raise failure("bug")

    with pytest.raises(LookupError) as raised:
        broken()
    assert isinstance(raised.value.__context__, KeyError)


# -- the agent-facing text --------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (pr.CircuitOpenError(breaker_name="search-backend", retry_after=11.2), "CIRCUIT_OPEN: search backend unavailable; retry after 12 s"),
        (pr.CircuitOpenError(breaker_name="x" * 300, retry_after=600), f"CIRCUIT_OPEN: {'x' * 60} unavailable; retry after 10 min"),
        (pr.CircuitOpenError(breaker_name="!!!"), "CIRCUIT_OPEN: backend unavailable; retry later"),
        (pr.RateLimitedError("token=abc", retry_after=0.2), "RATE_LIMITED: too many calls; retry after 1 s"),
        (pr.BulkheadFullError("full"), "BULKHEAD_FULL: too many calls at once; retry later with fewer calls at once"),
        (pr.TimeoutExceeded("slow"), "TIMEOUT: the tool ran out of time; retry later"),
        (pr.LockConflictError(key="k"), "LOCK_CONFLICT: a lock is held by another worker; retry in a few seconds"),
        (pr.CredentialExpiredError("github token=ghp_x expired"), "CREDENTIAL_EXPIRED: a credential has expired; ask the user to re-authenticate"),
        (pr.ApprovalRequiredError("x"), "APPROVAL_REQUIRED: the operation needs a human approval first; ask the user to approve or complete the step first"),
        (pr.ConfigError("bad"), "CONFIG_INVALID: a configuration file or value is invalid; do not retry; the server's operator must fix it"),
        (RuntimeError("who knows"), "UNCLASSIFIED: the tool failed unexpectedly; retry later"),
        (OSError(28, "No space left on device"), "DISK_FULL: no space left on the device (ENOSPC); do not retry; the server's operator must fix it"),
        (Exception("status 400"), "HTTP_BAD_REQUEST: HTTP 400: the server rejected the request as malformed; fix the arguments before calling again"),
        (MCPError(-32601, "Method not found"), "JSONRPC_METHOD_NOT_FOUND: JSON-RPC -32601: the method (or tool) does not exist on the peer; do not retry the same call"),
        (MCPError(-32042, "go to https://x.test/?code=s3cret"), "USER_ACTION_REQUIRED: MCP -32042: the user must complete a step in a browser (URL elicitation) first; ask the user to approve or complete the step first"),
    ],
)  # fmt: skip
def test_issue14_tool_error_text(exc: BaseException, expected: str) -> None:
    assert tool_error_text(exc) == expected
    assert tool_error_text(exc, ref="4bf92f35") == expected + " (ref 4bf92f35)"


def test_issue14_text_follows_the_verdict_not_the_code() -> None:
    # x-should-retry overrides the status rule, and the advice follows it.
    exc = failure("httpx-404")
    exc.response.headers["x-should-retry"] = "true"  # type: ignore[attr-defined]
    assert tool_error_text(exc).startswith("HTTP_NOT_FOUND: ")
    assert tool_error_text(exc).endswith("; retry later")
    exc.response.status_code = 503  # type: ignore[attr-defined]
    exc.response.headers["x-should-retry"] = "false"  # type: ignore[attr-defined]
    assert tool_error_text(exc).startswith("HTTP_SERVICE_UNAVAILABLE: ")
    assert tool_error_text(exc).endswith("; do not retry the same call")


def test_issue14_text_of_a_user_code_uses_its_summary() -> None:
    class QuotaError(Exception):
        pass

    with pr.CATALOG.register(
        "VENDOR_QUOTA",
        type=QuotaError,
        kind="permanent",
        recovery="escalate",
        summary="The vendor's daily quota is used up. Wait for midnight UTC.",
    ):
        text = tool_error_text(QuotaError("key=sk-123"), ref="abcdef01")
    assert text == (
        "VENDOR_QUOTA: the vendor's daily quota is used up; "
        "do not retry; the server's operator must fix it (ref abcdef01)"
    )


def test_issue14_text_is_bounded_and_keeps_code_action_and_ref() -> None:
    with pr.CATALOG.register(
        "LONG_WINDED",
        type=LookupError,
        kind="transient",
        summary="Something " + "very " * 100 + "bad happened",
    ):
        text = tool_error_text(LookupError(), ref="4bf92f35")
    assert len(text) == MAX_TEXT
    assert text.startswith("LONG_WINDED: something very very")
    assert text.endswith("…; retry later (ref 4bf92f35)")


# -- the extra ------------------------------------------------------------------------


def test_issue14_importing_the_library_never_imports_the_sdk() -> None:
    # Nor anything heavy: a hook that only classifies stays a fast process.
    code = (
        "import sys, paios_reliability, paios_reliability.mcp;"
        "import paios_reliability as pr; pr.classify(ValueError('status 404'));"
        "heavy = ('mcp', 'pydantic', 'tenacity', 'structlog', 'asyncio', 'httpx');"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "[]"


def test_issue14_missing_sdk_is_a_clear_dependency_error() -> None:
    # sys.modules["mcp"] = None makes every ``import mcp`` fail, as it does
    # when the extra is not installed.
    code = (
        "import sys\n"
        "sys.modules['mcp'] = None\n"
        "import paios_reliability as pr\n"
        "from paios_reliability.mcp import resilient_tool\n"
        "try:\n"
        "    resilient_tool()\n"
        "except pr.PermanentError as exc:\n"
        "    print(exc.code, pr.exit_code_for(exc), exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.startswith("DEPENDENCY_MISSING 19 ")
    assert "pip install 'paios-reliability[mcp]'" in out.stdout
