"""Adoption in ten lines: five real files, before and after adopting the library.

``tests/adoption/before/<kind>.py`` is a file as users write it, with the
stdlib and the official ``mcp`` SDK; ``tests/adoption/after/<kind>.py`` is the
same file adopting ``paios_reliability`` (public names only). Each pair
differs by at most ten lines, and both versions run here as real processes
under the faults the adoption is for. The AFTER version must behave. Where the
BEFORE version's misbehaviour is deterministic (a 503 passed on to the model,
a call that waits out a hanging backend, an orphaned grandchild, a traceback
that blocks the tool call, a config error that does not name the file, a
leaked key) it is asserted too; where it depends on timing (lost updates,
torn files) it is only reported.

Every subprocess and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import paios_reliability as pr

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="POSIX signals and process groups"
)

ADOPTION = Path(__file__).resolve().parent / "adoption"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "adoption.md"
KINDS = ("mcp_server", "hook", "daemon", "config_writer", "auth_profiles")
VERSIONS = ("before", "after")
MAX_CHANGED = 10
PROC_TIMEOUT = 60.0
# The subprocesses import the same paios_reliability as this test.
SRC = str(Path(pr.__file__).resolve().parent.parent)
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(
        p for p in (SRC, os.environ.get("PYTHONPATH", "")) if p
    ),
}


def _script(version: str, kind: str) -> Path:
    return ADOPTION / version / f"{kind}.py"


def changed_lines(kind: str) -> int:
    """Lines added plus lines removed from BEFORE to AFTER, blank lines ignored."""
    before, after = (
        [line for line in _script(v, kind).read_text().splitlines() if line.strip()]
        for v in VERSIONS
    )
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    return sum(
        (i2 - i1) + (j2 - j1)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes()
        if tag != "equal"
    )


def _run(
    version: str,
    kind: str,
    *args: str,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(_script(version, kind)), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=PROC_TIMEOUT,
        check=False,
    )


def _start(argv: list[str], *, stdin: int | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        argv,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )


def _concurrently(
    argvs: list[list[str]], stdins: list[str] | None = None
) -> list[tuple[int, str, str]]:
    """Start every process, then feed them all; (returncode, stdout, stderr) each.

    The processes block on stdin until every one has started, so their work
    overlaps as much as the machine allows.
    """
    pipes = [os.pipe() for _ in argvs]
    procs = []
    try:
        for argv, (read_end, _) in zip(argvs, pipes, strict=True):
            procs.append(_start(argv, stdin=read_end))
        for (_, write_end), data in zip(
            pipes, stdins or [""] * len(argvs), strict=True
        ):
            os.write(write_end, data.encode())  # small: fits in the pipe
            os.close(write_end)
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=PROC_TIMEOUT)
            results.append((proc.returncode, out, err))
    finally:
        for read_end, write_end in pipes:
            for fd in (read_end, write_end):
                with contextlib.suppress(OSError):
                    os.close(fd)
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=PROC_TIMEOUT)
    return results


def _wait_until(
    condition: Callable[[], bool], what: str, timeout: float = 20.0
) -> None:
    give_up = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > give_up:
            pytest.fail(f"gave up after {timeout} s waiting for {what}")
        time.sleep(0.01)


class Lines:
    """The lines a process writes on stdout, read by a thread, waited for with bounds."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        stream = proc.stdout
        self.queue: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []

        def pump() -> None:
            for line in stream:
                self.queue.put(line.rstrip("\n"))

        self.thread = threading.Thread(target=pump, daemon=True)
        self.thread.start()

    def next(self, timeout: float) -> str | None:
        """The next line, or ``None`` if none came within ``timeout`` seconds."""
        try:
            line = self.queue.get(timeout=timeout)
        except queue.Empty:
            return None
        self.seen.append(line)
        return line

    def expect(self, wanted: str, timeout: float = PROC_TIMEOUT) -> None:
        give_up = time.monotonic() + timeout
        while (left := give_up - time.monotonic()) > 0:
            if self.next(left) == wanted:
                return
        pytest.fail(f"no line {wanted!r} within {timeout} s; saw {self.seen!r}")


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie, dead but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (macOS): a zombie counts as running there
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _all_gone(*pids: int) -> Callable[[], bool]:
    return lambda: not any(map(_alive, pids))


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


