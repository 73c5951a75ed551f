"""run_process() / arun_process(): a drop-in for subprocess.run, real processes, no leftovers."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import paios_reliability as pr
from paios_reliability._ops.process import redact_argv
from paios_reliability.testing import capture_events

MODES = ["sync", "async"]
PY = sys.executable
HERE = Path(__file__).parent

# Writes its pid and the pid of a grandchild that ignores SIGTERM to the file
# named by argv[1] (one line, once both run), prints them, then both sleep far
# past any test timeout.
SPAWNER = r"""
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", (
    "import os, signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print(os.getpid(), flush=True)\n"
    "time.sleep(120)\n"
)], stdout=subprocess.PIPE)
grandchild = child.stdout.readline().strip().decode()
print(os.getpid(), grandchild, flush=True)
sys.stderr.write("spawner started\n"); sys.stderr.flush()
if len(sys.argv) > 1:
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(f"{os.getpid()} {grandchild}")
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(120)
"""


async def run(mode: str, args: Any, **kwargs: Any) -> pr.ProcessResult[Any]:
    if mode == "sync":
        return pr.run_process(args, **kwargs)
    return await pr.arun_process(args, **kwargs)


def state(pid: int) -> str | None:
    """The /proc state letter of ``pid`` (``"Z"`` = zombie), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def running(pid: int) -> bool:
    return state(pid) not in (None, "Z", "X")


def our_children() -> set[int]:
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


def read_pids(path: Path, limit: float = 30.0) -> list[int]:
    """Wait (bounded) until the spawner has written its pids, then return them."""
    until = time.monotonic() + limit
    while time.monotonic() < until:
        if path.exists():
            return [int(p) for p in path.read_text().split()]
        time.sleep(0.005)
    raise AssertionError(f"{path} was never written")


async def until(condition: Any, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"{condition} never became true"
        await asyncio.sleep(0.01)


needs_proc = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="needs /proc"
)


# -- drop-in for subprocess.run -------------------------------------------------------

SH_BOTH = ["sh", "-c", "printf 'out\\r\\nline'; printf 'err\\n' >&2; exit 3"]
ECHO = ["sh", "-c", "cat; printf 'to stderr\\n' >&2"]


def _parity_cases(tmp: Path) -> dict[str, tuple[Any, dict[str, Any]]]:
    latin = tmp / "latin1.txt"
    return {
        "nothing_captured": (["true"], {}),
        "failure_not_captured": (["false"], {}),
        "capture_bytes": (SH_BOTH, {"capture_output": True}),
        "capture_text": (SH_BOTH, {"capture_output": True, "text": True}),
        "universal_newlines": (SH_BOTH, {"capture_output": True, "universal_newlines": True}),
        "encoding_and_errors": (["cat", str(latin)], {"capture_output": True, "encoding": "utf-8", "errors": "replace"}),
        "latin1": (["cat", str(latin)], {"capture_output": True, "encoding": "latin-1"}),
        "errors_only": (["cat", str(latin)], {"capture_output": True, "errors": "surrogateescape"}),
        "stdout_only": (SH_BOTH, {"stdout": subprocess.PIPE}),
        "stderr_only": (SH_BOTH, {"stderr": subprocess.PIPE, "stdout": subprocess.DEVNULL}),
        "stderr_into_stdout": (SH_BOTH, {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT}),
        "input_bytes": (ECHO, {"input": b"in\x00put", "capture_output": True}),
        "input_bytearray": (ECHO, {"input": bytearray(b"abc"), "capture_output": True}),
        "input_text": (ECHO, {"input": "héllo\r\nwörld", "capture_output": True, "text": True}),
        "empty_input": (ECHO, {"input": b"", "capture_output": True}),
        "stdin_devnull": (ECHO, {"stdin": subprocess.DEVNULL, "capture_output": True}),
        "stdin_pipe_means_eof": (ECHO, {"stdin": subprocess.PIPE, "capture_output": True}),
        "program_name_string": ("true", {}),
        "program_path": (Path("/bin/sh"), {"input": b"echo via path", "capture_output": True}),
        "bytes_arguments": ([b"printf", b"%s", b"bytes\xff"], {"capture_output": True}),
        "env_and_cwd": (["sh", "-c", "printf '%s %s' \"$PROBE\" \"$PWD\""], {"capture_output": True, "text": True, "env": {"PROBE": "42", "PATH": os.environ.get("PATH", "")}, "cwd": str(tmp)}),
    }  # fmt: skip


PARITY = list(_parity_cases(Path("/nonexistent")).keys())


