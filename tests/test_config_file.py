"""ConfigFile: validated load, no-op saves, backups, rollback, locked updates."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from pydantic import BaseModel, ConfigDict, Field, field_serializer

from hostile_files import (
    HOSTILE_KINDS,
    finishes,
    give_away,
    hostile,
    readonly_dir,
    record_creation_modes,
    run_unprivileged,
    seal,
    state,
)
from paios_reliability import ConfigError, ConfigFile, SaveResult
from paios_reliability._data.config_validate import config_validate
from paios_reliability.testing import FakeClock, capture_events

WORKERS = str(Path(__file__).with_name("_proc_data_workers.py"))


class Server(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str
    port: int = Field(ge=1, le=65535)


class App(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    debug: bool = False
    servers: list[Server] = []


class Loose(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str


class Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str


def _state(path: Path) -> tuple[bytes, int, int]:
    st_ = path.stat()
    return path.read_bytes(), st_.st_ino, st_.st_mtime_ns


@pytest.fixture
def config(tmp_path: Path) -> ConfigFile[App]:
    cf = ConfigFile(tmp_path / "app.json", App, backups=3)
    cf.save(App(name="first", servers=[Server(host="a", port=1)]))
    return cf


# -- load -----------------------------------------------------------------------------


def test_load_round_trip(config: ConfigFile[App]) -> None:
    value = config.load()
    assert value == App(name="first", servers=[Server(host="a", port=1)])
    assert json.loads(config.path.read_text())["servers"] == [{"host": "a", "port": 1}]


def test_missing_file_fails_fast_unless_a_default_is_given(tmp_path: Path) -> None:
    path = tmp_path / "none.json"
    with pytest.raises(ConfigError) as info:
        ConfigFile(path, App).load()
    assert info.value.code == "CONFIG_MISSING"
    assert info.value.path == str(path)
    assert str(path) in str(info.value)
    assert ConfigFile(path, App, default=App(name="d")).load() == App(name="d")
    assert not path.exists()


def test_every_bad_field_is_listed(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(
        json.dumps(
            {
                "name": 7,
                "debug": "maybe",
                "servers": [{"host": "ok", "port": 0}, {"port": "x", "extra": 1}],
                "unknown": True,
            }
        )
    )
    with pytest.raises(ConfigError) as info:
        ConfigFile(path, App).load()
    err = info.value
    assert err.code == "CONFIG_INVALID"
    assert err.path == str(path)
    assert isinstance(err, ValueError)
    fields = [f for f, _ in err.errors]
    assert fields == [
        "name",
        "debug",
        "servers[0].port",
        "servers[1].host",
        "servers[1].port",
        "servers[1].extra",
        "unknown",
    ]
    assert all(msg for _, msg in err.errors)
    assert "servers[0].port" in str(err)


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b'{"name": "a",', "invalid JSON at line 1"),
        (b'{"name": "a", "name": "b"}', "duplicate key 'name'"),
        (b'{"name": NaN}', "NaN is not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"", "invalid JSON"),
        (b"[" * 100_000, "invalid JSON"),
    ],
    ids=["truncated", "duplicate", "nan", "binary", "empty", "deep"],
)
def test_unparseable_files(tmp_path: Path, raw: bytes, needle: str) -> None:
    path = tmp_path / "c.json"
    path.write_bytes(raw)
    with pytest.raises(ConfigError) as info:
        ConfigFile(path, App).load()
    assert needle in str(info.value)
    assert info.value.errors[0][0] == "<file>"
    assert path.read_bytes() == raw


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b'\xef\xbb\xbf{"name": "bom"}')
    assert ConfigFile(path, App).load().name == "bom"


def test_toml_is_read_only(tmp_path: Path) -> None:
    path = tmp_path / "app.toml"
    path.write_text('name = "tom"\n[[servers]]\nhost = "h"\nport = 80\n')
    cf = ConfigFile(path, App)
    if sys.version_info < (3, 11):
        # No tomllib: a clear, typed error naming what is missing; file untouched.
        before = path.read_bytes()
        with pytest.raises(ConfigError, match=r"Python 3\.11"):
            cf.load()
        assert path.read_bytes() == before
        return
    assert cf.load() == App(name="tom", servers=[Server(host="h", port=80)])
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="read-only"):
        cf.save(App(name="x"))
    path.write_text("name = \n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        cf.load()
    assert before != path.read_bytes()


def test_validate_never_touches_disk(tmp_path: Path) -> None:
    cf = ConfigFile(tmp_path / "v.json", App)
    assert cf.validate({"name": "x"}) == App(name="x")
    assert cf.validate(b'{"name": "y"}') == App(name="y")
    assert cf.validate('{"name": "z"}') == App(name="z")
    assert cf.validate(App(name="m")) == App(name="m")
    with pytest.raises(ConfigError) as info:
        cf.validate({"name": "x", "servers": [{"host": 1}]})
    assert [f for f, _ in info.value.errors] == ["servers[0].host", "servers[0].port"]
    assert list(tmp_path.iterdir()) == []


def test_strictness_comes_from_the_model(tmp_path: Path) -> None:
    loose = ConfigFile(tmp_path / "loose.json", Loose)
    loose.save({"name": "a", "future_key": [1, 2]})
    assert json.loads(loose.path.read_text()) == {"name": "a", "future_key": [1, 2]}
    lenient = ConfigFile(tmp_path / "lenient.json", Lenient)
    lenient.save({"name": "a", "dropped": 1})
    assert json.loads(lenient.path.read_text()) == {"name": "a"}
    with pytest.raises(ConfigError, match="Extra inputs"):
        ConfigFile(tmp_path / "strict.json", App).save({"name": "a", "nope": 1})


# -- save -------------------------------------------------------------------------------


def test_save_unchanged_writes_nothing(config: ConfigFile[App]) -> None:
    before = _state(config.path)
    backups = config.backups()
    with capture_events() as events:
        result = config.save(App(name="first", servers=[Server(host="a", port=1)]))
        again = config.save({"name": "first", "servers": [{"host": "a", "port": 1}]})
    assert result == SaveResult(changed=False, backup=None, diff="")
    assert again.changed is False
    assert _state(config.path) == before  # same bytes, inode and mtime
    assert config.backups() == backups
    assert events.of("config_file.saved") == []


def test_save_changed_makes_a_hard_link_backup(config: ConfigFile[App]) -> None:
    old_bytes, old_inode, _ = _state(config.path)
    with capture_events() as events:
        result = config.save(App(name="second"))
    assert result.changed
    assert result.backup is not None
    assert result.backup.read_bytes() == old_bytes
    assert result.backup.stat().st_ino == old_inode  # the old file, kept by a link
    assert result.backup.parent == config.path.with_name("app.json.backups")
    assert config.backups() == [result.backup]
    assert '-  "name": "first",' in result.diff
    assert '+  "name": "second",' in result.diff
    assert config.load() == App(name="second")
    [event] = events.of("config_file.saved")
    assert event.fields["backup"] == str(result.backup)


def test_invalid_save_writes_nothing(config: ConfigFile[App]) -> None:
    before = _state(config.path)
    with pytest.raises(ConfigError) as info:
        config.save({"name": "x", "servers": [{"host": "h", "port": 99999}]})
    assert info.value.errors[0][0] == "servers[0].port"
    assert _state(config.path) == before
    assert config.backups() == []


def test_dry_run_shows_the_diff_and_writes_nothing(
    config: ConfigFile[App], tmp_path: Path
) -> None:
    before = _state(config.path)
    result = config.save(App(name="dry"), dry_run=True)
    assert result.changed
    assert result.dry_run
    assert result.backup is None
    assert result.diff.startswith(
        f"--- {config.path} (current)\n+++ {config.path} (new)\n"
    )
    assert '+  "name": "dry",' in result.diff
    assert _state(config.path) == before
    assert config.backups() == []
    fresh = ConfigFile(tmp_path / "new.json", App)
    preview = fresh.save({"name": "n"}, dry_run=True)
    assert preview.diff.startswith("--- /dev/null")
    assert not fresh.path.exists()
    unchanged = config.save(config.load(), dry_run=True)
    assert unchanged.changed is False
    assert unchanged.diff == ""


def test_backups_rotate(tmp_path: Path) -> None:
    clock = FakeClock()  # standing still: names must still sort in save order
    with clock.install():
        cf = ConfigFile(tmp_path / "r.json", App, backups=3)
        for i in range(7):
            cf.save(App(name=f"v{i}"))
    kept = cf.backups()
    assert len(kept) == 3
    assert [App.model_validate_json(p.read_bytes()).name for p in kept] == [
        "v5",
        "v4",
        "v3",
    ]
    none = ConfigFile(tmp_path / "n.json", App, backups=0)
    none.save(App(name="a"))
    assert none.save(App(name="b")).backup is None
    assert none.backups() == []


def test_save_through_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "c.json").write_text('{"name": "old"}')
    link = tmp_path / "c.json"
    link.symlink_to(real / "c.json")
    cf = ConfigFile(link, App)
    result = cf.save(App(name="new"))
    assert link.is_symlink()
    assert cf.load().name == "new"
    assert result.backup is not None
    assert result.backup.parent == real / "c.json.backups"


class Mangler(BaseModel):
    """Serialises a value its own validation rejects: the read-back catches it."""

    name: str = Field(pattern=r"^[a-z]+!?$")

    @field_serializer("name")
    def _mangle(self, value: str) -> str:
        return value + "!"


def test_failed_read_back_restores_the_previous_version(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text('{"name": "good"}')
    cf = ConfigFile(path, Mangler)
    before = path.read_bytes()
    with capture_events() as events, pytest.raises(ConfigError):
        cf.save({"name": "abc!"})
    assert path.read_bytes() == before
    assert len(events.of("config_file.restored")) == 1


# -- hostile files and operating-system failures --------------------------------------


@pytest.mark.parametrize("kind", sorted(HOSTILE_KINDS))
def test_a_special_file_is_refused_at_once_with_a_config_error(
    tmp_path: Path, kind: str
) -> None:
    with hostile(kind, tmp_path / "app.json") as path:
        before = os.lstat(path)
        cf = ConfigFile(path, App)
        attempts = {
            "load": cf.load,
            "save": lambda: cf.save(App(name="x")),
            "update": lambda: cf.update(lambda app: app),
        }
        for name, attempt in attempts.items():
            with pytest.raises(ConfigError) as info:
                finishes(attempt)
            error = info.value
            assert str(path) in str(error), name
            assert HOSTILE_KINDS[kind] in str(error), name
            assert error.path == str(path)
            expected = "IS_A_DIRECTORY" if kind == "directory" else "CONFIG_INVALID"
            assert error.code == expected
        report = finishes(lambda: config_validate(path, App))
        assert not report.ok
        assert HOSTILE_KINDS[kind] in report.to_text()
        after = os.lstat(path)
        assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    assert not cf.backup_dir.exists()


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    with path.open("wb") as fh:  # sparse: 16 MiB + 1 without writing them
        fh.truncate(16 * 1024 * 1024 + 1)
    cf = ConfigFile(path, App)
    assert cf.max_bytes == 16 * 1024 * 1024
    with pytest.raises(ConfigError, match="16777217 bytes") as info:
        cf.load()
    assert str(path) in str(info.value)
    small = tmp_path / "small.json"
    small.write_text('{"name": "a little over the limit"}')
    with pytest.raises(ConfigError, match="limit"):
        ConfigFile(small, App, max_bytes=10).load()
    assert ConfigFile(small, App, max_bytes=100).load().name.startswith("a little")
    with pytest.raises(ValueError, match="max_bytes"):
        ConfigFile(small, App, max_bytes=0)


def test_a_backups_path_that_is_a_file_is_a_config_error(
    config: ConfigFile[App],
) -> None:
    assert not config.backup_dir.exists()  # one save so far: nothing to back up
    config.backup_dir.write_text("not a directory")
    before = state(config.path)
    with pytest.raises(ConfigError) as info:
        config.save(App(name="second"))
    assert info.value.code == "NOT_A_DIRECTORY"
    assert str(config.path) in str(info.value)
    assert str(config.backup_dir) in str(info.value)
    assert state(config.path) == before
    assert config.backup_dir.read_text() == "not a directory"


def test_a_missing_parent_directory_is_a_config_error(tmp_path: Path) -> None:
    cf = ConfigFile(tmp_path / "nope" / "app.json", App)
    with pytest.raises(ConfigError) as info:
        cf.save(App(name="x"))
    assert info.value.code == "FILE_NOT_FOUND"
    assert f"directory {tmp_path / 'nope'} does not exist" in str(info.value)
    assert str(cf.path) in str(info.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("lock_file", ["absent", "present"])
def test_a_read_only_directory_is_a_permission_config_error(lock_file: str) -> None:
    """Found by the lock (no lock file yet) or by the temp file (lock file there)."""
    with readonly_dir() as directory:
        path = directory / "app.json"
        path.write_text('{"name": "old"}')
        path.chmod(0o600)
        give_away(path)
        if lock_file == "present":
            lock = directory / ".app.json.lock"
            lock.touch()
            give_away(lock)
        seal(directory)
        before = state(path)
        answer = run_unprivileged("config_save", str(path))
        assert answer["ok"] is False
        assert {"ConfigError", "ValueError"} <= set(answer["types"])
        assert answer["code"] == "PERMISSION_DENIED"
        assert str(path) in answer["message"]
        assert "Permission denied (EACCES)" in answer["message"]
        assert state(path) == before
        assert sorted(p.name for p in directory.iterdir()) == sorted(
            ["app.json"] + ([".app.json.lock"] if lock_file == "present" else [])
        )


def test_a_write_past_the_file_size_limit_is_a_config_error(tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes the write fail with EFBIG, as near to a full disk as we get."""
    path = tmp_path / "app.json"
    ConfigFile(path, App, backups=2).save(App(name="old"))
    ConfigFile(path, App, backups=2).save(App(name="older"))
    backups = sorted(p.name for p in (tmp_path / "app.json.backups").iterdir())
    path.chmod(0o640)
    before = state(path)
    command = ["fsize_limited", "4096", "config_save", str(path), "20000"]
    proc = subprocess.run(
        [sys.executable, WORKERS, *command],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    answer = json.loads(proc.stdout)
    assert answer["ok"] is False
    assert answer["code"] == "DISK_FULL"
    assert "File too large (EFBIG)" in answer["message"]
    assert str(path) in answer["message"]
    assert state(path) == before
    # No temp file left, and no backup made for the write that did not happen.
    assert sorted(p.name for p in (tmp_path / "app.json.backups").iterdir()) == backups
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".app.json.lock",
        "app.json",
        "app.json.backups",
    ]


