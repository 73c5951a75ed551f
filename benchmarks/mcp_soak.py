"""Soak: 1,000+ tool calls through a stdio MCP server, with faults mixed in.

Run: python benchmarks/mcp_soak.py [--calls N] [--every K]

Starts ``tests/_proc_soak_server.py`` (an ``MCPServer`` whose tools use
``resilient_tool`` and ``run_stdio``) as a real subprocess, calls its tools
``--calls`` times (default 1,000; one call in five fails: transient errors
that the retry absorbs, permanent errors returned as tool errors, and
timeouts) and every ``--every`` calls (default 100) prints the server's RSS,
open file descriptors, threads and asyncio tasks, as the server reports
them. A steady service shows flat columns after warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "tests" / "_proc_soak_server.py"


async def soak(calls: int, every: int, quiet: Any) -> list[dict[str, float]]:
    from mcp.client import Client
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(command=sys.executable, args=[str(SERVER)])
    return await _calls(
        Client(stdio_client(params, errlog=quiet), read_timeout_seconds=60),
        calls,
        every,
    )


async def _calls(client_cm: Any, calls: int, every: int) -> list[dict[str, float]]:
    rows: list[dict[str, float]] = []
    started = time.perf_counter()
    async with client_cm as client:
        for i in range(1, calls + 1):
            await client.call_tool("work", {"i": i})
            if i % every == 0:
                result = await client.call_tool("stats", {})
                row = json.loads(result.content[0].text)  # type: ignore[union-attr]
                row["calls"] = i
                row["elapsed_s"] = round(time.perf_counter() - started, 2)
                rows.append(row)
                print(
                    f"{i:>6} calls  rss {row['rss_mb']:7.1f} MB  fds {row['fds']:4.0f}"
                    f"  threads {row['threads']:3.0f}  tasks {row['tasks']:3.0f}"
                    f"  {row['elapsed_s']:7.2f} s",
                    flush=True,
                )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--every", type=int, default=100)
    args = parser.parse_args()
    with open(os.devnull, "w") as quiet:  # the server's event log: not the point here
        rows = asyncio.run(soak(args.calls, args.every, quiet))
    settled = rows[len(rows) // 2 :]
    grew = {k: settled[-1][k] - settled[0][k] for k in ("fds", "threads", "tasks")}
    print("growth over the second half:", grew)
    return 0 if all(v <= 0 for v in grew.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