def _same(expected: subprocess.CompletedProcess[Any], actual: Any) -> None:
    assert isinstance(actual, subprocess.CompletedProcess)
    assert isinstance(actual, pr.ProcessResult)
    assert actual.args == expected.args
    assert type(actual.args) is type(expected.args)
    assert actual.returncode == expected.returncode
    assert type(actual.stdout) is type(expected.stdout)
    assert type(actual.stderr) is type(expected.stderr)
    assert actual.stdout == expected.stdout
    assert actual.stderr == expected.stderr


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", PARITY)
async def test_same_results_as_subprocess_run(
    mode: str, case: str, tmp_path: Path
) -> None:
    (tmp_path / "latin1.txt").write_bytes("café\r\nÿ".encode("latin-1"))
    args, kwargs = _parity_cases(tmp_path)[case]
    expected = subprocess.run(args, check=False, **kwargs)
    actual = await run(mode, args, **kwargs)
    _same(expected, actual)
    assert actual.ok is (expected.returncode == 0)
    assert actual.duration > 0


@pytest.mark.parametrize("mode", MODES)
async def test_files_and_descriptors_as_streams_like_subprocess(
    mode: str, tmp_path: Path
) -> None:
    source = tmp_path / "in.txt"
    source.write_bytes(b"from a file\n")
    for runner in ("subprocess", mode):
        out, err = tmp_path / f"out-{runner}", tmp_path / f"err-{runner}"
        with source.open("rb") as stdin, out.open("wb") as stdout:
            err_fd = os.open(err, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                kwargs: dict[str, Any] = {
                    "stdin": stdin,
                    "stdout": stdout,
                    "stderr": err_fd,
                }
                if runner == "subprocess":
                    result: Any = subprocess.run(ECHO, check=False, **kwargs)
                else:
                    result = await run(mode, ECHO, **kwargs)
            finally:
                os.close(err_fd)
        assert (result.stdout, result.stderr, result.returncode) == (None, None, 0)
    assert (
        (tmp_path / f"out-{mode}").read_bytes()
        == (tmp_path / "out-subprocess").read_bytes()
        == b"from a file\n"
    )
    assert (tmp_path / f"err-{mode}").read_bytes() == (tmp_path / "err-subprocess").read_bytes() == b"to stderr\n"  # fmt: skip


_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300)
_OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "stderr_into_stdout": st.booleans(),
        "check": st.booleans(),
        "exit": st.integers(0, 3),
    },
)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    payload=st.one_of(st.binary(max_size=3000), _TEXT),
    options=_OPTIONS,
    errors=st.sampled_from([None, "strict", "replace", "surrogateescape", "backslashreplace"]),
)  # fmt: skip
def test_hypothesis_same_results_as_subprocess_run(
    payload: bytes | str, options: dict[str, Any], errors: str | None
) -> None:
    text = isinstance(payload, str)
    code = options.get("exit", 0)
    args = ["sh", "-c", f"cat; printf 'e\\r\\nr' >&2; exit {code}"]
    kwargs: dict[str, Any] = {"input": payload, "check": options.get("check", False)}
    if options.get("stderr_into_stdout"):
        kwargs.update(stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    else:
        kwargs["capture_output"] = True
    if text:
        kwargs.update(encoding="utf-8", errors=errors)
    outcomes = []
    for runner in (subprocess.run, pr.run_process):
        try:
            outcomes.append(("returned", runner(args, **kwargs)))
        except subprocess.CalledProcessError as exc:
            outcomes.append(("raised", exc))
    (kind, expected), (actual_kind, actual) = outcomes
    assert kind == actual_kind
    if kind == "raised":
        assert isinstance(actual, pr.ProcessError)
        for name in ("returncode", "cmd", "output", "stdout", "stderr"):
            assert getattr(actual, name) == getattr(expected, name)
    else:
        _same(expected, actual)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.binary(max_size=2000), errors=st.sampled_from(["replace", "surrogateescape", "backslashreplace", "ignore"]))  # fmt: skip
