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
    assert result.returncode == CATALOG["SERVICE_UNAVAILABLE"].exit_code
    assert json.loads(result.stdout)["status"] == "failing"


def test_version_flag_prints_the_package_version() -> None:
    from importlib.metadata import version

    assert run("--version").stdout.strip() == version("paios-reliability")


def test_demo_fast_runs_every_section_and_exits_0() -> None:
    result = run("demo", "--fast")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "every step behaved as shown" in result.stdout
    assert "\x1b[" not in result.stdout  # colourless-safe when piped


# -- issue 20: one exit code per kind of failure, help, hints, the reference page --


def _credential_store(path: Path, *, expired: bool) -> None:
    from datetime import datetime, timedelta, timezone

    from paios_reliability import Credential, CredentialStore

    when = datetime.now(timezone.utc) + timedelta(days=-1 if expired else 30)
    store = CredentialStore(path, create=True)
    store.set(
        "api",
        Credential(provider="demo", token="t0ken-value-not-shown", expires_at=when),  # type: ignore[arg-type]
    )
    store.close()


@pytest.mark.parametrize(
    "command",
    [
        ("db", "check"),
        ("config", "validate"),
        ("credentials", "status"),
        ("events", "query"),
    ],
)
def test_finding_cli_missing_file_is_one_exit_code_in_every_command(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    """A missing file was 43, 12, 33 or 15 depending on the command."""
    extra = ["--model", "models:Settings"] if command[0] == "config" else []
    result = run(*command, str(tmp_path / "missing.file"), *extra, cwd=tmp_path)
    assert result.returncode == CATALOG["FILE_NOT_FOUND"].exit_code == 15
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "command", [("db", "check"), ("config", "validate"), ("credentials", "status")]
)
def test_finding_cli_a_directory_is_one_exit_code_in_every_command(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    (tmp_path / "models.py").write_text(
        "from pydantic import BaseModel\n\nclass Settings(BaseModel):\n    port: int\n"
    )
    (tmp_path / "adir").mkdir()
    extra = ["--model", "models:Settings"] if command[0] == "config" else []
    result = run(*command, "adir", *extra, cwd=tmp_path)
    assert result.returncode == CATALOG["IS_A_DIRECTORY"].exit_code


def test_finding_cli_credentials_expired_and_unreadable_have_their_own_codes(
    tmp_path: Path,
) -> None:
    """Every credentials problem was 33 (expired), even a file that is not a store."""
    fresh, stale, garbage = (tmp_path / n for n in ("ok.json", "old.json", "x.json"))
    _credential_store(fresh, expired=False)
    _credential_store(stale, expired=True)
    garbage.write_bytes(b"\xff\xfe not a store")
    assert run("credentials", "status", str(fresh)).returncode == 0
    assert run("credentials", "status", str(stale)).returncode == 33
    result = run("credentials", "status", str(garbage))
    assert result.returncode == CATALOG["CONFIG_INVALID"].exit_code
    assert "t0ken-value-not-shown" not in result.stdout + result.stderr


def test_finding_cli_doctor_check_typo_fails_listing_valid_checks() -> None:
    """`doctor --check typo` printed an empty table and exited 0."""
    result = run("doctor", "--check", "sqlite", "--check", "sqlit")
    assert result.returncode == 10
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "unknown check(s): sqlit" in lines[0]
    assert "valid checks: import, " in lines[0]
    assert "filesystem" in lines[0]
    assert result.stdout == ""


def test_finding_cli_errors_are_one_line_on_stderr_with_a_hint(tmp_path: Path) -> None:
    result = run("events", "query", str(tmp_path / "none.sqlite"))
    (line,) = result.stderr.splitlines()
    assert line.startswith("paios-reliability: error: FILE_NOT_FOUND: ")
    assert "(hint: check the path" in line
    assert "paios-reliability catalog FILE_NOT_FOUND" in line
    usage = run("db", "check")
    (line,) = usage.stderr.splitlines()
    assert usage.returncode == 10
    assert "USAGE_ERROR" in line
    assert "(hint: see paios-reliability db check --help)" in line


def test_finding_cli_every_command_has_a_description_and_examples() -> None:
    """`--help` of most commands had no description, examples or exit codes."""
    import argparse

    from paios_reliability.cli import _parser
    from paios_reliability.cli._reference import commands

    found = list(commands(_parser()))
    assert len(found) >= 15
    for path, parser in found:
        text = parser.format_help()
        assert parser.description, path
        assert "exit codes:" in text, path
        if path:
            assert "examples:" in text, path
            prog = "paios-reliability " + " ".join(path)
            assert f"  {prog}" in text or f"  paios-reliability {path[0]}" in text
        for action in parser._actions:
            if not isinstance(action, argparse._SubParsersAction):
                assert action.help, (path, action.dest)


def test_finding_cli_reference_page_is_generated_from_the_parser() -> None:
    """docs/cli.md must list every command, option and example the parser has."""
    import argparse

    from paios_reliability.cli import _parser
    from paios_reliability.cli._reference import commands, render_reference

    page = (Path(__file__).parent.parent / "docs" / "cli.md").read_text("utf-8")
    flat = " ".join(page.split())
    for path, parser in commands(_parser()):
        assert f"## `{' '.join(('paios-reliability', *path))}`" in page, path
        assert " ".join((parser.description or "").split()) in flat, path
        for action in parser._actions:
            for option in action.option_strings:
                assert option in page, (path, option)
        for line in (parser.epilog or "").splitlines():
            assert line.strip() in page, (path, line)
        assert all(
            name in page
            for action in parser._actions
            if isinstance(action, argparse._SubParsersAction)
            for name in action.choices
        )
    # On the Python that wrote the page the text is identical; argparse's
    # wrapping differs a little between versions, hence the checks above.
    if sys.version_info[:2] == (3, 12):
        assert page == render_reference(), (
            "run: python -m paios_reliability.cli._reference > docs/cli.md"
        )


def test_finding_demo_keep_leaves_a_store_the_closing_hint_can_query(
    tmp_path: Path,
) -> None:
    """The demo's closing command pointed at a database it had just deleted."""
    kept = tmp_path / "paios-demo"
    demo = run("demo", "--fast", "--keep", str(kept))
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    hint = next(
        line.strip().removeprefix("from a shell: ")
        for line in demo.stdout.splitlines()
        if "events query" in line
    )
    words = hint.split()
    assert words[:3] == ["paios-reliability", "events", "query"]
    result = run(*words[1:])
    assert result.returncode == 0, result.stderr
    assert "circuit_breaker" in result.stdout
    again = run("demo", "--fast", "--keep", str(kept))
    assert again.returncode == 10
    assert "must be a new or empty directory" in again.stderr


def test_finding_demo_without_keep_does_not_point_at_a_deleted_file() -> None:
    result = run("demo", "--fast")
    assert result.returncode == 0
    assert "paios-reliability demo --keep paios-demo" in result.stdout
    assert "events query observability.sqlite" not in result.stdout


def test_finding_cli_service_render_resolves_the_program_on_path() -> None:
    """`-- python -m app` failed with an internal parameter name."""
    import shutil

    result = run(
        "service", "render", "systemd", "--label", "agent", "--", "env", "true"
    )
    assert result.returncode == 0, result.stderr
    assert f"ExecStart={shutil.which('env')} true" in result.stdout
