"""Type-checked (mypy --strict), never run: resilient_tool keeps parameters.

A wrapped handler takes exactly the bare handler's arguments; its result may
also be the ``CallToolResult`` that reports a failure to the client.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult
from typing_extensions import assert_type

import paios_reliability as pr
from paios_reliability.mcp import MAX_TEXT, resilient_tool, tool_error_text

server = MCPServer("typing")
backend = pr.CircuitBreaker("backend")


@server.tool()
@resilient_tool(timeout=5.0, retry=True, breaker=backend)
async def search(query: str, limit: int = 5) -> list[str]:
    return [query] * limit


@server.tool()
@resilient_tool(name="count", fallback=0, fallback_is_success=True)
def count(prefix: str) -> int:
    return len(prefix)


search_ref: Callable[[str, int], Coroutine[Any, Any, list[str] | CallToolResult]]
search_ref = search
assert_type(count("p"), int | CallToolResult)
count()  # type: ignore[call-arg]


async def caller() -> None:
    await search(3)  # type: ignore[arg-type]
    await search("q", limit="many")  # type: ignore[arg-type]
    result = await search("q")
    if isinstance(result, CallToolResult):
        assert_type(result.is_error, bool)
    else:
        assert_type(result, list[str])


resilient_tool(fallback_is_success="yes")  # type: ignore[arg-type]
resilient_tool(name=3)  # type: ignore[arg-type]
assert_type(tool_error_text(ValueError("x"), ref="4bf92f35"), str)
tool_error_text("not an exception")  # type: ignore[arg-type]
assert_type(MAX_TEXT, int)