def test_hypothesis_decoding_matches_subprocess(
    data: bytes, errors: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Arbitrary bytes (invalid UTF-8, lone \r) decoded in text mode.
    path = tmp_path_factory.mktemp("decode") / "data"
    path.write_bytes(data)
    kwargs: dict[str, Any] = {
        "capture_output": True,
        "encoding": "utf-8",
        "errors": errors,
    }
    expected = subprocess.run(["cat", str(path)], check=False, **kwargs)
    _same(expected, pr.run_process(["cat", str(path)], **kwargs))
    assert (
        asyncio.run(pr.arun_process(["cat", str(path)], **kwargs)).stdout
        == expected.stdout
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=st.binary(max_size=200_000))
def test_any_bytes_round_trip_through_stdin(payload: bytes) -> None:
    assert (
        pr.run_process(["cat"], input=payload, capture_output=True, timeout=30).stdout
        == payload
    )


@pytest.mark.parametrize("mode", MODES)
async def test_ten_megabytes_of_stdin_far_past_arg_max(mode: str) -> None:
    payload = os.urandom(10 * 1024 * 1024)
    assert len(payload) > os.sysconf("SC_ARG_MAX")
    result = await run(mode, ["cat"], input=payload, capture_output=True, timeout=60)
    assert result.stdout == payload


@pytest.mark.parametrize("mode", MODES)
async def test_child_that_does_not_read_stdin_does_not_break_the_call(
    mode: str,
) -> None:
    result = await run(
        mode,
        [PY, "-c", "print('ignored input')"],
        input=b"x" * (4 * 1024 * 1024),
        capture_output=True,
    )
    assert result.stdout == b"ignored input\n"


@pytest.mark.parametrize("mode", MODES)
async def test_child_runs_in_its_own_session_and_process_group(mode: str) -> None:
    code = "import os; print(os.getpid(), os.getpgid(0), os.getsid(0))"
    result = await run(mode, [PY, "-c", code], capture_output=True)
    pid, pgid, sid = map(int, result.stdout.split())
    assert pid == pgid == sid
    assert pgid != os.getpgid(0)


def test_many_threads_at_once_each_get_their_own_result() -> None:
    results: dict[int, bytes] = {}

    def work(n: int) -> None:
        for i in range(5):
            out = pr.run_process(
                ["cat"], input=f"{n}:{i}".encode(), capture_output=True
            )
            assert out.stdout == f"{n}:{i}".encode()
        results[n] = out.stdout

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == {n: f"{n}:4".encode() for n in range(8)}


async def test_many_concurrent_async_calls_on_one_loop() -> None:
    calls = [
        pr.arun_process(["cat"], input=str(n).encode(), capture_output=True)
        for n in range(20)
    ]
    results = await asyncio.gather(*calls)
    assert [r.stdout for r in results] == [str(n).encode() for n in range(20)]


# -- errors are ours and subprocess's -------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_check_raises_an_error_that_is_also_called_process_error(
    mode: str,
) -> None:
    args = [PY, "-c", "import sys; print('partial'); sys.stderr.write('x' * 20000 + '\\nfatal: no such ref\\n'); sys.exit(3)"]  # fmt: skip
    with pytest.raises(subprocess.CalledProcessError) as expected:
        subprocess.run(args, capture_output=True, check=True)
    with (
        capture_events() as events,
        pytest.raises(subprocess.CalledProcessError) as info,
    ):
        await run(mode, args, capture_output=True, check=True)
    error = info.value
    assert isinstance(error, pr.ProcessError)
    assert isinstance(error, pr.PermanentError)
    assert isinstance(error, pr.ReliabilityError)
    for name in ("returncode", "cmd", "output", "stdout", "stderr"):
        assert getattr(error, name) == getattr(expected.value, name), name
    assert len(error.stderr) == 20020  # the whole of it, as subprocess keeps it
    assert error.code == "PROCESS_FAILED"
    assert not pr.is_retryable(error)
    assert error.exit_code == pr.CATALOG["PROCESS_FAILED"].exit_code
    assert "exited with status 3" in str(error)
    assert str(error).endswith("fatal: no such ref")
    assert repr(error).startswith("ProcessError(")
    assert events.of("process.failed")[0].fields["returncode"] == 3


@pytest.mark.parametrize("mode", MODES)
async def test_check_false_returns_the_failed_result(mode: str) -> None:
    result = await run(mode, [PY, "-c", "raise SystemExit(5)"])
    assert result.returncode == 5
    assert not result.ok
    with pytest.raises(pr.ProcessError) as info:
        result.check_returncode()
    assert (info.value.returncode, info.value.cmd) == (5, result.args)


def test_killed_by_a_signal_reads_like_subprocess() -> None:
    with pytest.raises(pr.ProcessError) as info:
        pr.run_process(["sh", "-c", "kill -9 $$"], check=True)
    assert info.value.returncode == -signal.SIGKILL
    assert "killed by signal SIGKILL" in str(info.value)