@pytest.mark.parametrize("link", ["hard link", "copy"])
def test_finding_11_backups_of_a_private_file_stay_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, link: str
) -> None:
    path = tmp_path / "app.json"
    cf = ConfigFile(path, App)
    cf.save(App(name="first"))
    path.chmod(0o600)
    if link == "copy":  # file systems without hard links, or not allowed to link

        def no_link(*args: Any, **kwargs: Any) -> None:
            raise PermissionError(1, "Operation not permitted")

        monkeypatch.setattr(os, "link", no_link)
    created = record_creation_modes(monkeypatch, tmp_path)
    result = cf.save(App(name="second"))
    monkeypatch.undo()
    assert result.backup is not None
    assert stat.S_IMODE(result.backup.stat().st_mode) == 0o600
    assert json.loads(result.backup.read_text())["name"] == "first"
    assert created  # the temp file at least
    for name, mode in created:
        assert mode & 0o077 == 0, (name, oct(mode))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# -- rollback -------------------------------------------------------------------------


def test_rollback_restores_and_can_be_undone(tmp_path: Path) -> None:
    config = ConfigFile(tmp_path / "app.json", App, backups=10)
    config.save(App(name="first"))
    config.save(App(name="second"))
    config.save(App(name="third"))
    with capture_events() as events:
        result = config.rollback()
    assert result.changed
    assert config.load().name == "second"
    assert events.of("config_file.rolled_back")[0].level == "warning"
    config.rollback()  # undo: the rolled-back version is the newest backup
    assert config.load().name == "third"
    config.rollback(steps=2)  # third -> (second, third, second, first): distinct
    assert config.load().name == "first"