# -- the diffs ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_adoption_changes_at_most_ten_lines(kind: str) -> None:
    count = changed_lines(kind)
    assert 0 < count <= MAX_CHANGED, f"{kind}: {count} changed lines (max 10)"
    before, after = (_script(v, kind).read_text() for v in VERSIONS)
    assert "paios_reliability" not in before
    assert "import paios_reliability as pr" in after
    # Public names only: no private module of the library.
    assert not re.search(r"paios_reliability\.(_|\w+\._)", after)


def test_docs_table_gives_the_real_counts() -> None:
    rows = dict(re.findall(r"^\| `(\w+)\.py` \| (\d+) \|", DOCS.read_text(), re.M))
    assert rows == {kind: str(changed_lines(kind)) for kind in KINDS}


# -- the MCP server -------------------------------------------------------------------


class Downstream:
    """A loopback HTTP service whose faults are chosen by the item key.

    ``down`` always answers 503; ``flaky-N`` answers 503 N times, then 200;
    ``hang`` answers only once ``release`` is set; anything else is 200.
    """

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.release = threading.Event()
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                key = self.path.rsplit("/", 1)[-1]
                with service.lock:
                    service.hits[key] += 1
                    hit = service.hits[key]
                if key == "down" or (
                    key.startswith("flaky-") and hit <= int(key.split("-")[1])
                ):
                    self.send_error(503)
                    return
                if key == "hang":
                    service.release.wait(PROC_TIMEOUT)
                body = f"value of {key}".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def downstream() -> Iterator[Downstream]:
    service = Downstream()
    thread = threading.Thread(target=service.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield service
    finally:
        service.release.set()
        service.server.shutdown()
        service.server.server_close()
        thread.join(PROC_TIMEOUT)


@contextlib.asynccontextmanager
async def _mcp_session(version: str, url: str, cwd: Path) -> AsyncIterator[Any]:
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(
        command=sys.executable,
        args=[str(_script(version, "mcp_server"))],
        env={
            "PYTHONPATH": ENV["PYTHONPATH"],
            "DOWNSTREAM_URL": url,
            "DOWNSTREAM_TIMEOUT": "0.5",
        },
        cwd=cwd,
    )
    with open(cwd / f"{version}.stderr", "w") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write, read_timeout_seconds=PROC_TIMEOUT) as session,
        ):
            await session.initialize()
            yield session


def _text(result: Any) -> str:
    return " ".join(getattr(part, "text", "") for part in result.content)


async def _lookup(session: Any, key: str) -> tuple[Any, float]:
    started = time.monotonic()
    result = await session.call_tool("lookup", {"key": key})
    return result, time.monotonic() - started


async def test_mcp_server_after_retries_bounds_a_hang_and_fails_fast(
    downstream: Downstream, tmp_path: Path
) -> None:
    async with _mcp_session("after", downstream.url, tmp_path) as session:
        # Two 503s are retried away: the model gets the answer.
        flaky, _ = await _lookup(session, "flaky-2")
        assert not flaky.is_error, _text(flaky)
        assert _text(flaky) == "value of flaky-2"
        assert downstream.hits["flaky-2"] == 3

        # A hanging backend costs two 0.5 s attempts, not the backend's 60 s.
        hung, seconds = await _lookup(session, "hang")
        downstream.release.set()
        assert hung.is_error
        assert _text(hung).startswith("TIMEOUT: the tool ran out of time; retry later")
        assert seconds < 15.0, f"the hanging call took {seconds:.1f} s"

        ok, _ = await _lookup(session, "ok")  # a success ends the failure streak
        assert not ok.is_error, _text(ok)

        # A dead backend: retried, then an error the model can act on.
        down, _ = await _lookup(session, "down")
        assert down.is_error
        assert _text(down).startswith(
            "HTTP_SERVICE_UNAVAILABLE: HTTP 503: the server is overloaded or down; "
            "retry later (ref "
        )
        assert downstream.hits["down"] == 3
        again, _ = await _lookup(session, "down")  # 5 failures in a row: open
        assert again.is_error
        assert downstream.hits["down"] == 5

        # The open breaker answers at once, without touching the backend.
        rejected, seconds = await _lookup(session, "down")
        assert rejected.is_error
        assert _text(rejected).startswith(
            "CIRCUIT_OPEN: downstream unavailable; retry after "
        )
        assert downstream.hits["down"] == 5
        assert seconds < 2.0, f"the open breaker took {seconds:.1f} s"
    assert "Traceback" not in _text(down) + _text(rejected)