def test_errors_are_built_like_the_subprocess_ones_and_pickle() -> None:
    failed = pr.ProcessError(2, ["git", "push"], b"out", b"err")
    plain = subprocess.CalledProcessError(2, ["git", "push"], b"out", b"err")
    timed = pr.ProcessTimeoutError(["sleep", "9"], 1.5, b"so far", None, killed=True)
    for error, names in (
        (failed, ("returncode", "cmd", "output", "stdout", "stderr", "code", "retryable", "context")),
        (timed, ("cmd", "timeout", "output", "stdout", "stderr", "killed", "started", "seconds", "code", "context")),
    ):  # fmt: skip
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            clone = pickle.loads(pickle.dumps(error, protocol=protocol))
            assert type(clone) is type(error)
            assert str(clone) == str(error)
            assert repr(clone) == repr(error)
            for name in names:
                assert getattr(clone, name) == getattr(error, name), name
    assert (failed.returncode, failed.cmd, failed.stdout) == (
        plain.returncode,
        plain.cmd,
        plain.stdout,
    )
    assert timed.timeout == timed.seconds == 1.5
    assert pr.classify(failed).code == "PROCESS_FAILED"
    assert pr.classify(timed).code == "TIMEOUT"
    assert pr.is_retryable(timed)


# -- timeouts: the whole group, then a typed error ------------------------------------


@needs_proc
@pytest.mark.parametrize("mode", MODES)
async def test_timeout_kills_the_whole_group_no_orphans_no_zombies(mode: str) -> None:
    started = time.monotonic()
    with capture_events() as events, pytest.raises(pr.ProcessTimeoutError) as info:
        await run(mode, [PY, "-c", SPAWNER], timeout=4, grace=0.2, capture_output=True)
    error = info.value
    for family in (pr.TimeoutExceeded, TimeoutError, subprocess.TimeoutExpired):
        assert isinstance(error, family)
    assert error.killed  # the grandchild ignored SIGTERM: SIGKILL was needed
    assert error.timeout == error.seconds == 4
    pids = [int(p) for p in error.stdout.split()]
    assert len(pids) == 2  # partial output was captured: both pids
    assert error.stderr == b"spawner started\n"
    assert time.monotonic() - started < 60  # bounded, never the 120 s sleep
    assert pids[0] not in our_children()  # the leader was reaped by us
    assert not any(running(pid) for pid in pids)
    assert [e.action for e in events] == ["killed", "timed_out"]


@pytest.mark.parametrize("mode", MODES)
async def test_timeout_output_is_bytes_even_in_text_mode_like_subprocess(
    mode: str,
) -> None:
    args = ["sh", "-c", "echo started; exec sleep 30"]
    with pytest.raises(subprocess.TimeoutExpired) as info:
        await run(mode, args, timeout=5, grace=0.1, capture_output=True, text=True)
    assert info.value.stdout == b"started\n"
    with pytest.raises(subprocess.TimeoutExpired) as plain:
        await run(mode, ["sleep", "30"], timeout=0.2, grace=0.1)
    assert (plain.value.stdout, plain.value.stderr) == (None, None)


@pytest.mark.parametrize("mode", MODES)
async def test_except_clauses_callers_already_have_catch_the_timeout(
    mode: str,
) -> None:
    for family in (
        subprocess.TimeoutExpired,
        TimeoutError,
        pr.TimeoutExceeded,
        subprocess.SubprocessError,
    ):
        with pytest.raises(family):
            await run(mode, ["sleep", "30"], timeout=0.1, grace=0.1)  # fmt: skip


@needs_proc
@pytest.mark.parametrize("mode", MODES)
async def test_enclosing_deadline_bounds_the_process(mode: str) -> None:
    before = our_children()
    with pr.deadline(0.5), pytest.raises(pr.ProcessTimeoutError) as info:
        await run(
            mode, [PY, "-c", "import time; time.sleep(60)"], timeout=30, grace=0.1
        )
    assert info.value.timeout <= 0.5
    assert our_children() - before == set()


@needs_proc
@pytest.mark.parametrize("mode", MODES)
async def test_members_dying_of_sigterm_are_not_reported_as_killed(
    mode: str,
) -> None:
    # Every member dies of SIGTERM: no SIGKILL, no waiting out the grace period
    # (30 s here; a call that waited for it would take 30 s).
    started = time.monotonic()
    with capture_events() as events, pytest.raises(pr.ProcessTimeoutError) as info:
        await run(mode, ["sh", "-c", "sleep 30 & sleep 30"], timeout=0.3, grace=30)
    assert info.value.killed is False
    assert [e.action for e in events] == ["timed_out"]
    assert time.monotonic() - started < 15


# -- no orphans and no zombies in every case ------------------------------------------


def _subreaper_available() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    return hasattr(ctypes.CDLL(None), "prctl")


needs_subreaper = pytest.mark.skipif(
    not _subreaper_available(), reason="prctl(PR_SET_CHILD_SUBREAPER) is Linux-only"
)


