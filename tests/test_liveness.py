"""Liveness: stdio MCP servers that die with their client, and the orphan sweep.

Every test runs real processes: a real MCP server over real pipes, a parent
killed with a real SIGKILL, real signals.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

pytest.importorskip("mcp")
pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="POSIX signals and process groups"
)

HELPER = str(Path(__file__).with_name("_proc_liveness.py"))
# Generous: the bound proves "does not hang", not speed (expected < 1.5 s).
GONE_WITHIN = 60.0


@pytest.fixture(autouse=True)
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "run"
    monkeypatch.setenv("PAIOS_RELIABILITY_RUNTIME_DIR", str(path))
    return path


def _line(stream: IO[bytes], timeout: float = GONE_WITHIN) -> bytes:
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise AssertionError("no output from the process in time")
    return stream.readline()


def _send(fd_or_stream: int | IO[bytes], message: dict[str, Any]) -> None:
    data = (json.dumps(message) + "\n").encode()
    if isinstance(fd_or_stream, int):
        os.write(fd_or_stream, data)
    else:
        fd_or_stream.write(data)
        fd_or_stream.flush()


def _handshake(into: int | IO[bytes], out: IO[bytes]) -> None:
    _send(
        into,
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "test", "version": "1"},
            },
        },
    )
    assert json.loads(_line(out))["id"] == 1
    _send(into, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    _send(
        into,
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "ping"}},
        },
    )
    reply = json.loads(_line(out))
    assert reply["id"] == 2
    assert reply["result"]["content"][0]["text"] == "ping"


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _wait_gone(pid: int, timeout: float = GONE_WITHIN) -> float:
    start = time.monotonic()
    while not _gone(pid):
        if time.monotonic() - start > timeout:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"process {pid} still alive after {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - start


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    marker = tmp_path / "marker"
    proc = subprocess.Popen(
        [sys.executable, HELPER, "server", str(marker)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield proc, marker
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            assert stream is not None
            stream.close()


def test_stdio_server_exits_on_stdin_eof(
    server: tuple[subprocess.Popen[bytes], Path], runtime_dir: Path
) -> None:
    proc, marker = server
    assert proc.stdin is not None
    assert proc.stdout is not None
    _handshake(proc.stdin, proc.stdout)
    assert len(list((runtime_dir / "mcp").glob("*.json"))) == 1
    proc.stdin.close()
    assert proc.wait(GONE_WITHIN) == 0
    assert marker.read_text() == "eof"
    assert list((runtime_dir / "mcp").glob("*.json")) == []


def test_stdio_server_exits_on_eof_while_a_worker_thread_is_stuck(
    server: tuple[subprocess.Popen[bytes], Path],
) -> None:
    # A tool awaiting a blocking call in a worker thread (asyncio.to_thread,
    # no socket timeout) used to keep the process alive, after the server
    # had stopped, until that call returned: asyncio.run and the interpreter
    # both wait for the default executor's threads.
    proc, marker = server
    assert proc.stdin is not None
    assert proc.stdout is not None
    _handshake(proc.stdin, proc.stdout)
    _send(
        proc.stdin,
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {"name": "stuck", "arguments": {"seconds": 3600}},
        },
    )
    time.sleep(0.3)  # the call is in its worker thread (either way, no hang)
    proc.stdin.close()
    assert proc.wait(GONE_WITHIN) == 0
    assert marker.read_text() == "eof"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_stdio_server_stops_cleanly_on_signal(
    server: tuple[subprocess.Popen[bytes], Path], signum: signal.Signals
) -> None:
    # The SDK's own stdio loop ignored SIGINT while its reader blocked on stdin.
    proc, marker = server
    assert proc.stdin is not None
    assert proc.stdout is not None
    _handshake(proc.stdin, proc.stdout)
    proc.send_signal(signum)
    assert proc.wait(GONE_WITHIN) == 0
    assert marker.read_text() == signum.name


def _orphaned(
    mode: str, tmp_path: Path
) -> tuple[int, subprocess.Popen[bytes], Path, int, IO[bytes]]:
    """Start ``mode`` under a parent; its stdin pipe stays open in this process.

    Returns the child's pid, the parent, the marker, the write end of
    the child's stdin and the shared stdout.
    """
    marker = tmp_path / "marker"
    read_end, write_end = os.pipe()
    parent = subprocess.Popen(
        [sys.executable, HELPER, "parent", mode, str(marker), str(read_end)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        pass_fds=(read_end,),
    )
    os.close(read_end)
    assert parent.stdout is not None
    child = int(_line(parent.stdout))
    return child, parent, marker, write_end, parent.stdout


def _kill_parent(parent: subprocess.Popen[bytes]) -> None:
    parent.send_signal(signal.SIGKILL)
    parent.wait()


def test_stdio_server_exits_when_its_client_is_killed(tmp_path: Path) -> None:
    # The stdin pipe stays open (this process holds the write end), so only
    # the parent's death can end the server: the zombie-server case.
    child, parent, marker, write_end, out = _orphaned("server", tmp_path)
    try:
        _handshake(write_end, out)
        _kill_parent(parent)
        _wait_gone(child)
        assert marker.read_text() == "parent_gone"
    finally:
        _kill_parent(parent)
        os.close(write_end)
        out.close()


def test_exit_with_parent_polls_without_the_kernel_signal(tmp_path: Path) -> None:
    child, parent, marker, write_end, out = _orphaned("watch", tmp_path)
    try:
        assert _line(out) == b"ready\n"
        _kill_parent(parent)
        _wait_gone(child)
        # atexit ran: the exit was a clean one, not os._exit.
        assert marker.read_text() == "exited"
    finally:
        _kill_parent(parent)
        os.close(write_end)
        out.close()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "paios_reliability", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_sweep_lists_and_kills_only_registered_orphans(tmp_path: Path) -> None:
    orphan, parent, marker, write_end, out = _orphaned("orphan", tmp_path)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        assert _line(out) == b"ready\n"
        listed = _cli("mcp", "sweep", "--json")
        assert listed.returncode == 0, listed.stderr
        [entry] = json.loads(listed.stdout)
        assert (entry["pid"], entry["state"], entry["ended"]) == (
            orphan,
            "running",
            False,
        )

        _kill_parent(parent)
        listed = _cli("mcp", "sweep")
        assert listed.returncode == 0, listed.stderr
        assert "orphaned" in listed.stdout
        assert "--kill" in listed.stdout
        assert not _gone(orphan)

        killed = _cli("mcp", "sweep", "--kill", "--json")
        assert killed.returncode == 0, killed.stderr
        [entry] = json.loads(killed.stdout)
        assert (entry["pid"], entry["state"], entry["ended"]) == (
            orphan,
            "orphaned",
            True,
        )
        _wait_gone(orphan)
        assert marker.read_text() == "exited"  # SIGTERM first: a clean exit
        assert bystander.poll() is None  # never registered, never touched
        assert _cli("mcp", "sweep").stdout.strip() == "no registered MCP servers"
    finally:
        _kill_parent(parent)
        bystander.kill()
        bystander.wait()
        os.close(write_end)
        out.close()
        if not _gone(orphan):
            os.kill(orphan, signal.SIGKILL)


def test_sweep_removes_stale_and_unreadable_entries(runtime_dir: Path) -> None:
    from paios_reliability._ops.registry import register_server, sweep

    reg = register_server("me")
    servers = runtime_dir / "mcp"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (servers / f"{dead.pid}.json").write_text(
        json.dumps(
            {
                "pid": dead.pid,
                "client_pid": 1,
                "start": "1",
                "name": "x",
                "registered_at": 0,
            }
        )
    )
    (servers / "12345.json").write_text("{not json")
    (servers / "777.json").write_text(json.dumps({"pid": os.getpid(), "client_pid": 1}))
    entries = sweep(kill=True)
    assert [(e.pid, e.state, e.ended) for e in entries] == [
        (dead.pid, "gone", False),
        (os.getpid(), "running", False),
    ]
    assert sorted(p.name for p in servers.glob("*.json")) == [f"{os.getpid()}.json"]
    reg.close()
    assert list(servers.glob("*.json")) == []


def test_runtime_dir_is_private(runtime_dir: Path) -> None:
    from paios_reliability._ops.registry import runtime_dir as get

    assert get() == runtime_dir
    assert runtime_dir.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), True])
def test_exit_with_parent_rejects_bad_interval(bad: float) -> None:
    from paios_reliability import exit_with_parent

    with pytest.raises(ValueError, match="interval"):
        exit_with_parent(interval=bad)


def _wait_for(path: Path) -> None:
    start = time.monotonic()
    while not path.exists():
        assert time.monotonic() - start < GONE_WITHIN, f"{path.name} never appeared"
        time.sleep(0.01)


def test_drain_finishes_calls_in_flight_and_refuses_new_ones(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    proc = subprocess.Popen(
        [sys.executable, HELPER, "draining", str(marker)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdin is not None
        assert proc.stdout is not None
        _send(
            proc.stdin,
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "test", "version": "1"},
                },
            },
        )
        assert json.loads(_line(proc.stdout))["id"] == 1
        _send(proc.stdin, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        call = {"jsonrpc": "2.0", "method": "tools/call"}
        _send(
            proc.stdin, {**call, "id": 2, "params": {"name": "slow", "arguments": {}}}
        )
        _wait_for(tmp_path / "started")
        proc.send_signal(signal.SIGTERM)
        _wait_for(tmp_path / "draining")
        _send(
            proc.stdin, {**call, "id": 3, "params": {"name": "quick", "arguments": {}}}
        )
        refused = json.loads(_line(proc.stdout))
        assert refused["id"] == 3
        assert refused["result"]["isError"] is True
        assert refused["result"]["content"][0]["text"].startswith(
            "SERVICE_UNAVAILABLE:"
        )
        (tmp_path / "release").write_text("1")
        finished = json.loads(_line(proc.stdout))
        assert finished["id"] == 2
        assert finished["result"]["content"][0]["text"] == "finished"
        assert proc.wait(GONE_WITHIN) == 0
        assert marker.read_text() == "SIGTERM"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