async def test_mcp_server_before_fails_on_a_blip_and_waits_out_a_hang(
    downstream: Downstream, tmp_path: Path
) -> None:
    async with _mcp_session("before", downstream.url, tmp_path) as session:
        # One 503 reaches the model as the SDK's bare error: no retry.
        flaky, _ = await _lookup(session, "flaky-1")
        assert flaky.is_error
        assert _text(flaky) == "Error executing tool lookup"
        assert downstream.hits["flaky-1"] == 1

        # No breaker: every call goes to the dead backend.
        for _ in range(3):
            down, _ = await _lookup(session, "down")
            assert down.is_error
        assert downstream.hits["down"] == 3

        # No timeout: the call lasts as long as the backend hangs.
        call = asyncio.ensure_future(_lookup(session, "hang"))
        give_up = time.monotonic() + PROC_TIMEOUT
        while not downstream.hits["hang"] and time.monotonic() < give_up:
            await asyncio.sleep(0.01)
        assert downstream.hits["hang"] == 1
        await asyncio.sleep(1.0)  # twice the timeout AFTER answers within
        assert not call.done()
        downstream.release.set()
        hung, _ = await asyncio.wait_for(call, PROC_TIMEOUT)
        assert _text(hung) == "value of hang"  # only when the backend answered


# -- the hook -------------------------------------------------------------------------

EVENT = {"tool": "Bash", "session_id": "s-1", "status": "ok"}


def test_hook_garbage_database(tmp_path: Path) -> None:
    garbage = bytes(range(256)) * 16
    db = tmp_path / "calls.sqlite"
    results = {}
    for version in VERSIONS:
        db.write_bytes(garbage)
        done = _run(
            version,
            "hook",
            str(db),
            str(tmp_path / f"{version}.json"),
            stdin=json.dumps(EVENT),
        )
        results[version] = done
        assert db.read_bytes() == garbage, version

    before, after = results["before"], results["after"]
    assert before.returncode != 0  # a traceback: the tool call is blocked
    assert "Traceback" in before.stderr
    # AFTER: exit 0, one line on stderr naming the error, the file untouched.
    assert after.returncode == 0, after.stderr
    assert after.stdout == ""
    [line] = after.stderr.splitlines()
    assert "(DB_NOT_A_DATABASE)" in line
    assert "calls.sqlite" in line
    assert sorted(p.name for p in tmp_path.glob("calls.sqlite*")) == ["calls.sqlite"]


def test_hook_eight_concurrent_processes_lose_no_count(tmp_path: Path) -> None:
    counts = {}
    for version in VERSIONS:
        db, usage = tmp_path / f"{version}.sqlite", tmp_path / f"{version}.json"
        argv = [sys.executable, str(_script(version, "hook")), str(db), str(usage)]
        results = _concurrently(
            [argv] * 8,
            [json.dumps({**EVENT, "session_id": f"s-{i}"}) for i in range(8)],
        )
        if version == "after":
            assert [(code, err) for code, _, err in results] == [(0, "")] * 8
        try:
            counts[version] = json.loads(usage.read_text()).get("Bash", 0)
        except (OSError, ValueError) as exc:  # BEFORE may leave a torn file
            counts[version] = f"unreadable ({type(exc).__name__})"
    print(f"usage counted by 8 concurrent hooks: {counts}")
    assert counts["after"] == 8, counts
    with pr.open_database(tmp_path / "after.sqlite", readonly=True) as conn:
        (rows,) = conn.execute("SELECT COUNT(*) FROM calls").fetchone()
    assert rows == 8