def _as_subreaper(
    mode: str, scenario: str, count: int, workdir: Path
) -> dict[str, Any]:
    done = subprocess.run(
        [
            PY,
            str(HERE / "_proc_subreaper.py"),
            mode,
            scenario,
            str(count),
            str(workdir),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


@needs_subreaper
@pytest.mark.parametrize("mode", MODES)
def test_finding_07_as_subreaper_timeouts_leave_no_zombies_and_no_false_kill(
    mode: str, tmp_path: Path
) -> None:
    report = _as_subreaper(mode, "timeout", 3, tmp_path)
    assert report["children"] == []  # nothing of ours left: no zombie, no orphan
    assert [c["outcome"] for c in report["calls"]] == ["timed_out"] * 3
    assert [c["killed"] for c in report["calls"]] == [False] * 3
    # grace is 30 s: a group of zombies taken for alive would wait all of it
    assert all(c["seconds"] < 15 for c in report["calls"]), report


@needs_subreaper
@pytest.mark.parametrize("mode", MODES)
def test_finding_07_as_subreaper_killed_members_are_reaped(
    mode: str, tmp_path: Path
) -> None:
    report = _as_subreaper(mode, "ignore_term", 2, tmp_path)
    assert report["children"] == []
    assert [c["killed"] for c in report["calls"]] == [True, True]


@needs_subreaper
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("scenario", ["exit", "interrupt"])
def test_finding_15_as_subreaper_background_members_are_ended_and_reaped(
    mode: str, scenario: str, tmp_path: Path
) -> None:
    report = _as_subreaper(mode, scenario, 2, tmp_path)
    assert report["children"] == []
    expected = {"exit": "returned", "interrupt": {"sync": "KeyboardInterrupt", "async": "CancelledError"}[mode]}  # fmt: skip
    assert [c["outcome"] for c in report["calls"]] == [expected[scenario]] * 2
    assert [c["background_state"] for c in report["calls"]] == [None, None]


@needs_subreaper
@pytest.mark.parametrize("where", ["at_fork", "after_popen"])
def test_flake_interrupt_while_starting_the_child_leaves_no_group(
    where: str, tmp_path: Path
) -> None:
    # A Ctrl-C landing after the fork but before run_process held the child
    # (as the fork returned inside Popen, or in the setup after it) left the
    # whole group running, unreaped: the intermittent failure of the
    # "interrupt" scenario above, under load.
    report = _as_subreaper("sync", f"interrupt_{where}", 2, tmp_path)
    assert report["children"] == []
    assert [c["outcome"] for c in report["calls"]] == ["KeyboardInterrupt"] * 2
    assert [c["background_state"] for c in report["calls"]] == [None, None]


@needs_proc
@pytest.mark.parametrize("mode", MODES)
async def test_finding_15_background_member_is_ended_after_a_normal_exit(
    mode: str, tmp_path: Path
) -> None:
    pidfile = tmp_path / "bg"
    with capture_events() as events:
        result = await run(
            mode, ["sh", "-c", f"sleep 30 >/dev/null 2>&1 & echo $! > {pidfile}"]
        )
    assert result.returncode == 0
    background = int(pidfile.read_text())
    assert not running(background)  # not an orphan: ended before the call returned
    ended = events.of("process.group_ended")
    assert len(ended) == 1
    assert ended[0].fields["killed"] is False


@needs_proc
@pytest.mark.parametrize("mode", MODES)
async def test_finding_15_grandchild_holding_stdout_does_not_block_without_timeout(
    mode: str,
) -> None:
    started = time.monotonic()
    result = await run(mode, ["sh", "-c", "sleep 60 & echo done"], capture_output=True)
    assert result.stdout == b"done\n"
    assert time.monotonic() - started < 15  # the grandchild would hold stdout for 60 s


@needs_proc
@pytest.mark.parametrize("mode", MODES)
async def test_kill_group_on_exit_false_lets_a_background_service_live(
    mode: str, tmp_path: Path
) -> None:
    pidfile = tmp_path / "bg"
    script = f"sleep 30 >/dev/null 2>&1 & echo $! > {pidfile}"
    result = await run(mode, ["sh", "-c", script], kill_group_on_exit=False)
    background = int(pidfile.read_text())
    try:
        assert result.returncode == 0
        assert running(background)
    finally:
        os.kill(background, signal.SIGKILL)


@needs_proc
def test_keyboard_interrupt_while_waiting_ends_the_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    before = our_children()
    with _interrupt_when(pidfile.exists), pytest.raises(KeyboardInterrupt):
        pr.run_process([PY, "-c", SPAWNER, str(pidfile)], grace=0.2)
    pids = read_pids(pidfile)
    assert not any(running(pid) for pid in pids)
    assert our_children() - before == set()


@needs_proc
def test_a_second_interrupt_skips_the_grace_period(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    signals = iter(
        [
            pidfile.exists,  # both processes run: first Ctrl-C
            lambda: not running(read_pids(pidfile)[0]),  # SIGTERM took the spawner
        ]
    )
    started = time.monotonic()
    with _interrupt_when(*signals), pytest.raises(KeyboardInterrupt):
        pr.run_process([PY, "-c", SPAWNER, str(pidfile)], grace=120)
    assert time.monotonic() - started < 60  # the 120 s grace was cut short
    assert not any(running(pid) for pid in read_pids(pidfile))


@needs_proc
async def test_cancelling_arun_process_ends_the_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    before = our_children()
    task = asyncio.ensure_future(
        pr.arun_process([PY, "-c", SPAWNER, str(pidfile)], grace=0.2)
    )
    await until(pidfile.exists)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 60)
    assert not any(running(pid) for pid in read_pids(pidfile))
    assert our_children() - before == set()


@needs_proc
async def test_a_second_cancellation_skips_the_grace_period(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    started = time.monotonic()
    task = asyncio.ensure_future(
        pr.arun_process([PY, "-c", SPAWNER, str(pidfile)], grace=120)
    )
    await until(pidfile.exists)
    spawner, grandchild = read_pids(pidfile)
    task.cancel()
    # SIGTERM reached the group; the grandchild ignores it
    await until(lambda: not running(spawner))
    assert running(grandchild)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 60)
    assert time.monotonic() - started < 60
    assert not running(grandchild)


class _interrupt_when:  # noqa: N801 - a context manager used like a function
    """Raise KeyboardInterrupt in the main thread each time a condition turns true."""

    def __init__(self, *conditions: Any) -> None:
        self.conditions = conditions
        self.stop = threading.Event()

    def __enter__(self) -> None:
        assert threading.current_thread() is threading.main_thread()
        self.previous = signal.signal(signal.SIGUSR1, _raise_keyboard_interrupt)
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        for condition in self.conditions:
            until = time.monotonic() + 30
            while not self.stop.is_set() and time.monotonic() < until:
                try:
                    if condition():
                        break
                except (OSError, ValueError, AssertionError):
                    pass  # a file half written: look again
                time.sleep(0.005)
            if self.stop.is_set():
                return
            os.kill(os.getpid(), signal.SIGUSR1)

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)
        signal.signal(signal.SIGUSR1, self.previous)


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


_MEMBERS = st.lists(st.booleans(), max_size=3)  # True: the member ignores SIGTERM


@needs_proc
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mode=st.sampled_from(MODES),
    members=_MEMBERS,
    leader=st.one_of(st.integers(0, 3), st.none()),  # exit status, or None: overruns
    kill_group_on_exit=st.booleans(),
)
def test_hypothesis_lifecycle_over_group_shapes(
    mode: str, members: list[bool], leader: int | None, kill_group_on_exit: bool
) -> None:
    # The lifecycle as a state machine: whatever the group looks like, the
    # outcome, the events and what is left running follow from it.
    with tempfile.TemporaryDirectory() as ready:
        # Each member reports its pid once its trap is set, and the leader
        # waits for all of them: a SIGTERM sent before a member's shell had
        # run `trap` would end it, and the expected SIGKILL would not happen.
        trap = "trap '' TERM; "
        starts = [
            f'sh -c "{trap if ignores else ""}echo \\$\\$ > {ready}/{i}.tmp; '
            f'mv {ready}/{i}.tmp {ready}/{i}; exec sleep 30" >/dev/null 2>&1 &'
            for i, ignores in enumerate(members)
        ]
        reports = [
            f"until [ -e {ready}/{i} ]; do sleep 0.01; done; cat {ready}/{i}"
            for i in range(len(members))
        ]
        ending = "exec sleep 30" if leader is None else f"exit {leader}"
        script = "\n".join([*starts, *reports, ending])
        kwargs: dict[str, Any] = {
            "capture_output": True,
            # Only an overrunning leader may reach the timeout; it must not
            # strike while the members are still starting.
            "timeout": 3.0 if leader is None else 60.0,
            "grace": 0.2,
            "kill_group_on_exit": kill_group_on_exit,
        }
        outcome: Any
        with capture_events() as events:
            try:
                outcome = asyncio.run(run(mode, ["sh", "-c", script], **kwargs))
            except pr.ProcessTimeoutError as exc:
                outcome = exc
    pids = [int(p) for p in outcome.stdout.split()]
    try:
        assert len(pids) == len(members)
        actions = [e.action for e in events]
        if leader is None:
            assert isinstance(outcome, pr.ProcessTimeoutError)
            assert outcome.killed is any(members)
            assert actions == ["killed", "timed_out"] if any(members) else ["timed_out"]
            assert not any(running(pid) for pid in pids)
        elif kill_group_on_exit:
            assert outcome.returncode == leader
            expected = (["killed"] if any(members) else []) + (["group_ended"] if members else [])  # fmt: skip
            assert actions == expected
            assert not any(running(pid) for pid in pids)
        else:
            assert outcome.returncode == leader
            assert actions == []
            assert all(running(pid) for pid in pids)
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# -- finding 14: a spent budget starts nothing ----------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("how", ["timeout_zero", "timeout_negative", "spent_deadline"])
async def test_finding_14_spent_budget_never_starts_the_process(
    mode: str, how: str, tmp_path: Path
) -> None:
    marker = tmp_path / "side-effect"
    args = ["touch", str(marker)]
    timeout = {"timeout_zero": 0, "timeout_negative": -1, "spent_deadline": 30}[how]
    with (
        capture_events() as events,
        pr.deadline(0.0 if how == "spent_deadline" else None),
        pytest.raises(subprocess.TimeoutExpired) as info,
    ):
        await run(mode, args, timeout=timeout)
    error = info.value
    assert isinstance(error, pr.ProcessTimeoutError)
    assert isinstance(error, pr.TimeoutExceeded)
    assert error.started is False
    assert "was not started" in str(error)
    assert not marker.exists()
    assert events.of("process.timed_out")[0].fields["started"] is False
    # the same call with budget left does run: the marker proves the check
    await run(mode, args, timeout=30)
    assert marker.exists()


