"""An MCP server (official ``mcp`` SDK, ``MCPServer``) adopting paios_reliability.

It exposes two tools over stdio:

- ``lookup(key)`` fetches ``<downstream_url>/items/<key>`` from an HTTP
  backend. The handler runs under ``resilient_tool``: a per-attempt timeout,
  retries of transient failures (503, resets, timeouts), a circuit breaker
  around the backend. A permanent failure (404) is not retried. The final
  failure reaches the client as an error result that starts with its catalog
  code and says what the agent can do (``HTTP_NOT_FOUND: HTTP 404: the
  resource does not exist; do not retry the same call (ref 4bf92f35)``); the
  full error is an ``mcp.tool_failed`` event under that trace id.
- ``status()`` reports the breaker state and the settings in use.

Settings come from a JSON file validated by a pydantic model through
``ConfigFile`` (a bad file stops the server at start with one clear line on
stderr and the exit code of ``exit_code_for``). Every library event (retries,
breaker transitions) is recorded in an ``EventStore``.

Run it (an MCP client normally starts it for you)::

    python examples/mcp_server.py --settings mcp_server.json

stdout carries the MCP protocol, so nothing else is ever printed there.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

import paios_reliability as pr
from paios_reliability.mcp import resilient_tool


class Settings(BaseModel):
    """The server's settings file."""

    model_config = ConfigDict(extra="forbid")
    downstream_url: str = "http://127.0.0.1:8080"
    timeout: float = Field(default=5.0, gt=0, le=60)
    retry_attempts: int = Field(default=3, ge=1, le=10)
    retry_deadline: float = Field(default=20.0, gt=0, le=300)
    failure_threshold: int = Field(default=5, ge=1)
    reset_timeout: float = Field(default=30.0, gt=0)
    events_db: str = "observability.sqlite"


def build_server(settings: Settings, events: pr.EventStore) -> Any:
    """The MCP server with its tools, wired to ``settings``."""
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("paios-example")
    backend = pr.CircuitBreaker(
        "downstream",
        failure_threshold=settings.failure_threshold,
        reset_timeout=settings.reset_timeout,
    )

    def fetch(key: str) -> str:
        url = f"{settings.downstream_url}/items/{urllib.parse.quote(key, safe='')}"
        # The socket timeout only bounds the abandoned thread: @resilient's
        # timeout already answered the caller.
        with urllib.request.urlopen(url, timeout=settings.timeout + 1) as response:  # noqa: S310
            return str(response.read().decode("utf-8"))

    @server.tool()
    @resilient_tool(
        name="tools.lookup",
        timeout=settings.timeout,
        retry={
            "attempts": settings.retry_attempts,
            "deadline": settings.retry_deadline,
            "wait_initial": 0.05,
            "wait_max": 1.0,
        },
        breaker=backend,
    )
    async def lookup(key: str) -> str:
        """Look up one item in the downstream service."""
        events.emit("tool", "called", tool="lookup", key=key)
        return await asyncio.to_thread(fetch, key)

    @server.tool()
    async def status() -> dict[str, Any]:
        """The breaker state and the settings in use."""
        return {"breaker": backend.state, "settings": settings.model_dump()}

    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default="mcp_server.json")
    args = parser.parse_args(argv)
    try:
        settings = pr.ConfigFile(args.settings, Settings, default=Settings()).load()
        events = pr.EventStore(settings.events_db, service="mcp-example")
    except Exception as exc:  # noqa: BLE001 - one clear line, a stable exit code
        print(f"mcp_server: {type(exc).__name__}: {exc}", file=sys.stderr)
        return pr.exit_code_for(exc)
    restore = events.record_library_events(min_level="info")
    try:
        build_server(settings, events).run("stdio")
    finally:
        restore()
        events.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
