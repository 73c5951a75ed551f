"""install_crash_handler: real child processes that raise, get SIGTERM or SIGKILL,
call os._exit or segfault; a fresh process reads what the store recorded."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from paios_reliability import CrashHandler, EventStore, install_crash_handler

CHILD = Path(__file__).parent / "_proc_ops_crash.py"
SERVICE = "gateway"


def start(mode: str, db: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), mode, str(db), SERVICE, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def ready(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, proc.stderr.read() if proc.stderr else ""
    return dict(json.loads(line))


def run(mode: str, db: Path, *extra: str) -> tuple[int, list[dict[str, Any]], str]:
    proc = start(mode, db, *extra)
    out, err = proc.communicate(timeout=60)
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return proc.returncode, lines, err


def fresh_reader(db: Path) -> dict[str, Any]:
    """A new process of the same service: its start is what finds unclean exits."""
    code, lines, err = run("read", db)
    assert code == 0, err
    return lines[-1]


def test_uncaught_exception_is_recorded_with_traceback_and_trace(
    tmp_path: Path,
) -> None:
    db = tmp_path / "observability.sqlite"
    code, lines, err = run("raise", db)
    assert code == 1
    assert "boom in main" in err  # the default hook still printed it
    trace_id = lines[1]["trace_id"]
    seen = fresh_reader(db)
    crash = seen["last_crash"]
    assert crash["action"] == "uncaught_exception"
    assert crash["level"] == "critical"
    assert crash["service"] == SERVICE
    meta = crash["metadata"]
    assert meta["error_type"] == "RuntimeError"
    assert "boom in main" in meta["message"]
    assert "hunter2" not in json.dumps(meta)  # secrets redacted
    assert 'raise RuntimeError("boom in main' in meta["traceback"]
    assert meta["pid"] == lines[0]["ready"]
    assert crash["trace_id"] == trace_id
    assert [lines[0]["ready"], "exception"] in seen["runs"]
    assert seen["previous"] == []  # not an unclean exit: nothing to find


def test_thread_exception_is_recorded_although_the_process_exits_0(
    tmp_path: Path,
) -> None:
    db = tmp_path / "observability.sqlite"
    code, _, err = run("thread", db)
    assert code == 0
    assert "boom in thread" in err
    crash = fresh_reader(db)["last_crash"]
    assert crash["action"] == "thread_exception"
    assert crash["metadata"]["error_type"] == "ValueError"
    assert crash["metadata"]["context"]["thread"] == "worker-1"


def test_asyncio_exception_is_recorded(tmp_path: Path) -> None:
    db = tmp_path / "observability.sqlite"
    code, _, err = run("asyncio", db)
    assert code == 0, err
    crash = fresh_reader(db)["last_crash"]
    assert crash["action"] == "asyncio_exception"
    assert crash["metadata"]["error_type"] == "KeyError"
    assert "never retrieved" in crash["metadata"]["context"]["message"]


def test_sigterm_is_recorded_then_exits_cleanly_running_atexit(tmp_path: Path) -> None:
    db = tmp_path / "observability.sqlite"
    marker = tmp_path / "atexit.txt"
    proc = start("sigterm", db, str(marker))
    pid = ready(proc)["ready"]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert marker.read_text() == "atexit ran"
    seen = fresh_reader(db)
    assert "sigterm" in seen["lifecycle"]
    assert [pid, "terminated"] in seen["runs"]
    assert seen["last_crash"] is None  # a requested stop is not a crash
    assert seen["previous"] == []


@pytest.mark.parametrize("how", ["sigkill", "os_exit", "segfault"])
def test_unclean_exit_is_reported_by_the_next_start(tmp_path: Path, how: str) -> None:
    db = tmp_path / "observability.sqlite"
    if how == "sigkill":
        proc = start("wait", db)
        info = ready(proc)
        os.kill(info["ready"], signal.SIGKILL)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
    else:
        proc = start(how, db)
        info = ready(proc)
        proc.communicate(timeout=30)
        assert proc.returncode == (7 if how == "os_exit" else -signal.SIGSEGV)
    pid = info["ready"]
    seen = fresh_reader(db)
    crash = seen["last_crash"]
    assert crash["action"] == "unclean_exit"
    assert crash["level"] == "critical"
    assert crash["metadata"]["pid"] == pid
    assert seen["previous"][0]["pid"] == pid
    assert [pid, "crashed"] in seen["runs"]
    fault = crash["metadata"].get("faulthandler")
    if how == "segfault":
        assert "Segmentation fault" in fault
        assert "_proc_ops_crash.py" in fault
        assert not Path(info["fault_path"]).exists()  # attached, then removed
    else:
        assert fault is None
    # Reported once: the next start after that finds nothing new.
    assert fresh_reader(db)["previous"] == []


def test_clean_exit_leaves_no_crash_and_no_faulthandler_file(tmp_path: Path) -> None:
    db = tmp_path / "observability.sqlite"
    code, lines, err = run("clean", db)
    assert code == 0, err
    assert not Path(lines[0]["fault_path"]).exists()
    seen = fresh_reader(db)
    assert seen["last_crash"] is None
    assert [lines[0]["ready"], "exited"] in seen["runs"]


def test_chains_to_the_previous_excepthook(tmp_path: Path) -> None:
    db = tmp_path / "observability.sqlite"
    code, _, err = run("chained", db)
    assert code == 1
    assert "USER HOOK RAN" in err
    assert fresh_reader(db)["last_crash"]["action"] == "uncaught_exception"


def test_installing_twice_records_once(tmp_path: Path) -> None:
    db = tmp_path / "observability.sqlite"
    code, _, _ = run("twice", db)
    assert code == 1
    store = EventStore(db)
    crashes = store.query(category="crash")
    store.close()
    assert [c.action for c in crashes] == ["uncaught_exception"]


# -- in-process: install/uninstall, idempotency, the asyncio handler -------------------


@pytest.fixture
def handler(tmp_path: Path) -> Any:
    store = EventStore(tmp_path / "observability.sqlite")
    made: list[CrashHandler] = []

    def make(service: str = "inproc") -> CrashHandler:
        h = install_crash_handler(
            store, service=service, enable_faulthandler=False, signals=()
        )
        made.append(h)
        return h

    yield make
    for h in made:
        h.uninstall()
    store.close()


def test_install_is_idempotent_and_uninstall_restores_hooks(handler: Any) -> None:
    before = sys.excepthook
    first = handler()
    assert sys.excepthook == first._excepthook
    assert handler() is first
    second = handler("other-service")
    assert second is not first
    assert sys.excepthook == second._excepthook
    second.uninstall()
    second.uninstall()
    assert sys.excepthook is before
    runs = first.store._run(
        lambda c: c.execute("SELECT service, status FROM runs ORDER BY id").fetchall(),
        write=False,
    )
    assert runs == [("inproc", "exited"), ("other-service", "exited")]


async def test_asyncio_handler_records_and_chains_to_the_default(
    handler: Any, caplog: pytest.LogCaptureFixture
) -> None:
    h = handler()
    loop = asyncio.get_running_loop()
    h.watch_loop()
    h.watch_loop()  # no double chaining
    assert loop.get_exception_handler() == h.asyncio_handler
    try:
        loop.call_exception_handler(
            {
                "message": "Task exception was never retrieved",
                "exception": OSError("disk"),
            }
        )
    finally:
        loop.set_exception_handler(None)
    crash = h.store.last_crash("inproc")
    assert crash is not None
    assert crash.action == "asyncio_exception"
    assert crash.metadata["error_type"] == "OSError"
    assert "never retrieved" in caplog.text  # the default handler still logged it


def test_record_exception_never_raises_even_if_the_store_is_closed(
    handler: Any,
) -> None:
    h = handler()
    h.store.close()
    h.record_exception(RuntimeError("late"))  # must not raise
    assert h.store.stats().dropped >= 1


# The crash handler records SIGTERM from the signal handler, in the main
# thread, between two bytecodes of whatever that thread was doing: its event
# reaches every hook while the interrupted frame may hold one of their locks.
# Found as a daemon that never stopped on SIGTERM (the log-storm summary's
# lock was a plain Lock, held by the interrupted admit()).
_REENTRY = {
    "log summary": (
        "from paios_reliability._core import event_log\n"
        "held = event_log._summary._lock\n"
        "def handle(signum, frame):\n"
        "    emit('crash_handler', 'signal', level='warning', subject='t')\n"
    ),
    "metric": (
        "counter = pr.MetricsRegistry().counter('signals_total', 'seen')\n"
        "held = counter._lock\n"
        "def handle(signum, frame):\n"
        "    counter.inc()\n"
    ),
    "alert rules": (
        "rules = pr.AlertRules()\n"
        "held = rules._lock\n"
        "def handle(signum, frame):\n"
        "    rules.decide(pr.emit_event('crash_handler', 'recorded', level='error'))\n"
    ),
}


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="POSIX signals only")
@pytest.mark.parametrize("where", sorted(_REENTRY))
def test_a_signal_handler_never_waits_for_a_lock_its_own_thread_holds(
    where: str,
) -> None:
    script = (
        "import logging, signal\n"
        "import paios_reliability as pr\n"
        "from paios_reliability._core.events import emit\n"
        + _REENTRY[where]
        + "signal.signal(signal.SIGUSR1, handle)\n"
        "with held:  # the interrupted frame is inside its critical section\n"
        "    signal.raise_signal(signal.SIGUSR1)\n"
        "print('returned')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "returned"
