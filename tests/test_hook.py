"""Issue 16: ``@hook`` ends the process with its exit code, within its budget."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import paios_reliability as pr

PRELUDE = """
import json, os, sys, time
import paios_reliability as pr

EVENTS = sys.argv[1]


def record(event):
    with open(EVENTS, "a") as fh:
        fh.write(json.dumps({"name": event.name, "level": event.level}) + "\\n")


pr.add_event_hook(record)
"""


def _run(
    tmp_path: Path, body: str, *, stdin: str = "", timeout: float = 60
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, str]], float]:
    script = tmp_path / "the_hook.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    events = tmp_path / "events.jsonl"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(script), str(events)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    elapsed = time.monotonic() - started
    recorded = (
        [json.loads(line) for line in events.read_text().splitlines()]
        if events.exists()
        else []
    )
    return result, recorded, elapsed


def test_finding_16_hook_exits_with_its_code_after_a_normal_run(tmp_path: Path) -> None:
    result, events, _ = _run(
        tmp_path,
        """
        @pr.hook(budget=5.0)
        def main():
            event = json.load(sys.stdin)
            print(json.dumps({"seen": event["tool"]}))

        main()
        print("never reached")
        """,
        stdin='{"tool": "Bash"}',
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == '{"seen": "Bash"}\n'
    assert result.stderr == ""
    assert [e["name"] for e in events] == ["paios_reliability.hook.finished"]


@pytest.mark.parametrize(
    ("raiser", "needle"),
    [
        ("json.loads('{bad json')", "JSONDecodeError"),
        ("sys.exit(3)", "SystemExit: 3"),
        ("raise KeyboardInterrupt", "KeyboardInterrupt"),
        ("raise RuntimeError('token=sk-ant-secret123456789 leaked')", "RuntimeError"),
    ],
)
def test_finding_16_hook_exits_with_its_code_whatever_is_raised(
    tmp_path: Path, raiser: str, needle: str
) -> None:
    result, events, _ = _run(
        tmp_path,
        f"""
        @pr.hook(budget=5.0, exit_code=0)
        def main():
            {raiser}

        main()
        """,
    )
    assert result.returncode == 0
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("paios_reliability: hook main failed (")
    assert needle in line
    assert "sk-ant-secret123456789" not in result.stderr
    assert [e["name"] for e in events] == ["paios_reliability.hook.failed"]
    assert events[0]["level"] == "error"


def test_finding_16_hook_exit_code_is_configurable(tmp_path: Path) -> None:
    result, _, _ = _run(
        tmp_path,
        """
        @pr.hook(exit_code=7)
        def main():
            raise ValueError("x")

        main()
        """,
    )
    assert result.returncode == 7


def test_finding_16_a_hung_hook_ends_within_its_budget(tmp_path: Path) -> None:
    result, events, elapsed = _run(
        tmp_path,
        """
        import threading

        @pr.hook(budget=1.0)
        def main():
            threading.Event().wait()  # never set: a hang

        main()
        """,
    )
    assert result.returncode == 0
    assert "ran out of its 1s budget; exiting 0" in result.stderr
    assert "paios_reliability.hook.budget_exceeded" in [e["name"] for e in events]
    # A hang is infinite: this only proves the process ended (5x the budget).
    assert elapsed < 5.0


def test_finding_16_a_hook_stuck_at_exit_still_ends(tmp_path: Path) -> None:
    result, _, elapsed = _run(
        tmp_path,
        """
        import atexit, threading

        atexit.register(lambda: threading.Event().wait())

        @pr.hook(budget=1.0)
        def main():
            print("done", flush=True)

        main()
        """,
    )
    assert result.returncode == 0
    assert result.stdout == "done\n"
    assert elapsed < 5.0


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_finding_16_hook_interrupted_by_a_signal_exits_with_its_code(
    tmp_path: Path, sig: signal.Signals
) -> None:
    script = tmp_path / "the_hook.py"
    script.write_text(
        PRELUDE
        + textwrap.dedent(
            """
            import threading

            @pr.hook(budget=30.0)
            def main():
                print("ready", flush=True)
                threading.Event().wait(60)

            main()
            """
        )
    )
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "events.jsonl")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "failed" in err


def test_finding_16_lock_waits_inside_a_hook_are_capped_by_its_budget(
    tmp_path: Path,
) -> None:
    config = tmp_path / "usage.json"
    config.write_text('{"count": 0}')
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from paios_reliability._data.file_lock import file_lock\n"
            f"with file_lock({str(config)!r}):\n"
            "    print('held', flush=True)\n"
            "    sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        result, _events, elapsed = _run(
            tmp_path,
            f"""
            @pr.hook(budget=2.0)
            def main():
                cfg = pr.ConfigFile({str(config)!r}, lock_timeout=30.0)
                with cfg.edit() as data:
                    data["count"] += 1

            main()
            """,
        )
    finally:
        holder.communicate("", timeout=30)
    assert result.returncode == 0
    assert "LockConflictError" in result.stderr  # the wait ended cleanly
    assert "ran out" not in result.stderr  # before the watchdog had to act
    assert elapsed < 10.0
    assert json.loads(config.read_text()) == {"count": 0}


def test_finding_16_async_hook(tmp_path: Path) -> None:
    result, _, _ = _run(
        tmp_path,
        """
        import asyncio

        @pr.hook
        async def main():
            await asyncio.sleep(0)
            print("async ok")

        main()
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "async ok\n"


def test_finding_16_hook_arguments_are_checked_at_decoration() -> None:
    with pytest.raises(ValueError, match="budget"):
        pr.hook(budget=0)
    with pytest.raises(ValueError, match="exit_code"):
        pr.hook(exit_code=300)
