"""Processes for tests/test_liveness.py.

``python tests/_proc_liveness.py server MARKER`` serves a small ``MCPServer``
with ``paios_reliability.mcp.run_stdio``; at a clean exit it writes the stop
reason to MARKER (from an ``atexit`` handler, so the file proves that the
process unwound normally).

``python tests/_proc_liveness.py watch MARKER`` calls ``exit_with_parent``
without the kernel's parent-death signal, prints ``ready`` and sleeps; at a
clean exit it writes ``exited`` to MARKER.

``python tests/_proc_liveness.py parent MODE MARKER FD`` starts one of the
others with stdin taken from the inherited FD, prints the child's pid and
sleeps until killed.
"""

from __future__ import annotations

import atexit
import signal
import subprocess
import sys
import time
from pathlib import Path


def _mark(path: str, text: str) -> None:
    Path(path).write_text(text, encoding="utf-8")


def server(marker: str) -> None:
    from mcp.server.mcpserver import MCPServer

    from paios_reliability.mcp import run_stdio

    app = MCPServer("liveness-test")

    @app.tool()
    def echo(text: str) -> str:
        """Return the text."""
        return text

    @app.tool()
    def block(seconds: float) -> str:
        """Block the event loop (a handler that forgot to be async)."""
        time.sleep(seconds)
        return "done"

    @app.tool()
    async def stuck(seconds: float) -> str:
        """Wait in a worker thread (a blocking client without a timeout)."""
        import asyncio

        await asyncio.to_thread(time.sleep, seconds)
        return "done"

    reason: list[str] = []
    atexit.register(lambda: _mark(marker, reason[0] if reason else "none"))
    reason.append(run_stdio(app, interval=0.2, stop_grace=1.0))


def watch(marker: str) -> None:
    from paios_reliability import exit_with_parent

    atexit.register(_mark, marker, "exited")
    exit_with_parent(interval=0.1, pdeathsig=False)
    print("ready", flush=True)
    time.sleep(600)


def parent(mode: str, marker: str, fd: int) -> None:
    child = subprocess.Popen([sys.executable, __file__, mode, marker], stdin=fd)
    print(child.pid, flush=True)
    time.sleep(600)


def orphan(marker: str) -> None:
    """Registers as a server but never watches its parent: an orphan to sweep."""
    from paios_reliability._ops.registry import register_server

    def on_sigterm(signum: int, frame: object) -> None:
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, on_sigterm)
    register_server("orphan-test")
    atexit.register(_mark, marker, "exited")
    print("ready", flush=True)
    time.sleep(600)


def traced(db: str) -> None:
    """An MCP server whose tool runs a child process; all three record events."""
    from mcp.server.mcpserver import MCPServer

    import paios_reliability as pr
    from paios_reliability._core.events import emit
    from paios_reliability.mcp import resilient_tool, run_stdio

    app = MCPServer("traced")

    @app.tool()
    @resilient_tool(timeout=60.0)
    def spawn() -> str:
        """Run a child process in the caller's trace."""
        emit("test", "server_tool_ran", level="info")
        done = pr.run_process([sys.executable, __file__, "child", db], timeout=60)
        return str(done.returncode)

    events = pr.EventStore(db, service="server")
    restore = events.record_library_events(min_level="info")
    try:
        run_stdio(app, register=False)
    finally:
        restore()
        events.close()


def draining(marker: str) -> None:
    """A server that drains on SIGTERM; files in MARKER's directory synchronise."""
    import asyncio

    from mcp.server.mcpserver import MCPServer

    import paios_reliability as pr
    from paios_reliability.mcp import resilient_tool, run_stdio

    folder = Path(marker).parent
    app = MCPServer("draining")

    @app.tool()
    @resilient_tool()
    async def slow() -> str:
        """Finish only once the test releases it."""
        (folder / "started").write_text("1")
        while not (folder / "release").exists():
            await asyncio.sleep(0.02)
        return "finished"

    @app.tool()
    @resilient_tool()
    def quick() -> str:
        """Answer at once."""
        return "quick"

    def on_event(event: pr.Event) -> None:
        if event.name == "paios_reliability.mcp.draining":
            (folder / "draining").write_text("1")

    pr.add_event_hook(on_event)
    reason: list[str] = []
    atexit.register(lambda: _mark(marker, reason[0] if reason else "none"))
    reason.append(run_stdio(app, register=False, drain=30.0))


def child(db: str) -> None:
    import paios_reliability as pr
    from paios_reliability._core.events import emit

    events = pr.EventStore(db, service="child")
    restore = events.record_library_events(min_level="info")
    try:
        with pr.trace(step="child"):
            emit("test", "child_ran", level="info")
    finally:
        restore()
        events.close()


if __name__ == "__main__":
    if sys.argv[1] == "parent":
        parent(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        {
            "server": server,
            "watch": watch,
            "orphan": orphan,
            "traced": traced,
            "child": child,
            "draining": draining,
        }[sys.argv[1]](sys.argv[2])