# -- the daemon -----------------------------------------------------------------------

# A job whose shell starts a grandchild, as build scripts and test runners do,
# and writes "<shell pid> <grandchild pid>" to the file named by its argument.
SPAWNING_JOB = [
    "sh",
    "-c",
    'sleep 60 & echo "$$ $!" > "$0.tmp" && mv "$0.tmp" "$0"; wait',
]


class Daemon:
    def __init__(self, version: str, tmp_path: Path) -> None:
        self.jobs = tmp_path / f"{version}-jobs"
        self.jobs.mkdir()
        self.proc = _start(
            [sys.executable, str(_script(version, "daemon")), str(self.jobs)]
        )
        self.lines = Lines(self.proc)
        self.lines.expect("ready")
        self.pids: list[int] = []

    def submit(self, name: str, argv: list[str], timeout: float) -> None:
        staged = self.jobs / f"{name}.staged"
        staged.write_text(json.dumps({"argv": argv, "timeout": timeout}))
        staged.rename(self.jobs / f"{name}.json")

    def spawning_job(self, name: str, timeout: float) -> tuple[int, int]:
        """Submit a job that starts a grandchild; (shell pid, grandchild pid)."""
        pidfile = self.jobs.parent / f"{name}.pids"
        self.submit(name, [*SPAWNING_JOB, str(pidfile)], timeout)
        _wait_until(pidfile.exists, f"{name} to start")
        shell, child = map(int, pidfile.read_text().split())
        self.pids += [shell, child]
        return shell, child

    def finish(self) -> int:
        try:
            self.proc.wait(PROC_TIMEOUT)
        finally:
            self.close()
        return self.proc.returncode

    def close(self) -> None:
        for pid in self.pids:
            _kill(pid)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(PROC_TIMEOUT)
        self.lines.thread.join(PROC_TIMEOUT)
        self.proc.communicate(timeout=PROC_TIMEOUT)


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Callable[[str], Daemon]]:
    started: list[Daemon] = []

    def start(version: str) -> Daemon:
        daemon = Daemon(version, tmp_path)
        started.append(daemon)
        return daemon

    try:
        yield start
    finally:
        for daemon in started:
            daemon.close()


def test_daemon_ctrl_c_during_a_job_leaves_no_process_behind(
    daemons: Callable[[str], Daemon],
) -> None:
    orphaned, grandchild = {}, {}
    for version in VERSIONS:
        daemon = daemons(version)
        shell, child = daemon.spawning_job("build", timeout=PROC_TIMEOUT)
        grandchild[version] = child
        daemon.proc.send_signal(signal.SIGINT)
        daemon.lines.expect("interrupted")
        assert daemon.proc.wait(PROC_TIMEOUT) == 130
        if version == "after":
            _wait_until(_all_gone(shell, child), "the job's group to end")
        orphaned[version] = [pid for pid in (shell, child) if _alive(pid)]
        daemon.close()
    # subprocess.run kills at most the shell: its grandchild runs on, orphaned.
    assert grandchild["before"] in orphaned["before"]
    assert orphaned["after"] == []


