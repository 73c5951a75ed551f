"""Type-checked, not run: the liveness API keeps its types."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer
from typing_extensions import assert_type

import paios_reliability as pr
from paios_reliability.mcp import StopReason, run_stdio


def check_parent_watch() -> None:
    watch = pr.exit_with_parent(interval=0.5, grace=5.0, pdeathsig=False)
    assert_type(watch, pr.ParentWatch)
    assert_type(watch.parent_gone, bool)
    watch.stop()


def check_run_stdio(server: MCPServer) -> None:
    assert_type(run_stdio(server, interval=0.2, register=False), StopReason)


async def check_watchdogs() -> None:
    async with pr.StallWatchdog(1.0, name="loop") as stall:
        assert_type(stall, pr.StallWatchdog)
        assert_type(stall.stalls, int)
    with pr.HangWatchdog(10.0, name="w") as hang:
        hang.beat()
        assert_type(hang.hangs, int)
    assert_type(pr.sd_notify(ready=True, status="ok"), bool)


def check_heartbeat(store: pr.SQLiteStore) -> None:
    hb = pr.Heartbeat("job", every=60.0, grace=5.0, store=store)
    hb.beat()
    status = hb.check()
    assert_type(status, pr.HeartbeatStatus)
    assert_type(status.last_beat, float | None)


async def check_timed() -> None:
    @pr.timed("kb_search", tool="search")
    def search(query: str) -> list[str]:
        return [query]

    @pr.timed("kb_write")
    async def write(text: str) -> int:
        return len(text)

    assert_type(search("x"), list[str])
    assert_type(await write("x"), int)
    with pr.timed("block"):
        pass