# -- secrets in argv ------------------------------------------------------------------

SECRET = "hunter2-Sup3rSecret"
SECRET_ARGV = [
    "deploy",
    "--password", SECRET,
    f"--token={SECRET}",
    "--api-key", SECRET,
    f"--client-secret={SECRET}",
    f"https://user:{SECRET}@example.com/repo.git",
    f"GITHUB_TOKEN={SECRET}",
    f"sk-{SECRET}xxxxxxxx",
    f"ghp_{SECRET.replace('-', '')}abcdefgh",
    "-H", f"Authorization: Bearer {SECRET}",
    f"mysql --password {SECRET} db",
]  # fmt: skip


def test_redact_argv_masks_every_carrier() -> None:
    shown = redact_argv(SECRET_ARGV)
    assert SECRET not in " ".join(shown)
    assert SECRET.replace("-", "") not in " ".join(shown)
    assert len(shown) == len(SECRET_ARGV)
    assert shown[:2] == ["deploy", "--password"]
    assert "https://user:[REDACTED]@example.com/repo.git" in shown


@pytest.mark.parametrize(
    "argv",
    [
        ["git", "commit", "-m", "fix the token refresh"],
        ["docker", "login", "--password-stdin", "--username", "me"],
        ["tool", "--token-file", "/run/secrets/token", "-p", "8080"],
        ["curl", "https://example.com/a?b=c", "--max-tokens", "123"],
    ],
)
def test_redact_argv_keeps_what_is_not_secret(argv: list[str]) -> None:
    assert redact_argv(argv) == argv


_TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=20, max_size=40)  # fmt: skip
_CARRIERS = [
    lambda s: ["--password", s],
    lambda s: [f"--password={s}"],
    lambda s: ["--token", s],
    lambda s: ["--api-key", s],
    lambda s: [f"--secret={s}"],
    lambda s: [f"https://bot:{s}@git.example.com/x"],
    lambda s: [f"postgres://app:{s}@db:5432/app"],
    lambda s: [f"sk-{s}"],
    lambda s: [f"sk-ant-{s}"],
    lambda s: [f"ghp_{s}"],
    lambda s: [f"API_KEY={s}"],
    lambda s: [f"DB_PASSWORD={s}"],
    lambda s: ["sh", "-c", f"mysql --password {s} -e 'select 1'"],
    lambda s: ["-H", f"Authorization: Bearer {s}"],
]


@settings(max_examples=200, deadline=None)
@given(
    secret=_TOKEN,
    carrier=st.sampled_from(_CARRIERS),
    before=st.lists(st.sampled_from(["git", "-v", "--verbose", "run", "x=1"]), max_size=3),
    after=st.lists(st.sampled_from(["--dry-run", "main", "--", "file.txt"]), max_size=3),
)  # fmt: skip
def test_hypothesis_planted_argv_secrets_never_show(
    secret: str, carrier: Any, before: list[str], after: list[str]
) -> None:
    argv = ["prog", *before, *carrier(secret), *after]
    shown = redact_argv(argv)
    assert secret not in " ".join(shown)
    assert len(shown) == len(argv)
    for kept in ("prog", *before, *after):
        assert kept in shown


