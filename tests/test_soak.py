"""1,000 tool calls through an in-memory MCP client: no growth of fds, threads, tasks."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

pytest.importorskip("mcp")

from mcp.client import Client

from _proc_soak_server import build


def _fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return len(os.listdir("/dev/fd"))


def test_a_thousand_calls_with_faults_leave_no_growth() -> None:
    server = build(slow_every=100)

    async def soak() -> tuple[dict[str, int], dict[str, int], int]:
        failed = 0

        def sample() -> dict[str, int]:
            return {
                "fds": _fds(),
                "threads": threading.active_count(),
                "tasks": len(asyncio.all_tasks()),
            }

        async with Client(server, read_timeout_seconds=60) as client:
            for i in range(1, 201):  # warm-up: pools and caches fill
                await client.call_tool("work", {"i": i})
            before = sample()
            for i in range(201, 1201):
                result = await client.call_tool("work", {"i": i})
                failed += bool(result.is_error)
            after = sample()
        return before, after, failed

    before, after, failed = asyncio.run(soak())
    # 1,000 calls: every 15th fails permanently, every 100th times out.
    assert failed == len({i for i in range(201, 1201) if i % 15 == 0 or i % 100 == 0})
    for key in ("fds", "threads", "tasks"):
        assert after[key] <= before[key], (key, before, after)