def test_daemon_hanging_job_is_stopped_with_its_whole_group(
    daemons: Callable[[str], Daemon],
) -> None:
    left_running, grandchild = {}, {}
    for version in VERSIONS:
        daemon = daemons(version)
        shell, child = daemon.spawning_job("hang", timeout=0.3)
        grandchild[version] = child
        daemon.lines.expect("hang: timed out")
        left_running[version] = [pid for pid in (shell, child) if _alive(pid)]
        # The daemon goes on with the next job, and stops cleanly on SIGTERM.
        daemon.submit("next", ["true"], timeout=PROC_TIMEOUT)
        daemon.lines.expect("next: exit 0")
        daemon.proc.send_signal(signal.SIGTERM)
        daemon.lines.expect("stopped")
        assert daemon.finish() == 0
    # subprocess.run's timeout kills the shell; the grandchild runs on for 60 s.
    assert left_running["before"] == [grandchild["before"]]
    assert left_running["after"] == []


# -- the config writer ----------------------------------------------------------------

# Big enough that json.dump writes it in many pieces.
OTHER_KEYS = {
    "theme": "dark",
    "projects": {
        f"/home/user/project-{i}": {
            "trusted": True,
            "history": [f"cmd {j}" for j in range(40)],
        }
        for i in range(200)
    },
}
EXISTING = {"existing": {"command": "uvx", "args": ["existing-mcp"]}}

# Loads the file under test and registers servers in a loop until killed.
WRITER_LOOP = """
import importlib.util, sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("config_writer", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print("ready", flush=True)
for i in range(10**9):
    module.register_server(Path(sys.argv[2]), f"server-{i % 20}", ["uvx", f"t{i}"])
    print("wrote", flush=True)
"""


def _write_config(path: Path) -> None:
    path.write_text(json.dumps({**OTHER_KEYS, "mcpServers": EXISTING}))


def _config_problem(path: Path) -> str | None:
    """Why the file is not an old or new version of the config, or ``None``."""
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        return f"torn: {exc}"
    servers = data.pop("mcpServers", None)
    if data != OTHER_KEYS or not isinstance(servers, dict):
        return "other keys lost"
    if servers.get("existing") != EXISTING["existing"]:
        return "existing server lost"
    for name, entry in servers.items():
        if name != "existing" and (
            not re.fullmatch(r"server-\d+", name)
            or entry.get("command") != "uvx"
            or not re.fullmatch(r"t\d+", entry["args"][0])
        ):
            return f"bad entry {name}"
    return None


def test_config_writer_kill_9_never_tears_the_file(tmp_path: Path) -> None:
    kills = 30
    problems: dict[str, list[str]] = {}
    for version in VERSIONS:
        config = tmp_path / f"{version}.json"
        _write_config(config)
        problems[version] = []
        for k in range(kills):
            proc = _start(
                [
                    sys.executable,
                    "-c",
                    WRITER_LOOP,
                    str(_script(version, "config_writer")),
                    str(config),
                ]
            )
            lines = Lines(proc)
            try:
                lines.expect("ready")
                for _ in range(1 + k % 3):  # a write or more completed
                    lines.expect("wrote")
                time.sleep(0.002 * (k % 5))  # then kill at varied points of one
            finally:
                proc.kill()
                proc.wait(PROC_TIMEOUT)
                lines.thread.join(PROC_TIMEOUT)
                proc.communicate(timeout=PROC_TIMEOUT)
            problem = _config_problem(config)
            if problem is None and "server-0" not in config.read_text():
                problem = "a completed write was lost"
            if problem is not None:
                problems[version].append(problem)
                _write_config(config)  # start the next round from a good file
    print(f"files torn or wrong after {kills} kill -9 each: {problems}")
    assert problems["after"] == []


def test_config_writer_eight_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    registered = {}
    for version in VERSIONS:
        config = tmp_path / f"{version}.json"
        _write_config(config)
        script = str(_script(version, "config_writer"))
        results = _concurrently(
            [
                [sys.executable, script, str(config), f"agent-{i}", "uvx", f"tool-{i}"]
                for i in range(8)
            ]
        )
        if version == "after":
            assert [code for code, _, _ in results] == [0] * 8, results
        try:
            registered[version] = sorted(json.loads(config.read_text())["mcpServers"])
        except (OSError, ValueError) as exc:
            registered[version] = [f"unreadable ({type(exc).__name__})"]
    print(f"servers after 8 concurrent writers: {registered}")
    assert registered["after"] == sorted(
        ["existing", *(f"agent-{i}" for i in range(8))]
    )
    assert json.loads((tmp_path / "after.json").read_text())["theme"] == "dark"