@pytest.mark.parametrize("mode", MODES)
async def test_secrets_in_argv_never_reach_text_repr_events_or_audit(
    mode: str,
) -> None:
    script = "import sys; print('failing'); sys.exit(3)"
    args = [PY, "-c", script, *SECRET_ARGV]
    seen: list[str] = []
    with capture_events() as events:
        result = await run(mode, args, capture_output=True)
        seen += [repr(result), str(result)]
        with pytest.raises(pr.ProcessError) as failed:
            result.check_returncode()
        with pytest.raises(pr.ProcessError) as checked:
            await run(mode, args, capture_output=True, check=True)
        with pytest.raises(pr.ProcessTimeoutError) as timed_out:
            await run(mode, [PY, "-c", "import time; time.sleep(30)", *SECRET_ARGV], timeout=0.2, grace=0.1)  # fmt: skip
        with pytest.raises(pr.ProcessTimeoutError) as not_started:
            await run(mode, args, timeout=0)

        @pr.retry(
            attempts=2, deadline=None, wait_initial=0, wait_max=0, on=lambda e: True
        )
        def retried() -> None:
            pr.run_process(args, check=True)

        with pytest.raises(pr.ProcessError) as retried_error:
            retried()
    for error in (failed.value, checked.value, timed_out.value, not_started.value, retried_error.value):  # fmt: skip
        seen += [
            str(error),
            repr(error),
            json.dumps(pr.audit_event(error)),
            str(dict(error.context)),
        ]
        seen += list(getattr(error, "__notes__", []))
    seen += [json.dumps(e.to_dict()) for e in events]
    assert len(events) >= 4
    assert getattr(retried_error.value, "__notes__", [])  # the retry note is there...
    for text in seen:
        assert SECRET not in text, text  # ...and like everything else, redacted
    assert checked.value.cmd == args  # the caller's own attribute keeps the real argv


# -- arguments ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_bad_arguments_are_refused_before_anything_starts(mode: str) -> None:
    with pytest.raises(ValueError, match="at least"):
        await run(mode, [])
    with pytest.raises(TypeError, match="argument 1"):
        await run(mode, ["echo", 3])
    with pytest.raises(TypeError, match="binary mode"):
        await run(mode, ["cat"], input="text")
    with pytest.raises(TypeError, match="str in text mode"):
        await run(mode, ["cat"], input=b"bytes", text=True)
    with pytest.raises(TypeError, match="bytes-like"):
        await run(mode, ["cat"], input=123)
    with pytest.raises(ValueError, match="stdin and input"):
        await run(mode, ["cat"], input=b"x", stdin=subprocess.DEVNULL)
    with pytest.raises(ValueError, match="capture_output"):
        await run(mode, ["true"], capture_output=True, stdout=subprocess.PIPE)
    with pytest.raises(ValueError, match="disagree"):
        await run(mode, ["true"], text=True, universal_newlines=False)
    with pytest.raises(LookupError):
        await run(mode, ["true"], encoding="no-such-codec")
    with pytest.raises(TypeError, match="timeout"):
        await run(mode, ["true"], timeout="5")
    with pytest.raises(ValueError, match="timeout"):
        await run(mode, ["true"], timeout=float("nan"))
    with pytest.raises(ValueError, match="grace"):
        await run(mode, ["true"], grace=-1)
    with pytest.raises(FileNotFoundError):
        await run(mode, ["/nonexistent/program-paios"])


@pytest.mark.parametrize("mode", MODES)
async def test_a_command_line_in_one_string_is_one_program_like_subprocess(
    mode: str,
) -> None:
    with pytest.raises(FileNotFoundError) as expected:
        subprocess.run("echo hi", check=False)
    with pytest.raises(FileNotFoundError) as info:
        await run(mode, "echo hi")
    assert info.value.errno == expected.value.errno
    if sys.version_info >= (3, 11):
        assert "shlex.split" in "".join(info.value.__notes__)


@pytest.mark.parametrize("mode", MODES)
async def test_infinite_timeout_means_none(mode: str) -> None:
    result = await run(mode, ["true"], timeout=float("inf"))
    assert result.returncode == 0


def test_repr_shows_no_output_and_no_argv_secret() -> None:
    result = pr.run_process(["echo", f"--token={SECRET}"], capture_output=True)
    text = repr(result)
    assert text.startswith("ProcessResult(args=['echo', '--token=[REDACTED]']")
    assert "stdout=<" in text
    assert SECRET not in text
    assert result.args == ["echo", f"--token={SECRET}"]


@pytest.fixture(autouse=True)
def _no_leftovers() -> Iterator[None]:
    """Every test here must leave no child of ours behind, running or zombie."""
    before = our_children() if Path("/proc/self/stat").exists() else set()
    yield
    if Path("/proc/self/stat").exists():
        assert our_children() - before == set()
