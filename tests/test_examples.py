"""The examples, started for real and exercised with injected faults.

- ``examples/mcp_server.py`` through a real ``mcp`` client session over stdio,
  against a real loopback HTTP backend that fails on purpose.
- ``examples/hook.py`` with good input, malformed input and a garbage database.
- ``examples/daemon.py`` stopped with SIGTERM, SIGINT and SIGKILL.

Every subprocess and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import paios_reliability as pr

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PROC_TIMEOUT = 60.0


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"example_{name}", EXAMPLES / f"{name}.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _events(path: Path, **filters: Any) -> list[pr.StoredEvent]:
    store = pr.EventStore(path)
    try:
        return store.query(limit=10_000, **filters)
    finally:
        store.close()


# -- the MCP server ---------------------------------------------------------------


class Backend:
    """A loopback HTTP service whose faults are chosen by the item key.

    ``flaky-N`` answers 503 N times, then 200; ``missing`` is 404; ``slow``
    takes 1.5 s; anything else is 200.
    """

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                key = self.path.rsplit("/", 1)[-1]
                with backend.lock:
                    backend.hits[key] += 1
                    hit = backend.hits[key]
                if key.startswith("flaky-") and hit <= int(key.split("-")[1]):
                    self.send_error(503)
                    return
                if key == "missing":
                    self.send_error(404)
                    return
                if key == "slow":
                    time.sleep(1.5)
                body = f"value of {key}".encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the client gave up on a slow answer
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def backend() -> Iterator[Backend]:
    service = Backend()
    service.thread.start()
    yield service
    service.server.shutdown()
    service.server.server_close()


def _text(result: Any) -> str:
    return " ".join(getattr(part, "text", "") for part in result.content)


async def _session(
    settings_path: Path, cwd: Path, calls: list[tuple[str, dict[str, Any]]]
) -> list[Any]:
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(
        command=sys.executable,
        args=[str(EXAMPLES / "mcp_server.py"), "--settings", str(settings_path)],
        cwd=cwd,
    )
    results = []
    with open(cwd / "server.stderr", "w") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write, read_timeout_seconds=30) as session,
        ):
            await session.initialize()
            for name, arguments in calls:
                results.append(await session.call_tool(name, arguments))
            # Events are written by a background thread within ~1 s.
            for _ in range(100):
                if _events(cwd / "events.sqlite", category="retry") and (
                    len(_events(cwd / "events.sqlite", category="mcp")) >= 2
                ):
                    break
                await asyncio.sleep(0.05)
    return results


async def test_mcp_server_retries_fails_fast_and_times_out(
    backend: Backend, tmp_path: Path
) -> None:
    settings_path = tmp_path / "mcp_server.json"
    settings_path.write_text(
        json.dumps(
            {
                "downstream_url": backend.url,
                "timeout": 0.4,
                "retry_attempts": 3,
                "retry_deadline": 10.0,
                "events_db": str(tmp_path / "events.sqlite"),
            }
        )
    )
    calls = [
        ("lookup", {"key": "flaky-2"}),
        ("lookup", {"key": "missing"}),
        ("lookup", {"key": "slow"}),
        ("status", {}),
    ]
    flaky, missing, slow, status = await asyncio.wait_for(
        _session(settings_path, tmp_path, calls), PROC_TIMEOUT
    )

    # Two 503s absorbed by retries: the client sees the answer.
    assert not flaky.is_error, _text(flaky)
    assert "value of flaky-2" in _text(flaky)
    assert backend.hits["flaky-2"] == 3
    # 404 is permanent: one attempt, an error result that says so, by code.
    assert missing.is_error
    assert _text(missing).startswith(
        "HTTP_NOT_FOUND: HTTP 404: the resource does not exist; do not retry"
    )
    assert backend.hits["missing"] == 1
    # The attempt is cut off by the per-attempt timeout and retried once
    # (resilient's retry_timeouts=1): a hanging backend costs two timeouts.
    assert slow.is_error
    assert _text(slow).startswith("TIMEOUT: the tool ran out of time; retry later")
    assert backend.hits["slow"] == 2
    assert not status.is_error
    assert "closed" in _text(status)

    recorded = {(e.category, e.action) for e in _events(tmp_path / "events.sqlite")}
    assert ("retry", "scheduled") in recorded
    assert ("tool", "called") in recorded
    # Each failure is recorded in full under the trace id its text refers to.
    failed = _events(tmp_path / "events.sqlite", category="mcp", action="tool_failed")
    assert [e.metadata["code"] for e in failed] == ["HTTP_NOT_FOUND", "TIMEOUT"]
    for event, result in zip(failed, (missing, slow), strict=True):
        assert event.trace_id is not None
        assert _text(result).endswith(f"(ref {event.trace_id[:8]})")
        assert event.metadata["tool"] == "tools.lookup"


def test_mcp_server_refuses_a_corrupted_settings_file(tmp_path: Path) -> None:
    settings_path = tmp_path / "mcp_server.json"
    garbage = b'{"timeout": "soon", "retry_attempts": 0,'
    settings_path.write_bytes(garbage)
    proc = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "mcp_server.py"),
            "--settings",
            str(settings_path),
        ],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=PROC_TIMEOUT,
        check=False,
    )
    assert proc.returncode == pr.exit_code_for(
        pr.ConfigError("x", code="CONFIG_INVALID")
    )
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("mcp_server: ConfigError")
    assert settings_path.read_bytes() == garbage


# -- the hook -----------------------------------------------------------------------


def _hook(
    tmp_path: Path, stdin: str, db: str = "state.sqlite"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "hook.py"),
            "--db",
            db,
            "--events",
            "events.sqlite",
        ],
        cwd=tmp_path,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=PROC_TIMEOUT,
        check=False,
    )


def test_hook_counts_tool_calls(tmp_path: Path) -> None:
    assert _hook(tmp_path, '{"tool": "search", "status": "ok"}').returncode == 0
    done = _hook(tmp_path, '{"tool": "search", "status": "error", "session_id": "s-1"}')
    assert (done.returncode, done.stderr) == (0, "")

    with pr.open_database(tmp_path / "state.sqlite", readonly=True) as conn:
        rows = conn.execute("SELECT tool, calls, errors FROM tool_calls").fetchall()
    assert rows == [("search", 2, 1)]
    calls = _events(tmp_path / "events.sqlite", category="hook", action="tool_call")
    assert [e.metadata["calls"] for e in calls] == [1, 2]
    assert [e.level for e in calls] == ["info", "error"]


@pytest.mark.parametrize(
    "stdin",
    ["{not json", "", '["a list"]', '{"tool": 5}', '{"tool": "x", "status": "maybe"}'],
)
def test_hook_rejects_malformed_input(tmp_path: Path, stdin: str) -> None:
    done = _hook(tmp_path, stdin)
    assert done.returncode == pr.CATALOG["MALFORMED_DATA"].exit_code
    lines = done.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("hook: MALFORMED_DATA: ")
    assert not (tmp_path / "state.sqlite").exists()
    [failed] = _events(tmp_path / "events.sqlite", category="hook", action="failed")
    assert failed.metadata["code"] == "MALFORMED_DATA"


def test_hook_refuses_a_garbage_database_and_leaves_it_alone(tmp_path: Path) -> None:
    garbage = bytes(range(256)) * 16
    (tmp_path / "state.sqlite").write_bytes(garbage)
    done = _hook(tmp_path, '{"tool": "search"}')
    assert done.returncode == pr.CATALOG["DB_NOT_A_DATABASE"].exit_code
    lines = done.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("hook: DB_NOT_A_DATABASE: ")
    assert (tmp_path / "state.sqlite").read_bytes() == garbage
    assert sorted(p.name for p in tmp_path.glob("state.sqlite*")) == ["state.sqlite"]


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
_hook_module = _load("hook")


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(
        st.text(max_size=40),
        _json.map(json.dumps),
        st.fixed_dictionaries(
            {"tool": st.text(max_size=8)},
            optional={"status": st.sampled_from(["ok", "error", "other"]), "x": _json},
        ).map(json.dumps),
    )
)
def test_hook_parser_accepts_valid_events_and_rejects_the_rest(raw: str) -> None:
    rejected: Exception | None = None
    try:
        event = _hook_module.parse_event(raw)
    except Exception as exc:  # any rejection must map to MALFORMED_DATA
        rejected = exc
    if rejected is not None:
        assert pr.classify(rejected).code == "MALFORMED_DATA", repr(rejected)
        assert pr.exit_code_for(rejected) == pr.CATALOG["MALFORMED_DATA"].exit_code
    else:
        assert isinstance(event["tool"], str)
        assert event["tool"]
        assert event.get("status", "ok") in ("ok", "error")


# -- the daemon ---------------------------------------------------------------------


def _start_daemon(
    tmp_path: Path, *extra: str, sigint_ignored: bool = False
) -> subprocess.Popen[str]:
    # A shell that ignores SIGINT before exec'ing, as one does for a
    # background job: the daemon inherits the ignored disposition.
    prefix = ["sh", "-c", 'trap "" INT; exec "$0" "$@"'] if sigint_ignored else []
    proc = subprocess.Popen(
        [
            *prefix,
            sys.executable,
            str(EXAMPLES / "daemon.py"),
            "--events",
            str(tmp_path / "events.sqlite"),
            "--interval",
            "0.05",
            *extra,
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout = proc.stdout
    assert stdout is not None
    line: list[str] = []
    reader = threading.Thread(
        target=lambda: line.append(stdout.readline()), daemon=True
    )
    reader.start()
    reader.join(PROC_TIMEOUT)
    if line != ["daemon: ready\n"]:
        proc.kill()
        proc.wait(PROC_TIMEOUT)
        pytest.fail(f"daemon did not get ready: {line!r}")
    return proc


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        _, stderr = proc.communicate(timeout=PROC_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=PROC_TIMEOUT)
        raise
    return proc.returncode, stderr


def _restart_reports(tmp_path: Path) -> str:
    proc = _start_daemon(tmp_path, "--max-iterations", "1")
    code, stderr = _finish(proc)
    assert code == 0
    return stderr


def test_daemon_runs_bounded_iterations(tmp_path: Path) -> None:
    code, stderr = _finish(
        _start_daemon(tmp_path, "--max-iterations", "3", "--health-every", "2")
    )
    assert code == 0
    assert "stopped after 3 iterations" in stderr
    [stopped] = _events(
        tmp_path / "events.sqlite", category="lifecycle", action="stopped"
    )
    assert stopped.metadata["iteration"] == 3
    checked = _events(tmp_path / "events.sqlite", category="health", action="checked")
    assert len(checked) == 2  # iterations 1 and 2


@pytest.mark.parametrize(
    ("signum", "code", "action"),
    [(signal.SIGTERM, 0, "sigterm"), (signal.SIGINT, 130, "interrupted")],
)
def test_daemon_stops_cleanly_on_signals(
    tmp_path: Path, signum: signal.Signals, code: int, action: str
) -> None:
    proc = _start_daemon(tmp_path)
    proc.send_signal(signum)
    assert _finish(proc)[0] == code

    assert _events(tmp_path / "events.sqlite", category="lifecycle", action=action)
    # The crash handler closed its running marker: the next start finds no crash.
    assert "ended badly" not in _restart_reports(tmp_path)
    store = pr.EventStore(tmp_path / "events.sqlite")
    try:
        assert store.last_crash("example-daemon") is None
    finally:
        store.close()


def test_flake_daemon_ctrl_c_stops_it_when_started_with_sigint_ignored(
    tmp_path: Path,
) -> None:
    # The test suite run as a background job hung here for 60 s: the daemon
    # inherited an ignored SIGINT and kept running after Ctrl-C.
    proc = _start_daemon(tmp_path, sigint_ignored=True)
    proc.send_signal(signal.SIGINT)
    code, stderr = _finish(proc)
    assert code == 130
    assert "interrupted after" in stderr
    assert _events(
        tmp_path / "events.sqlite", category="lifecycle", action="interrupted"
    )


def test_daemon_kill_9_is_reported_at_the_next_start(tmp_path: Path) -> None:
    proc = _start_daemon(tmp_path)
    proc.kill()
    assert _finish(proc)[0] == -signal.SIGKILL

    assert "previous run ended badly: unclean_exit" in _restart_reports(tmp_path)
    store = pr.EventStore(tmp_path / "events.sqlite")
    try:
        crash = store.last_crash("example-daemon")
    finally:
        store.close()
    assert crash is not None
    assert crash.action == "unclean_exit"
