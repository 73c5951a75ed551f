"""``locks list|release --force`` on real SQLite and Redis stores, in real processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from paios_reliability import LockManager, RedisStore, SQLiteStore

CLI = "import sys; from paios_reliability.cli import main; sys.exit(main())"


def _locks(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CLI, "locks", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_list_then_force_release_prints_holder_and_token(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if kind == "sqlite":
        store_arg = str(tmp_path / "state.sqlite")
        store: SQLiteStore | RedisStore = SQLiteStore(store_arg)
    else:
        url = request.getfixturevalue("redis_url")
        store_arg = f"{url}#lockscli"
        store = RedisStore(url, prefix="lockscli")
    locks = LockManager(store, owner="worker-7")
    lease = locks.acquire("nightly-job", ttl=300)

    listed = _locks("list", "--json", "--store", store_arg, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert (row["key"], row["owner"], row["token"]) == (
        "nightly-job",
        "worker-7",
        lease.token,
    )
    assert row["holder"] == lease.holder

    refused = _locks("release", "nightly-job", "--store", store_arg, cwd=tmp_path)
    assert refused.returncode == 10
    assert "needs --force" in refused.stderr
    assert not lease.released  # untouched without --force

    freed = _locks(
        "release", "nightly-job", "--force", "--store", store_arg, cwd=tmp_path
    )
    assert freed.returncode == 0, freed.stderr
    assert f"held by worker-7 (holder {lease.holder}), token {lease.token}" in (
        freed.stdout
    )
    # The counter survives: the next holder is fenced above the old one.
    successor = locks.acquire("nightly-job", ttl=30)
    assert successor.token > lease.token
    successor.release()

    again = _locks(
        "release", "nightly-job", "--force", "--store", store_arg, cwd=tmp_path
    )
    assert again.returncode == 1
    assert "not held" in again.stdout
    empty = _locks("list", "--store", store_arg, cwd=tmp_path)
    assert empty.stdout.strip() == "no locks held"


def test_store_comes_from_reliability_toml_when_it_names_one(tmp_path: Path) -> None:
    LockManager(SQLiteStore(tmp_path / "s.sqlite"), owner="w").acquire("k", ttl=60)
    (tmp_path / "reliability.toml").write_text(
        '[status]\nstate_stores = ["s.sqlite"]\n'
    )
    listed = _locks("list", cwd=tmp_path)
    assert listed.returncode == 0
    assert listed.stdout.startswith("k  held by w  token ")
    (tmp_path / "reliability.toml").write_text(
        '[status]\nstate_stores = ["s.sqlite", "t.sqlite"]\n'
    )
    ambiguous = _locks("list", cwd=tmp_path)
    assert ambiguous.returncode == 10
    assert "give --store" in ambiguous.stderr