def test_rollback_skips_invalid_backups(config: ConfigFile[App]) -> None:
    config.save(App(name="second"))
    config.save(App(name="third"))
    newest = config.backups()[0]
    newest.unlink()
    newest.write_text('{"name": 1}')  # a damaged backup
    config.rollback()
    assert config.load().name == "first"


def test_rollback_without_backups(tmp_path: Path) -> None:
    cf = ConfigFile(tmp_path / "x.json", App)
    cf.save(App(name="only"))
    with pytest.raises(ConfigError) as info:
        cf.rollback()
    assert info.value.code == "CONFIG_MISSING"
    with pytest.raises(ValueError, match="steps"):
        cf.rollback(0)


# -- update ----------------------------------------------------------------------------


def test_update_returning_or_mutating(config: ConfigFile[App]) -> None:
    result = config.update(lambda app: app.model_copy(update={"name": "renamed"}))
    assert result.changed
    assert config.load().name == "renamed"

    def mutate(app: App) -> None:
        app.servers.append(Server(host="b", port=2))

    config.update(mutate)
    assert [s.host for s in config.load().servers] == ["a", "b"]
    assert config.update(lambda app: app).changed is False


def test_update_errors_write_nothing(config: ConfigFile[App], tmp_path: Path) -> None:
    before = _state(config.path)

    def boom(app: App) -> App:
        raise LookupError("no")

    with pytest.raises(LookupError):
        config.update(boom)
    with pytest.raises(ConfigError):
        config.update(lambda app: app.model_copy(update={"debug": "not a bool"}))
    assert _state(config.path) == before
    with pytest.raises(ConfigError) as info:
        ConfigFile(tmp_path / "missing.json", App).update(lambda a: a)
    assert info.value.code == "CONFIG_MISSING"
    made = ConfigFile(tmp_path / "made.json", App, default=App(name="d"))
    made.update(lambda a: a.model_copy(update={"debug": True}))
    assert made.load() == App(name="d", debug=True)