def test_config_writer_corrupt_file_is_named_and_left_alone(tmp_path: Path) -> None:
    results = {}
    for version in VERSIONS:
        config = tmp_path / f"{version}.json"
        corrupt = b'{"mcpServers": {"existing": '  # a write cut short
        config.write_bytes(corrupt)
        done = _run(version, "config_writer", str(config), "notes", "uvx", "notes-mcp")
        results[version] = done
        assert config.read_bytes() == corrupt, version
        assert done.returncode != 0
        assert done.stdout == ""
        assert len(done.stderr.splitlines()) == 1, done.stderr

    # BEFORE: "JSONDecodeError: Expecting value: line 1 column 29": which file?
    assert str(tmp_path / "before.json") not in results["before"].stderr
    line = results["after"].stderr.strip()
    assert line.startswith("config_writer: ConfigError: invalid configuration in ")
    assert str(tmp_path / "after.json") in line


# -- the auth profiles ----------------------------------------------------------------

SECRET = "sk-ant-api03-adoption-test-9c1f4e"


def _auth_profiles(path: Path) -> None:
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "profiles": {
                    "anthropic:default": {
                        "type": "api_key",
                        "provider": "anthropic",
                        "key": SECRET,
                    },
                    "openai:work": {
                        "type": "api_key",
                        "provider": "openai",
                        "key": "sk-proj-other-profile",
                    },
                },
                "usageStats": {
                    "anthropic:default": {"count": 12, "lastUsed": 1700000000000}
                },
            }
        )
    )
    path.chmod(0o600)


def test_auth_profiles_one_call_never_shows_the_key(tmp_path: Path) -> None:
    results = {}
    for version in VERSIONS:
        path = tmp_path / f"{version}-auth-profiles.json"
        _auth_profiles(path)
        done = _run(version, "auth_profiles", str(path), "anthropic:default")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {
            "profile": "anthropic:default",
            "calls": 1,
            "ok": 1,
        }
        results[version] = done

    assert SECRET in results["before"].stderr  # the log line prints the profile
    after = results["after"]
    assert "using profile anthropic:default" in after.stderr
    assert SECRET not in after.stdout + after.stderr
    path = tmp_path / "after-auth-profiles.json"
    data = json.loads(path.read_text())
    assert data["usageStats"]["anthropic:default"]["count"] == 13
    assert data["profiles"]["anthropic:default"] == {
        "type": "api_key",
        "provider": "anthropic",
        "key": SECRET,
    }
    assert path.stat().st_mode & 0o777 == 0o600


def test_auth_profiles_concurrent_usage_is_counted_exactly(tmp_path: Path) -> None:
    processes, calls = 6, 5
    counts: dict[str, object] = {}
    for version in VERSIONS:
        path = tmp_path / f"{version}-auth-profiles.json"
        _auth_profiles(path)
        argv = [
            sys.executable,
            str(_script(version, "auth_profiles")),
            str(path),
            "anthropic:default",
            str(calls),
        ]
        results = _concurrently([argv] * processes)
        try:
            counts[version] = json.loads(path.read_text())["usageStats"][
                "anthropic:default"
            ]["count"]
        except (OSError, ValueError, KeyError) as exc:
            counts[version] = f"unreadable ({type(exc).__name__})"
        if version == "after":
            assert [code for code, _, _ in results] == [0] * processes, results
            for _, out, err in results:
                assert SECRET not in out + err
            assert path.stat().st_mode & 0o777 == 0o600
            data = json.loads(path.read_text())
            assert data["profiles"]["openai:work"]["key"] == "sk-proj-other-profile"
            assert data["version"] == 1
    print(f"usage count after {processes}x{calls} calls from 12: {counts}")
    assert counts["after"] == 12 + processes * calls
