"""MCP servers for tests/test_mcp.py: built in-process, or run over stdio.

``build_server(scenario)`` returns an ``MCPServer`` whose tools use
``paios_reliability.mcp.resilient_tool``; the in-memory tests connect a
``Client`` to it directly. Run as a script, the same server speaks MCP over
stdio and records every library event into an ``EventStore``::

    python tests/_proc_mcp_server.py SCENARIO EVENTS_DB

Every tool failure message holds ``SECRET`` (as ``token=...``), which must
never reach the client.

Postponed annotations on purpose: the SDK must resolve them through the
wrapper to the handler's module, as it does for a bare handler.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from typing import Annotated, Any

import httpx
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, Field

import paios_reliability as pr
from paios_reliability.mcp import resilient_tool

SECRET = "sk-live-SENTINEL-7f3a9c2e"
SCENARIOS = ("schema", "errors", "breaker", "deadline", "fallback")
# Small waits, bounded attempts and deadline: a failing call ends quickly.
RETRY = {"attempts": 3, "deadline": 5.0, "wait_initial": 0.01, "wait_max": 0.05}


class Note(BaseModel):
    """A note."""

    title: str
    body: str = ""


def failure(kind: str) -> Exception:
    """The exception a failing tool raises; each message carries the secret."""
    secret = f"token={SECRET}"

    def http(status: int, headers: dict[str, str] | None = None) -> Exception:
        request = httpx.Request("GET", f"https://api.example.test/items?{secret}")
        response = httpx.Response(status, headers=headers, request=request)
        try:
            response.raise_for_status()
        except httpx.HTTPStatusError as exc:
            return exc
        raise AssertionError(status)

    makers = {
        "reset": lambda: ConnectionResetError(f"peer reset the connection, {secret}"),
        "status-404-text": lambda: Exception(
            f"Request failed with status 404 ({secret})"
        ),
        "httpx-404": lambda: http(404),
        "rate-limited": lambda: http(429, {"Retry-After": "12"}),
        "unauthorized": lambda: http(401),
        "bug": lambda: KeyError(secret),
        "invalid-params": lambda: RuntimeError(f"invalid params: limit, {secret}"),
        "tool-error": lambda: ToolError("no note is called 'x'"),
        "mcp-error": lambda: MCPError(-32602, "the downstream server said no"),
    }
    return makers[kind]()


def _schema_tools(server: MCPServer) -> None:
    """Each tool twice: ``bare_<name>`` as written, ``<name>`` under resilient_tool."""

    def make_search() -> Any:
        async def search(
            query: Annotated[str, Field(description="What to look for")],
            limit: Annotated[int, Field(ge=1, le=50, description="At most")] = 5,
            tags: list[str] | None = None,
        ) -> list[Note]:
            """Search the notes."""
            return [Note(title=query)] * min(limit, 1)

        return search

    def make_count() -> Any:
        def count(prefix: str = "", *, exact: bool = False) -> int:
            """Count the notes whose title starts with ``prefix``."""
            return len(prefix) + int(exact)

        return count

    def make_ping() -> Any:
        async def ping() -> dict[str, str]:
            """Is the server up?"""
            return {"status": "ok"}

        return ping

    for name, make in (
        ("search", make_search),
        ("count", make_count),
        ("ping", make_ping),
    ):
        server.tool(name=f"bare_{name}")(make())
        server.tool(name=name)(
            resilient_tool(name=name, timeout=5.0, retry=RETRY)(make())
        )


def _error_tools(server: MCPServer, calls: Counter[str]) -> None:
    @server.tool()
    @resilient_tool(timeout=5.0, retry=RETRY)
    async def fail(kind: str) -> str:
        """Fail the way ``kind`` says."""
        calls[f"fail:{kind}"] += 1
        await asyncio.sleep(0)
        raise failure(kind)

    @server.tool()
    @resilient_tool(timeout=5.0, retry=RETRY)
    def fail_sync(kind: str) -> str:
        """Fail the way ``kind`` says, in a worker thread."""
        calls[f"fail_sync:{kind}"] += 1
        raise failure(kind)


def _breaker_tools(server: MCPServer, calls: Counter[str]) -> None:
    backend = pr.CircuitBreaker(
        "search-backend", failure_threshold=2, reset_timeout=60.0
    )

    @server.tool()
    @resilient_tool(retry=True, breaker=backend)
    async def search(query: str) -> list[str]:
        """Search a backend that is down."""
        calls["search"] += 1
        raise failure("reset")

    @server.tool()
    def trip() -> str:
        """Open the breaker by hand."""
        backend.trip()
        return backend.state

    @server.tool()
    def breaker_state() -> str:
        """The breaker's state."""
        return backend.state


def _deadline_tools(server: MCPServer, calls: Counter[str]) -> None:
    # deadline= bounds the whole call, all attempts together; the per-attempt
    # timeout alone would let it run for 20 s, and the handler for 60 s.
    @server.tool()
    @resilient_tool(deadline=1.0, timeout=20.0, retry=True)
    async def slow(seconds: float = 60.0) -> str:
        """Answer after ``seconds``."""
        calls["slow"] += 1
        await asyncio.sleep(seconds)
        return "late"


def _fallback_tools(server: MCPServer, calls: Counter[str]) -> None:
    @server.tool()
    @resilient_tool(fallback="no answer")
    async def lookup(key: str) -> str:
        """Look ``key`` up; a fallback is still a failure."""
        calls["lookup"] += 1
        raise failure("reset")

    async def default_for(exc: Exception) -> str:
        return f"default for {type(exc).__name__}"

    @server.tool()
    @resilient_tool(fallback=default_for, fallback_is_success=True)
    async def lookup_or_default(key: str) -> str:
        """Look ``key`` up; the fallback counts as an answer."""
        calls["lookup_or_default"] += 1
        raise failure("reset")

    @server.tool()
    @resilient_tool(fallback=lambda exc: {"items": [], "stale": True})
    def lookup_sync(key: str) -> dict[str, Any]:
        """Look ``key`` up in a worker thread."""
        calls["lookup_sync"] += 1
        raise failure("bug")


def build_server(scenario: str) -> MCPServer:
    """The server of one scenario, with a ``calls`` tool counting handler runs."""
    server = MCPServer(f"paios-test-{scenario}")
    # The tests call one tool at a time, so no lock is needed.
    calls: Counter[str] = Counter()

    @server.tool()
    def handler_calls() -> dict[str, int]:
        """How many times each handler body ran."""
        return dict(calls)

    {
        "schema": lambda: _schema_tools(server),
        "errors": lambda: _error_tools(server, calls),
        "breaker": lambda: _breaker_tools(server, calls),
        "deadline": lambda: _deadline_tools(server, calls),
        "fallback": lambda: _fallback_tools(server, calls),
    }[scenario]()
    return server


def main(argv: list[str]) -> int:
    scenario, events_db = argv
    events = pr.EventStore(events_db, service="mcp-test")
    restore = events.record_library_events(min_level="info")
    try:
        build_server(scenario).run("stdio")
    finally:
        restore()
        events.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
