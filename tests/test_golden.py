"""Golden runs: record once, replay in-process and in fresh processes, diff."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from paios_reliability import ConfigError
from paios_reliability.testing import golden

CLI = "import sys; from paios_reliability.cli import main; sys.exit(main())"

MODULE = textwrap.dedent(
    """
    import os, time, uuid

    def stable():
        # Volatile keys (timestamps, ids) do not count.
        return {"plan": ["search", "summarise"], "score": 0.5,
                "timestamp": time.time(), "id": str(uuid.uuid4())}

    def drifting():
        # Differs in every process: the pid leaks into the output.
        return {"plan": ["search"], "worker": os.getpid()}

    def changed():
        return {"plan": ["search", "publish"], "score": 0.5}
    """
)


@pytest.fixture
def target_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "golden_targets.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_record_then_replay_across_processes(target_module: Path) -> None:
    path = target_module / "plan.json"
    digest = golden.record(path, "golden_targets:stable")
    body = json.loads(path.read_text())
    assert body["hash"] == digest
    assert body["output"]["plan"] == ["search", "summarise"]
    result = golden.check(path, "golden_targets:stable", times=3, processes=2)
    assert result.ok, result.explain()
    assert len(result.hashes) == 5
    assert "5 replay(s) match" in result.explain()


def test_a_change_is_named_by_key(target_module: Path) -> None:
    path = target_module / "plan.json"
    golden.record(path, "golden_targets:stable")
    result = golden.check(path, "golden_targets:changed", times=1)
    assert not result.ok
    assert result.changed == ("plan",)
    assert "changed keys: plan" in result.explain()


def test_a_process_dependent_output_fails_only_across_processes(
    target_module: Path,
) -> None:
    path = target_module / "drift.json"
    golden.record(path, "golden_targets:drifting")
    assert golden.check(path, "golden_targets:drifting", times=3).ok
    across = golden.check(path, "golden_targets:drifting", times=0, processes=2)
    assert not across.ok
    assert across.changed == ("worker",)


def test_bad_inputs_are_clear_errors(target_module: Path) -> None:
    path = target_module / "plan.json"
    with pytest.raises(ConfigError, match="cannot read golden file"):
        golden.check(path, "golden_targets:stable")
    path.write_text('{"hash": 1}')
    with pytest.raises(ConfigError, match="not a format-1 golden record"):
        golden.check(path, "golden_targets:stable")
    golden.record(path, "golden_targets:stable")
    with pytest.raises(ConfigError, match="module:function"):
        golden.check(path, lambda: 1, processes=1)
    with pytest.raises(ConfigError, match="cannot load target"):
        golden.check(path, "golden_targets:missing")
    with pytest.raises(ConfigError, match="not both 0"):
        golden.check(path, "golden_targets:stable", times=0)


def test_replay_check_command(target_module: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", CLI, "replay", "check", "g.json", *args],
            cwd=target_module, capture_output=True, text=True, timeout=120,
            check=False,
        )  # fmt: skip

    recorded = run("--target", "golden_targets:stable", "--record")
    assert recorded.returncode == 0, recorded.stderr
    ok = run("--target", "golden_targets:stable", "--times", "2", "--processes", "1")
    assert ok.returncode == 0, ok.stderr
    assert "3 replay(s) match" in ok.stdout
    bad = run("--target", "golden_targets:changed")
    assert bad.returncode == 1
    assert "changed keys: plan" in bad.stdout
    (target_module / "g.json").write_text("[]")
    assert run("--target", "golden_targets:stable").returncode == 12
