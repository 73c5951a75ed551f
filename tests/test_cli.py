"""The `paios-reliability` command, run as a real subprocess."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from hostile_files import HOSTILE_KINDS, hostile
from paios_reliability import CATALOG


def run(
    *args: str, cwd: Path | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "paios_reliability", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        check=False,
    )


def test_doctor_passes_every_check_and_prints_a_table() -> None:
    result = run("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["CHECK", "STATUS", "TIME", "DETAIL"]
    assert "0 failed" in lines[-1]
    assert "FAIL" not in result.stdout
    assert result.stderr == ""  # events the checks provoke stay out of the terminal


def test_doctor_json_names_each_check() -> None:
    result = run("doctor", "--json", "--check", "taxonomy", "--check", "sqlite")
    assert result.returncode == 0, result.stderr
    assert [(r["check"], r["ok"]) for r in json.loads(result.stdout)] == [
        ("taxonomy", True),
        ("sqlite", True),
    ]


def test_catalog_markdown_is_the_generated_table() -> None:
    result = run("catalog", "--markdown")
    assert result.returncode == 0
    assert result.stdout == CATALOG.to_markdown()


def test_catalog_json_for_one_code() -> None:
    result = run("catalog", "--json", "db_locked")
    assert json.loads(result.stdout) == [
        {
            "code": "DB_LOCKED",
            "kind": "transient",
            "exit_code": 24,
            "recovery": "wait_for_lock",
            "summary": CATALOG["DB_LOCKED"].summary,
        }
    ]


@pytest.mark.parametrize(
    "args",
    [(), ("bogus",), ("catalog", "NO_SUCH_CODE"), ("service", "render", "systemd")],
)
def test_usage_errors_print_one_line_and_exit_10(args: tuple[str, ...]) -> None:
    result = run(*args)
    assert result.returncode == 10
    if args:
        assert len(result.stderr.strip().splitlines()) == 1
        assert "USAGE_ERROR" in result.stderr


def test_db_check_reports_problems_with_a_nonzero_exit(tmp_path: Path) -> None:
    good = tmp_path / "good.sqlite"
    conn = sqlite3.connect(good)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    placeholder = tmp_path / "placeholder.sqlite"
    placeholder.touch()
    assert run("db", "check", str(good)).returncode == 0
    result = run("db", "check", str(good), str(placeholder))
    assert result.returncode == 43
    assert "placeholder.sqlite" in result.stdout


def test_config_validate_names_the_bad_field(tmp_path: Path) -> None:
    (tmp_path / "models.py").write_text(
        "from pydantic import BaseModel\n\nclass Settings(BaseModel):\n    port: int\n"
    )
    (tmp_path / "bad.json").write_text('{"port": "eighty"}')
    (tmp_path / "good.json").write_text('{"port": 80}')
    bad = run(
        "config", "validate", "bad.json", "--model", "models:Settings", cwd=tmp_path
    )
    assert bad.returncode == 12
    assert "port" in bad.stdout
    good = run(
        "config", "validate", "good.json", "--model", "models:Settings", cwd=tmp_path
    )
    assert good.returncode == 0, good.stdout + good.stderr


def test_credentials_status_of_a_missing_file_fails(tmp_path: Path) -> None:
    result = run("credentials", "status", str(tmp_path / "missing.json"))
    assert result.returncode != 0


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "socket", "directory"])
@pytest.mark.parametrize(
    "command", ["config validate", "credentials status", "db check"]
)
def test_hostile_files_give_a_clear_problem_and_a_nonzero_exit(
    tmp_path: Path, command: str, kind: str
) -> None:
    """A FIFO hung these commands forever and /dev/zero ran out of memory."""
    (tmp_path / "models.py").write_text(
        "from pydantic import BaseModel\n\nclass Settings(BaseModel):\n    port: int\n"
    )
    with hostile(kind, tmp_path / "target") as path:
        extra = ["--model", "models:Settings"] if command == "config validate" else []
        # A hang is infinite; the command takes about a second.
        result = run(*command.split(), str(path), *extra, cwd=tmp_path, timeout=60)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "Traceback" not in out
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines[0].startswith(str(path))
    assert len(lines) == 2, out
    assert HOSTILE_KINDS[kind] in lines[1]


def test_events_query_reads_a_store(tmp_path: Path) -> None:
    from paios_reliability import EventStore

    db = tmp_path / "observability.sqlite"
    store = EventStore(db, service="cli-test")
    store.emit("tool", "failed", level="error", tool="search")
    store.emit("tool", "called", tool="search")
    store.close()
    result = run(
        "events", "query", str(db), "--category", "tool", "--level", "error", "--json"
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["category"], r["action"]) for r in rows] == [("tool", "failed")]


def test_events_query_of_a_missing_store_is_one_line_with_a_stable_code(
    tmp_path: Path,
) -> None:
    result = run("events", "query", str(tmp_path / "none.sqlite"))
    assert result.returncode == CATALOG["FILE_NOT_FOUND"].exit_code
    assert result.stderr.count("\n") == 1
    assert "FILE_NOT_FOUND" in result.stderr


def test_service_render_systemd_unit() -> None:
    result = run(
        "service", "render", "systemd", "--label", "agent", "--", "/usr/bin/env", "true"
    )
    assert result.returncode == 0, result.stderr
    assert "ExecStart=/usr/bin/env true" in result.stdout
    assert "Restart=on-failure" in result.stdout


def test_health_runs_a_registry_from_a_module(tmp_path: Path) -> None:
    (tmp_path / "probes.py").write_text(
        "from paios_reliability import HealthRegistry\n"
        "registry = HealthRegistry()\n\n"
        "@registry.check()\n"
        "def always_fails() -> bool:\n"
        "    return False\n"
    )
    result = run("health", "--registry", "probes:registry", "--json", cwd=tmp_path)
    assert result.returncode == 1
    assert json.loads(result.stdout)["status"] == "failing"


def test_version_flag_prints_the_package_version() -> None:
    from importlib.metadata import version

    assert run("--version").stdout.strip() == version("paios-reliability")


def test_demo_fast_runs_every_section_and_exits_0() -> None:
    result = run("demo", "--fast")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "every step behaved as shown" in result.stdout
    assert "\x1b[" not in result.stdout  # colourless-safe when piped
