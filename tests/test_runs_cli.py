"""``runs list|show|resume`` over real checkpoint stores, in real processes."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from paios_reliability import CheckpointStore, RedisStore

CLI = "import sys; from paios_reliability.cli import main; sys.exit(main())"
STEPS = ["fetch", "summarise", "publish"]


def _runs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CLI, "runs", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _crashed_run(store: CheckpointStore) -> None:
    store.save("run-1", "fetch", {"pages": 3})
    store.save("run-1", "summarise", None, status="running")  # killed mid-step
    store.save("run-2", "fetch", {"pages": 1})
    store.save("run-2", "summarise", "ok")
    store.save("run-2", "publish", "ok")


def test_list_show_and_resume_on_a_sqlite_file(tmp_path: Path) -> None:
    path = str(tmp_path / "runs.sqlite")
    with CheckpointStore(path) as store:
        _crashed_run(store)
    listed = _runs("list", "--store", path, "--json")
    assert listed.returncode == 0, listed.stderr
    by_id = {r["run_id"]: r for r in json.loads(listed.stdout)}
    assert (by_id["run-1"]["completed"], by_id["run-1"]["running"]) == (1, 1)
    assert by_id["run-2"]["completed"] == 3
    text = _runs("list", "--store", path).stdout
    assert "run-1  1/2 completed  (1 running)" in text

    shown = _runs("show", "run-1", "--store", path)
    assert shown.returncode == 0
    lines = shown.stdout.splitlines()
    assert lines[0].split()[:3] == ["1", "fetch", "completed"]
    assert '{"pages": 3}' in lines[0]
    assert lines[1].split()[:3] == ["2", "summarise", "running"]

    plan = _runs("resume", "run-1", "--store", path, "--steps", ",".join(STEPS))
    assert plan.returncode == 0, plan.stderr
    assert "1/3 done" in plan.stdout
    assert "next: summarise" in plan.stdout

    skipped = _runs("resume", "run-1", "--store", path, "--steps",
                    ",".join(STEPS), "--skip-to", "publish")  # fmt: skip
    assert "skipped: summarise" in skipped.stdout
    assert "next: publish" in skipped.stdout
    # The worker sees the same plan on its next start.
    with CheckpointStore(path) as store:
        assert store.resume_point("run-1", STEPS).next_step == "publish"

    restarted = _runs("resume", "run-1", "--store", path, "--force-restart",
                      "--steps", ",".join(STEPS))  # fmt: skip
    assert "restarted, 0/3 done" in restarted.stdout
    assert "next: fetch" in restarted.stdout


def test_unknown_run_bad_step_and_corrupt_checkpoint(tmp_path: Path) -> None:
    path = str(tmp_path / "runs.sqlite")
    with CheckpointStore(path) as store:
        _crashed_run(store)
    assert _runs("show", "nope", "--store", path).returncode == 1
    assert _runs("resume", "nope", "--store", path).returncode == 1
    bad = _runs("resume", "run-1", "--store", path, "--skip-to", "dance")
    assert bad.returncode != 0
    assert "dance" in bad.stderr
    missing = _runs("list", "--store", str(tmp_path / "none.sqlite"))
    assert missing.returncode != 0
    assert not (tmp_path / "none.sqlite").exists()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "UPDATE paios_checkpoints SET output = '{\"pages\": 4}' "
            "WHERE run_id = 'run-1' AND step = 'fetch'"
        )
    conn.close()
    corrupt = _runs("show", "run-1", "--store", path)
    assert corrupt.returncode == 42  # INTEGRITY_ERROR
    assert "checksum" in corrupt.stderr


def test_list_on_a_redis_state_store(redis_url: str) -> None:
    store = RedisStore(redis_url, prefix="runscli")
    _crashed_run(CheckpointStore(store))
    listed = _runs("list", "--store", f"{redis_url}#runscli", "--json")
    assert listed.returncode == 0, listed.stderr
    by_id = {r["run_id"]: r for r in json.loads(listed.stdout)}
    assert (by_id["run-1"]["completed"], by_id["run-1"]["running"]) == (1, 1)
    shown = _runs("show", "run-2", "--store", f"{redis_url}#runscli", "--json")
    assert [c["step"] for c in json.loads(shown.stdout)] == STEPS


@pytest.mark.parametrize("cmd", ["list", "show"])
def test_store_is_required(cmd: str) -> None:
    args = [cmd] if cmd == "list" else [cmd, "run-1"]
    assert _runs(*args).returncode == 10
