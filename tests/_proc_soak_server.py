"""The stdio MCP server of benchmarks/mcp_soak.py and tests/test_soak.py.

Tool ``work(i)`` fails on a fixed pattern: every 10th call with a transient
error twice (the retry absorbs it), every 15th permanently (a tool error),
every 25th (``slow_every``) by timing out; ``stats()`` reports this process's RSS (MB), open
file descriptors, threads and asyncio tasks.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections import Counter

from mcp.server.mcpserver import MCPServer

from paios_reliability.mcp import resilient_tool, run_stdio

RETRY = {"attempts": 3, "deadline": 5.0, "wait_initial": 0.001, "wait_max": 0.01}


def build(slow_every: int = 25) -> MCPServer:
    app = MCPServer("soak")
    attempts: Counter[int] = Counter()

    @app.tool()
    @resilient_tool(timeout=0.2, retry=RETRY)
    async def work(i: int) -> str:
        """Do one unit of work, failing on a fixed pattern."""
        attempts[i] += 1
        if i % 10 == 0 and attempts[i] <= 2:
            raise ConnectionResetError("peer reset")
        if i % 15 == 0:
            raise PermissionError("not allowed")
        if i % slow_every == 0:
            await asyncio.sleep(1.0)
        attempts.pop(i, None)
        return f"ok {i}"

    @app.tool()
    async def stats() -> str:
        """Resource use of this process."""
        return json.dumps(snapshot())

    return app


def snapshot() -> dict[str, float]:
    """RSS in MB, open fds, threads and asyncio tasks of this process."""
    rss = 0.0
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    try:
        fds = len(os.listdir("/proc/self/fd"))
    except OSError:
        fds = len(os.listdir("/dev/fd"))
    try:
        tasks = len(asyncio.all_tasks())
    except RuntimeError:
        tasks = 0
    return {
        "rss_mb": round(rss, 1),
        "fds": fds,
        "threads": threading.active_count(),
        "tasks": tasks,
    }


if __name__ == "__main__":
    run_stdio(build(), register=False)