def test_update_from_several_processes_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "counter.json"
    go = tmp_path / "go"
    path.write_text('{"n": 0, "by": {}}')
    procs = [
        subprocess.Popen(
            [sys.executable, WORKERS, "config_update", str(path), "50", str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    go.touch()
    pids = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-3000:]
        pids.append(json.loads(out)["pid"])
    data = json.loads(path.read_text())
    assert data["n"] == 200
    assert data["by"] == dict.fromkeys(pids, 50)
    assert (tmp_path / ".counter.json.lock").exists()  # the never-deleted sidecar
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []


# -- Hypothesis: outside input ------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
config_like = st.dictionaries(
    st.sampled_from(["name", "debug", "servers", "host", "port", "extra"]) | st.text(),
    json_values
    | st.lists(
        st.dictionaries(
            st.sampled_from(["host", "port", "x"]), json_values, max_size=3
        ),
        max_size=3,
    ),
    max_size=5,
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    raw=st.binary(max_size=400) | config_like.map(lambda d: json.dumps(d).encode()),
    max_bytes=st.one_of(st.just(16 * 1024 * 1024), st.integers(1, 400)),
    kind=st.sampled_from([None, "fifo", "dev_zero"]),
)
def test_any_file_content_gives_config_error_or_a_valid_value(
    tmp_path: Path, raw: bytes, max_bytes: int, kind: str | None
) -> None:
    path = tmp_path / "fuzz.json"
    path.unlink(missing_ok=True)
    with contextlib.ExitStack() as stack:
        if kind is None:
            path.write_bytes(raw)
        else:
            stack.enter_context(hostile(kind, path))
        cf = ConfigFile(path, App, max_bytes=max_bytes)
        try:
            value: App | None = finishes(cf.load)
        except ConfigError as exc:
            value, error = None, exc
        if value is None:
            assert error.path == str(path)
            assert error.errors
            assert all(field and message for field, message in error.errors)
            if kind is None and len(raw) > max_bytes:
                assert "read limit" in str(error)
        else:
            assert kind is None
            assert len(raw) <= max_bytes
            assert isinstance(value, App)
        if kind is None:
            assert path.read_bytes() == raw
    path.unlink(missing_ok=True)
    (tmp_path / "fuzz.json.real-fifo").unlink(missing_ok=True)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(value=config_like)
def test_any_value_to_save_gives_config_error_and_leaves_the_file(
    tmp_path: Path, value: dict[str, Any]
) -> None:
    path = tmp_path / "fuzz-save.json"
    path.write_text('{"name": "original"}')
    before = path.read_bytes()
    cf = ConfigFile(path, App, backups=0)
    error: ConfigError | None = None
    try:
        cf.save(value)
    except ConfigError as exc:
        error = exc
    if error is not None:
        assert error.errors
        assert {_top_key(field) for field, _ in error.errors} <= {*value, "name"}
        assert path.read_bytes() == before
    else:
        assert cf.load() == App.model_validate(value)
    os.unlink(path)


def _top_key(field: str) -> str:
    """The first key of a field path (``["a.b"][0].c`` -> ``a.b``)."""
    if field.startswith('["'):
        key, _ = json.JSONDecoder().raw_decode(field, 1)
        return str(key)
    return field.split(".", maxsplit=1)[0].split("[", maxsplit=1)[0]


# -- the CLI's `config validate` ------------------------------------------------------------


def test_config_validate_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mymodels.py").write_text(
        "from pydantic import BaseModel\n\n"
        "class Cfg(BaseModel):\n    name: str\n    port: int = 80\n"
    )
    monkeypatch.chdir(tmp_path)  # found like `python -m` would: from the cwd
    good = tmp_path / "good.json"
    good.write_text('{"port": 80, "name": "x"}')
    report = config_validate(good, "mymodels:Cfg", dry_run=True)
    assert report.ok
    assert report.model == "mymodels:Cfg"
    assert '+  "name": "x",' in report.diff  # canonical order differs from the file
    assert report.to_text().startswith(f"{good}: valid mymodels:Cfg")
    assert good.read_text() == '{"port": 80, "name": "x"}'  # never writes
    bad = tmp_path / "bad.json"
    bad.write_text('{"port": "eighty"}')
    report = config_validate(bad, "mymodels:Cfg")
    assert not report.ok
    assert [f for f, _ in report.errors] == ["name", "port"]
    assert "INVALID" in report.to_text()
    assert json.loads(json.dumps(report.to_dict()))["ok"] is False
    assert not config_validate(tmp_path / "none.json", App).ok


@pytest.mark.parametrize("spec", ["nomodule", "no_such_module_xyz:X", "json:dumps"])
def test_config_validate_bad_model_spec(tmp_path: Path, spec: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_validate(tmp_path / "x.json", spec)
    assert info.value.code == "USAGE_ERROR"


# -- Hypothesis: save / update / rollback against a reference model ------------------------


class ConfigMachine(RuleBasedStateMachine):
    """The file and its backups always match a list-based reference model."""

    def __init__(self) -> None:
        super().__init__()
        self._dir = tempfile.TemporaryDirectory()
        self.cf = ConfigFile(Path(self._dir.name) / "m.json", App, backups=3)
        self.current: bytes | None = None
        self.history: list[bytes] = []  # backups, newest first

    def _expect_write(self, new: bytes) -> None:
        if new == self.current:
            return
        if self.current is not None:
            self.history = [self.current, *self.history][:3]
        self.current = new

    @rule(name=st.sampled_from(["a", "b", "c", "d"]), debug=st.booleans())
    def save(self, name: str, debug: bool) -> None:
        value = App(name=name, debug=debug)
        expected_change = self.cf.render(value) != self.current
        result = self.cf.save(value)
        assert result.changed == expected_change
        self._expect_write(self.cf.render(value))

    @rule(name=st.sampled_from(["a", "e"]))
    def update(self, name: str) -> None:
        if self.current is None:
            with pytest.raises(ConfigError):
                self.cf.update(lambda app: app)
            return
        self.cf.update(lambda app: app.model_copy(update={"name": name}))
        new = App.model_validate_json(self.current).model_copy(update={"name": name})
        self._expect_write(self.cf.render(new))

    @rule(name=st.sampled_from(["a", "b"]))
    def dry_run(self, name: str) -> None:
        before = self.cf.path.read_bytes() if self.current is not None else None
        self.cf.save(App(name=name), dry_run=True)
        after = self.cf.path.read_bytes() if self.current is not None else None
        assert before == after

    @rule(steps=st.integers(min_value=1, max_value=4))
    def rollback(self, steps: int) -> None:
        distinct: list[bytes] = []
        for old in self.history:
            if old != self.current and old not in distinct:
                distinct.append(old)
        if len(distinct) < steps:
            with pytest.raises(ConfigError):
                self.cf.rollback(steps)
            return
        self.cf.rollback(steps)
        self._expect_write(distinct[steps - 1])

    @invariant()
    def file_matches_the_model(self) -> None:
        if self.current is None:
            assert not self.cf.path.exists()
        else:
            assert self.cf.path.read_bytes() == self.current
            assert stat.S_ISREG(self.cf.path.stat().st_mode)
        assert [p.read_bytes() for p in self.cf.backups()] == self.history

    def teardown(self) -> None:
        self._dir.cleanup()


ConfigMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=15, deadline=None
)
test_config_state_machine = ConfigMachine.TestCase


class StrictStamped(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    when: dt.datetime
    count: int


def test_strict_models_validate_as_json(tmp_path: Path) -> None:
    # JSON has no datetime type: a strict model must still load its own file.
    cf = ConfigFile(tmp_path / "strict.json", StrictStamped)
    value = StrictStamped(
        when=dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc), count=1
    )
    cf.save(value)
    assert cf.load() == value
    (tmp_path / "strict.json").write_text(
        '{"when": "2024-05-01T12:00:00Z", "count": "1"}'
    )
    with pytest.raises(ConfigError) as info:
        cf.load()
    assert [f for f, _ in info.value.errors] == ["count"]  # strict: no str -> int


@pytest.mark.parametrize("driver", ["sync", "async"])
async def test_save_and_update_from_sync_and_async_code(
    tmp_path: Path, driver: str
) -> None:
    cf = ConfigFile(tmp_path / "d.json", App)

    def rename(app: App) -> None:
        app.name = "renamed"

    if driver == "sync":
        first = cf.save(App(name="x"))
        second = cf.update(rename)
    else:
        first = await asyncio.to_thread(cf.save, App(name="x"))
        second = await asyncio.to_thread(cf.update, rename)
    assert first.changed
    assert second.changed
    assert cf.load() == App(name="renamed")
    assert len(cf.backups()) == 1


# -- issue 16: plain JSON, edit(), strict update, mode ---------------------------------


def test_finding_16_plain_json_needs_no_model_and_keeps_every_key(
    tmp_path: Path,
) -> None:
    path = tmp_path / "agent.json"
    original = {
        "mcpServers": {"fs": {"command": "npx", "args": ["-y", "fs"]}},
        "theme": "dark",
        "limits": {"tokens": 4096, "ratio": 0.5, "off": None, "on": True},
    }
    path.write_text(json.dumps(original))
    cfg = ConfigFile(path)
    assert repr(cfg) == f"ConfigFile({str(path)!r}, dict)"
    assert cfg.load() == original
    with cfg.edit() as data:
        data["mcpServers"]["git"] = {"command": "uvx", "args": ["git"]}
    saved = json.loads(path.read_text())
    assert saved == {
        **original,
        "mcpServers": {
            **original["mcpServers"],
            "git": {"command": "uvx", "args": ["git"]},
        },
    }
    assert list(saved) == list(original)  # key order kept
    assert len(cfg.backups()) == 1


def test_finding_16_plain_config_file_never_imports_pydantic(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    go = tmp_path / "go"
    go.touch()
    out = subprocess.run(
        [sys.executable, WORKERS, "config_edit_plain", str(path), "3", str(go)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(out.stdout)["pydantic"] is False
    assert json.loads(path.read_text())["n"] == 3


def test_finding_16_plain_edits_from_several_processes_lose_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "counter.json"
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, WORKERS, "config_edit_plain", str(path), "25", str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    go.touch()
    pids = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-3000:]
        pids.append(json.loads(out)["pid"])
    data = json.loads(path.read_text())
    assert data["n"] == 200
    assert data["by"] == dict.fromkeys(pids, 25)


@pytest.mark.parametrize(
    ("value", "where", "needle"),
    [
        ({1: "a"}, "<root>", "JSON keys are strings"),
        ({"a": {"b": float("nan")}}, "a.b", "not valid JSON"),
        ({"a": [1, {2, 3}]}, "a[1]", "set cannot be written"),
        ({"a.b": {"c": float("inf")}}, '["a.b"].c', "not valid JSON"),
    ],
)
def test_finding_16_plain_values_json_cannot_hold_are_refused(
    tmp_path: Path, value: dict[Any, Any], where: str, needle: str
) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"keep": 1}')
    before = _state(path)
    cfg = ConfigFile(path)
    with pytest.raises(ConfigError) as info:
        cfg.save(value)
    assert info.value.errors == ((where, info.value.errors[0][1]),)
    assert needle in info.value.errors[0][1]
    assert _state(path) == before


def test_finding_16_plain_file_must_hold_an_object(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError) as info:
        ConfigFile(path).load()
    assert "must be a JSON object, got list" in str(info.value)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is 3.11+")
def test_finding_16_plain_toml_is_read_by_suffix(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('name = "x"\n[server]\nport = 8080\nwhen = 2024-01-02\n')
    data = ConfigFile(path).load()
    assert data == {"name": "x", "server": {"port": 8080, "when": dt.date(2024, 1, 2)}}
    with pytest.raises(ConfigError, match="read-only"):
        ConfigFile(path).save({"name": "y"})


class Nested(BaseModel):
    port: int = 1


class Declared(BaseModel):
    name: str
    server: Nested = Nested()
    maybe: Nested | None = None
    tags: dict[str, int] = {}


def test_finding_16_keys_a_model_does_not_declare_survive_a_round_trip(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.json"
    path.write_text(
        json.dumps(
            {
                "name": "a",
                "theirs": {"x": [1, 2]},
                "server": {"port": 2, "tls": True},
                "maybe": {"port": 3, "note": "kept"},
                "tags": {"a": 1, "b": 2},
            }
        )
    )
    cfg = ConfigFile(path, Declared)
    with cfg.edit() as value:
        value.name = "b"
        del value.tags["b"]  # removing a key of a dict field stays removed
    assert json.loads(path.read_text()) == {
        "name": "b",
        "server": {"port": 2, "tls": True},
        "maybe": {"port": 3, "note": "kept"},
        "tags": {"a": 1},
        "theirs": {"x": [1, 2]},
    }
    # save() of a fresh instance keeps them too; a second save changes nothing.
    assert cfg.save(Declared(name="c", server=Nested(port=2))).changed
    assert json.loads(path.read_text())["theirs"] == {"x": [1, 2]}
    assert cfg.save(cfg.load()).changed is False


def test_finding_16_a_model_that_forbids_extras_still_refuses_them(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"name": "a", "theirs": 1}')
    with pytest.raises(ConfigError) as info:
        ConfigFile(path, App).load()
    assert [f for f, _ in info.value.errors] == ["theirs"]


def test_finding_16_edit_writes_on_normal_exit_only(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    cfg = ConfigFile(path, default={})
    with cfg.edit() as data:
        data["a"] = 1
    before = _state(path)

    def failing_block() -> None:
        with cfg.edit() as data:
            data["a"] = 2
            raise KeyError("boom")

    with pytest.raises(KeyError):
        failing_block()
    assert _state(path) == before
    with cfg.edit() as data:
        data["a"] = 1  # the same content: nothing written
    assert _state(path) == before
    with capture_events() as events, cfg.edit() as data:
        data["b"] = [1]
    assert json.loads(path.read_text()) == {"a": 1, "b": [1]}
    assert [(e.name, e.level) for e in events if ".config_file." in e.name] == [
        ("paios_reliability.config_file.updated", "debug")
    ]


def test_finding_16_invalid_edit_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"name": "a"}')
    before = _state(path)
    with pytest.raises(ConfigError), ConfigFile(path, App).edit() as app:
        app.debug = "not a bool"  # type: ignore[assignment]
    assert _state(path) == before


async def test_finding_16_aedit_from_many_tasks_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    cfg = ConfigFile(path, default={"n": 0})
    loop_ticks = 0

    async def bump() -> None:
        async with cfg.aedit() as data:
            data["n"] += 1

    async def ticker() -> None:
        nonlocal loop_ticks
        while True:
            loop_ticks += 1
            await asyncio.sleep(0)

    tick = asyncio.create_task(ticker())
    await asyncio.gather(*(bump() for _ in range(8)))
    tick.cancel()
    assert json.loads(path.read_text()) == {"n": 8}
    assert loop_ticks > 0  # the loop kept running while edits waited
    before = _state(path)

    async def failing_block() -> None:
        async with cfg.aedit() as data:
            data["n"] = 99
            raise ValueError("inside")

    with pytest.raises(ValueError, match="inside"):
        await failing_block()
    assert _state(path) == before
    with cfg.edit() as data:  # the lock was let go
        data["n"] += 1
    assert json.loads(path.read_text()) == {"n": 9}


async def test_finding_16_aedit_cancelled_while_waiting_lets_the_lock_go(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"n": 0}')
    cfg = ConfigFile(path, lock_timeout=30)
    entered = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with cfg.aedit() as data:
            entered.set()
            await release.wait()
            data["n"] = 1

    async def waiter() -> None:
        async with cfg.aedit() as data:
            data["n"] = 2

    first = asyncio.create_task(holder())
    await entered.wait()
    second = asyncio.create_task(waiter())
    await asyncio.sleep(0.05)
    second.cancel()
    release.set()
    await first
    with pytest.raises(asyncio.CancelledError):
        await second
    assert json.loads(path.read_text()) == {"n": 1}
    with cfg.edit() as data:
        data["n"] = 3
    assert json.loads(path.read_text()) == {"n": 3}


def test_finding_16_update_returning_a_part_is_a_type_error(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"other": 1}')
    before = _state(path)
    cfg = ConfigFile(path)
    with pytest.raises(TypeError, match="returned a part of the config"):
        cfg.update(lambda c: c.setdefault("mcpServers", {}))
    with pytest.raises(TypeError, match="returned a str"):
        cfg.update(lambda c: "oops")  # type: ignore[arg-type,return-value]
    assert _state(path) == before
    assert cfg.update(lambda c: {**c, "n": 1}).changed
    assert json.loads(path.read_text()) == {"other": 1, "n": 1}


def test_finding_16_update_with_a_model_accepts_only_the_model(
    config: ConfigFile[App],
) -> None:
    before = _state(config.path)
    with pytest.raises(TypeError, match="returned a dict"):
        config.update(lambda app: {"name": "x"})  # type: ignore[arg-type,return-value]
    assert _state(config.path) == before


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_finding_16_mode_applies_to_the_file_and_its_backups(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    path.write_text('{"token": "a"}')
    path.chmod(0o644)
    cfg = ConfigFile(path, mode=0o600, backups=3)
    for token in ("b", "c"):
        with cfg.edit() as data:
            data["token"] = token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(cfg.backups()) == 2
    assert {stat.S_IMODE(b.stat().st_mode) for b in cfg.backups()} == {0o600}
    fresh = ConfigFile(tmp_path / "new.json", mode=0o600, default={})
    with fresh.edit() as data:
        data["token"] = "x"
    assert stat.S_IMODE(fresh.path.stat().st_mode) == 0o600


def test_finding_16_backups_zero_keeps_none(tmp_path: Path) -> None:
    cfg = ConfigFile(tmp_path / "c.json", backups=0, default={})
    for n in range(3):
        with cfg.edit() as data:
            data["n"] = n
    assert cfg.backups() == []
    assert not cfg.backup_dir.exists()


finite_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=100, deadline=None)
@given(value=st.dictionaries(st.text(max_size=8), finite_json, max_size=5))
def test_finding_16_any_json_object_round_trips_exactly(
    value: dict[str, Any],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = ConfigFile(Path(tmp) / "c.json", backups=1)
        cfg.save(value)
        assert cfg.load() == value
        assert cfg.save(value).changed is False
