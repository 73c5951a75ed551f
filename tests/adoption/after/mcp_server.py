"""An MCP server whose ``lookup`` tool reads items from a downstream HTTP service.

An MCP client starts it and talks to it over stdio::

    DOWNSTREAM_URL=http://127.0.0.1:8080 python mcp_server.py

``lookup(key)`` returns the body of ``GET <DOWNSTREAM_URL>/items/<key>``.
"""

from __future__ import annotations

import asyncio
import os
import urllib.parse
import urllib.request

from mcp.server.mcpserver import MCPServer

import paios_reliability as pr
from paios_reliability.mcp import resilient_tool

DOWNSTREAM_URL = os.environ.get("DOWNSTREAM_URL", "http://127.0.0.1:8080")
TIMEOUT = float(os.environ.get("DOWNSTREAM_TIMEOUT", "10"))

server = MCPServer("items")
downstream = pr.CircuitBreaker("downstream")


def fetch(key: str) -> str:
    url = f"{DOWNSTREAM_URL}/items/{urllib.parse.quote(key, safe='')}"
    with urllib.request.urlopen(url) as response:
        return str(response.read().decode("utf-8"))


@server.tool()
@resilient_tool(timeout=TIMEOUT, retry={"attempts": 3}, breaker=downstream)
async def lookup(key: str) -> str:
    """Look up one item in the downstream service."""
    return await asyncio.to_thread(fetch, key)


if __name__ == "__main__":
    server.run("stdio")
