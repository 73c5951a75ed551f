"""``db check --fix``: 0-byte placeholder databases are moved aside, never deleted."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from paios_reliability._data.quarantine import quarantine_placeholder

CLI = "import sys; from paios_reliability.cli import main; sys.exit(main())"


def _db_check(*args: str, stdout_only: bool = False) -> tuple[int, str]:
    proc = subprocess.run(
        [sys.executable, "-c", CLI, "db", "check", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return proc.returncode, proc.stdout + ("" if stdout_only else proc.stderr)


def test_fix_moves_only_the_placeholder_and_reports_it(tmp_path: Path) -> None:
    placeholder = tmp_path / "agent.sqlite"
    placeholder.touch()
    good = tmp_path / "good.sqlite"
    conn = sqlite3.connect(good)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    good_bytes = good.read_bytes()
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all, but someone's data")

    code, out = _db_check(str(placeholder), str(good), str(junk), "--fix")
    assert code == 43, out  # junk is still a problem: never touched
    assert not placeholder.exists()
    [moved] = list((tmp_path / ".paios-quarantine").iterdir())
    assert moved.name.startswith("agent.sqlite.")
    assert moved.stat().st_size == 0
    assert f"agent.sqlite: moved -> {moved}" in out
    assert "junk.sqlite: kept (has content (41 bytes))" in out
    assert good.read_bytes() == good_bytes
    assert junk.read_bytes() == b"not a database at all, but someone's data"

    code, out = _db_check(str(good), "--fix")
    assert code == 0
    assert "fix: nothing to do" in out


def test_without_fix_nothing_moves(tmp_path: Path) -> None:
    placeholder = tmp_path / "a.sqlite"
    placeholder.touch()
    code, _ = _db_check(str(placeholder))
    assert code == 43
    assert placeholder.exists()


def test_fix_into_a_chosen_folder_never_overwrites(tmp_path: Path) -> None:
    folder = tmp_path / "q"
    for _ in range(3):
        (tmp_path / "a.sqlite").touch()
        code, _ = _db_check(
            str(tmp_path / "a.sqlite"), "--fix", "--quarantine", str(folder)
        )
        assert code == 0
    assert len(list(folder.iterdir())) == 3  # same second: numbered, not replaced


def test_symlinks_directories_and_missing_files_are_kept(tmp_path: Path) -> None:
    (tmp_path / "empty").touch()
    os.symlink(tmp_path / "empty", tmp_path / "link.sqlite")
    (tmp_path / "dir.sqlite").mkdir()
    assert quarantine_placeholder(tmp_path / "link.sqlite").action == "kept"
    assert quarantine_placeholder(tmp_path / "dir.sqlite").action == "kept"
    assert quarantine_placeholder(tmp_path / "none.sqlite").action == "missing"
    assert (tmp_path / "link.sqlite").is_symlink()
    assert not (tmp_path / ".paios-quarantine").exists()


def test_json_output_lists_reports_and_fixes(tmp_path: Path) -> None:
    import json

    (tmp_path / "a.sqlite").touch()
    code, out = _db_check(
        str(tmp_path / "a.sqlite"), "--fix", "--json", stdout_only=True
    )
    data = json.loads(out)
    assert code == 0
    assert data["fixes"][0]["action"] == "moved"
    assert data["reports"][0]["ok"] is False
