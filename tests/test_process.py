"""run_process() / arun_process(): real processes, process groups, kill -9, no leftovers."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import pickle
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import paios_reliability as pr
from paios_reliability.testing import capture_events

MODES = ["sync", "async"]
PY = sys.executable

# Prints its pid, starts a grandchild that ignores SIGTERM and prints its pid,
# then both sleep far past any test timeout.
SPAWNER = r"""
import os, signal, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", (
    "import os, signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print(os.getpid(), flush=True)\n"
    "time.sleep(120)\n"
)])
print(os.getpid(), flush=True)
sys.stderr.write("spawner started\n"); sys.stderr.flush()
time.sleep(120)
"""


async def run(mode: str, argv: Any, **kwargs: Any) -> pr.ProcessResult:
    if mode == "sync":
        return pr.run_process(argv, **kwargs)
    return await pr.arun_process(argv, **kwargs)


def state(pid: int) -> str | None:
    """The /proc state letter of ``pid`` (``"Z"`` = zombie), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def wait_until_gone(pids: list[int], limit: float = 10.0) -> dict[int, str | None]:
    """Poll (bounded) until every pid has disappeared; return the last states seen.

    A killed grandchild belongs to init after its parent died; init reaps it
    shortly, so it may show as a zombie ("Z") for a moment but never runs.
    """
    until = time.monotonic() + limit
    states = {pid: state(pid) for pid in pids}
    while any(s is not None for s in states.values()) and time.monotonic() < until:
        assert all(s in (None, "Z", "X") for s in states.values()), states
        time.sleep(0.02)
        states = {pid: state(pid) for pid in pids}
    return states


needs_proc = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="needs /proc"
)


@pytest.mark.parametrize("mode", MODES)
async def test_runs_and_captures_output(mode: str) -> None:
    result = await run(
        mode, [PY, "-c", "import sys; print('out'); print('err', file=sys.stderr)"]
    )
    assert result.returncode == 0
    assert result.ok
    assert result.stdout == b"out\n"
    assert result.stderr_text == "err\n"
    assert result.stdout_text == "out\n"
    assert result.duration > 0
    assert result.argv[0] == PY
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.returncode = 1  # type: ignore[misc]


@pytest.mark.parametrize("mode", MODES)
async def test_ten_megabytes_of_stdin_far_past_arg_max(mode: str) -> None:
    payload = os.urandom(10 * 1024 * 1024)
    assert len(payload) > os.sysconf("SC_ARG_MAX")
    result = await run(mode, ["cat"], input=payload, timeout=60)
    assert result.stdout == payload


@pytest.mark.parametrize("mode", MODES)
async def test_text_input_is_utf8_and_no_input_is_an_empty_stdin(mode: str) -> None:
    assert (await run(mode, ["cat"], input="héllo")).stdout == "héllo".encode()
    assert (await run(mode, ["cat"], timeout=10)).stdout == b""


@pytest.mark.parametrize("mode", MODES)
async def test_child_that_does_not_read_stdin_does_not_break_the_call(
    mode: str,
) -> None:
    result = await run(
        mode, [PY, "-c", "print('ignored input')"], input=b"x" * (4 * 1024 * 1024)
    )
    assert result.stdout == b"ignored input\n"


@pytest.mark.parametrize("mode", MODES)
async def test_env_and_cwd_are_passed(mode: str, tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "PAIOS_PROBE": "42"}
    code = "import os; print(os.environ['PAIOS_PROBE'], os.getcwd(), len(os.environ))"
    result = await run(mode, [PY, "-c", code], env=env, cwd=tmp_path)
    value, cwd, count = result.stdout_text.split()
    assert value == "42"
    assert Path(cwd).resolve() == tmp_path.resolve()
    assert int(count) <= len(env) + 2  # only what we passed (plus what Python sets)


@pytest.mark.parametrize("mode", MODES)
async def test_child_runs_in_its_own_session_and_process_group(mode: str) -> None:
    code = "import os; print(os.getpid(), os.getpgid(0), os.getsid(0))"
    pid, pgid, sid = map(int, (await run(mode, [PY, "-c", code])).stdout.split())
    assert pid == pgid == sid
    assert pgid != os.getpgid(0)


@pytest.mark.parametrize("mode", MODES)
async def test_non_zero_exit_raises_process_error(mode: str) -> None:
    code = "import sys; print('partial'); sys.stderr.write('x' * 20000 + '\\nfatal: no such ref\\n'); sys.exit(3)"
    with capture_events() as events, pytest.raises(pr.ProcessError) as info:
        await run(mode, [PY, "-c", code])
    error = info.value
    assert error.returncode == 3
    assert error.code == "PROCESS_FAILED"
    assert error.stdout == b"partial\n"
    assert error.stderr.endswith(b"fatal: no such ref\n")
    assert len(error.stderr) == 8192
    assert "fatal: no such ref" in str(error)
    assert isinstance(error, pr.PermanentError)
    assert not pr.is_retryable(error)
    assert error.exit_code == pr.CATALOG["PROCESS_FAILED"].exit_code
    assert events.of("process.failed")[0].fields["returncode"] == 3
    clone = pickle.loads(pickle.dumps(error))
    assert (clone.returncode, clone.stderr, clone.code) == (
        3,
        error.stderr,
        "PROCESS_FAILED",
    )


@pytest.mark.parametrize("mode", MODES)
async def test_check_false_returns_the_failed_result(mode: str) -> None:
    result = await run(mode, [PY, "-c", "raise SystemExit(5)"], check=False)
    assert result.returncode == 5
    assert not result.ok


@needs_proc
@pytest.mark.parametrize("mode", MODES)
async def test_timeout_kills_the_whole_group_no_orphans_no_zombies(mode: str) -> None:
    started = time.monotonic()
    with capture_events() as events, pytest.raises(pr.ProcessTimeoutError) as info:
        await run(mode, [PY, "-c", SPAWNER], timeout=1.5, grace=0.2)
    error = info.value
    assert isinstance(error, pr.TimeoutExceeded)
    assert isinstance(error, TimeoutError)
    assert error.killed  # the grandchild ignored SIGTERM: SIGKILL was needed
    pids = [int(p) for p in error.stdout.split()]
    assert len(pids) == 2  # partial output was captured: both pids
    assert b"spawner started" in error.stderr
    assert time.monotonic() - started < 30  # bounded, never the 120 s sleep
    # The direct child was reaped by us: not even a zombie is left.
    assert state(pids[0]) is None or pids[0] not in _our_children()
    assert wait_until_gone(pids) == dict.fromkeys(pids)
    assert [e.action for e in events] == ["killed", "timed_out"]


def _our_children() -> set[int]:
    children = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == os.getpid():
                children.add(int(entry.name))
    return children


@needs_proc
@pytest.mark.parametrize("mode", MODES)
async def test_enclosing_deadline_bounds_the_process(mode: str) -> None:
    before = _our_children()
    with pr.deadline(0.5), pytest.raises(pr.ProcessTimeoutError):
        await run(mode, [PY, "-c", "import time; time.sleep(60)"], grace=0.1)
    assert _our_children() - before == set()


@needs_proc
async def test_cancelling_arun_process_terminates_the_group() -> None:
    before = _our_children()
    task = asyncio.ensure_future(pr.arun_process([PY, "-c", SPAWNER], grace=0.2))
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 30)
    assert _our_children() - before == set()


@needs_proc
def test_keyboard_interrupt_while_waiting_leaves_nothing_behind() -> None:
    before = _our_children()
    if threading_is_main():
        previous = signal.signal(signal.SIGALRM, _raise_keyboard_interrupt)
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.3)
            with pytest.raises(KeyboardInterrupt):
                pr.run_process([PY, "-c", SPAWNER], grace=0.2)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    assert _our_children() - before == set()


def threading_is_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@pytest.mark.parametrize("mode", MODES)
async def test_bad_arguments_are_refused(mode: str) -> None:
    with pytest.raises(TypeError, match="not a string"):
        await run(mode, "echo hi")
    with pytest.raises(ValueError, match="at least"):
        await run(mode, [])
    with pytest.raises(ValueError, match="timeout"):
        await run(mode, ["true"], timeout=0)
    with pytest.raises(TypeError, match="input"):
        await run(mode, ["cat"], input=123)
    with pytest.raises(FileNotFoundError):
        await run(mode, ["/nonexistent/program-paios"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=st.binary(max_size=200_000))
def test_any_bytes_round_trip_through_stdin(payload: bytes) -> None:
    assert pr.run_process(["cat"], input=payload, timeout=30).stdout == payload


def test_async_variant_round_trip() -> None:
    runner: Callable[[], Awaitable[pr.ProcessResult]] = lambda: pr.arun_process(  # noqa: E731
        ["cat"], input=b"async", timeout=30
    )
    assert asyncio.run(runner()).stdout == b"async"
