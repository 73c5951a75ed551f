"""CredentialStore: durable sets, throttled usage, expiry, single-flight refresh."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import stat
import string
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

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
from paios_reliability import (
    ConfigError,
    Credential,
    CredentialError,
    CredentialExpiredError,
    CredentialMissingError,
    CredentialStore,
    audit_event,
)
from paios_reliability._data.credential_status import credential_status
from paios_reliability._data.file_lock import file_lock
from paios_reliability.testing import CapturedEvents, FakeClock, capture_events
from strategies import SENTINEL_PREFIX, secret_keys

WORKERS = str(Path(__file__).with_name("_proc_data_workers.py"))
UTC = dt.timezone.utc
SECRET = "sk-live-VERY-SECRET-0123456789"
REFRESH = "rt-ALSO-SECRET-9876543210"


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    fake = FakeClock(wall=1_700_000_000.0)  # 2023-11-14T22:13:20Z
    with fake.install():
        yield fake


def _now(clock: FakeClock) -> dt.datetime:
    return dt.datetime.fromtimestamp(clock.time(), UTC)


def _cred(**update: object) -> Credential:
    base: dict[str, object] = {
        "provider": "github",
        "token": SECRET,
        "refresh_token": REFRESH,
        "metadata": {"account": "me"},
    }
    base.update(update)
    return Credential.model_validate(base)


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> CredentialStore:
    return CredentialStore(tmp_path / "auth.json", create=True)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _no_secret_in(events: CapturedEvents, *texts: str) -> None:
    blob = " ".join([repr(e.to_dict()) for e in events] + list(texts))
    assert SECRET not in blob
    assert REFRESH not in blob


# -- the model -----------------------------------------------------------------------


def test_credential_hides_its_secrets() -> None:
    cred = _cred(expires_at=dt.datetime(2030, 1, 1))
    for text in (
        repr(cred),
        str(cred),
        cred.model_dump_json(),
        repr(cred.model_dump()),
    ):
        assert SECRET not in text
        assert REFRESH not in text
    assert cred.token.get_secret_value() == SECRET
    assert cred.expires_at == dt.datetime(2030, 1, 1, tzinfo=UTC)  # naive -> UTC
    assert not cred.expired(dt.datetime(2029, 1, 1, tzinfo=UTC))
    assert cred.expired(dt.datetime(2030, 1, 1, tzinfo=UTC))
    assert not _cred().expired()


# No quotes or backslashes: repr() would escape them, hiding a leak from `in`.
secret_values = st.text(
    alphabet=string.ascii_letters + string.digits + "-_.:/+=@!#$%^&*()~",
    min_size=1,
    max_size=24,
).map(lambda text: f"{SENTINEL_PREFIX}{text}")


@st.composite
def metadata_with_secrets(draw: st.DrawFn, sentinel: str) -> dict[str, object]:
    """JSON metadata where ``sentinel`` sits only under secret-looking keys."""
    plain = st.one_of(
        st.none(), st.booleans(), st.integers(), st.text(alphabet="abc xyz", max_size=8)
    )
    plain_keys = st.sampled_from(["account", "scopes", "region", "team", "note"])
    secret_here = st.dictionaries(secret_keys(), st.just(sentinel), min_size=1)
    tree = st.recursive(
        plain | secret_here,
        lambda children: (
            st.dictionaries(plain_keys, children, max_size=3)
            | st.lists(children, max_size=3)
        ),
        max_leaves=8,
    )
    out: dict[str, object] = draw(st.dictionaries(plain_keys, tree, max_size=3))
    out[draw(secret_keys())] = sentinel  # at least one, at the top
    return out


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_secret_metadata_never_shows_in_repr_events_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, data: st.DataObject
) -> None:
    sentinel = data.draw(secret_values, label="secret")
    metadata = data.draw(metadata_with_secrets(sentinel), label="metadata")
    cred = _cred(metadata=metadata)
    shown = [repr(cred), str(cred), cred.model_dump_json(), f"{cred!r:>10}"]
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="paios_reliability")
    path = tmp_path / "auth.json"
    path.unlink(missing_ok=True)
    with capture_events() as events:
        store = CredentialStore(path, create=True)
        store.set("gh", cred)
        store.update("gh", lambda c: None if c is None else c.model_copy(update={}))
        got = store.get("gh")
        store.record_usage("gh")
        store.flush()
        shown += [repr(got), str(got), repr(store), repr(store.expiring())]
    report = credential_status(path)
    shown += [report.to_text(), json.dumps(report.to_dict())]
    shown += [repr(e.to_dict()) for e in events]
    shown.append(caplog.text)
    for text in shown:
        assert sentinel not in text
    # Hidden, not lost: the stored metadata keeps the real values.
    assert got.metadata == metadata
    assert cred.model_dump()["metadata"] == metadata


def test_secret_metadata_is_masked_at_any_depth() -> None:
    cred = _cred(
        metadata={
            "account": "me",
            "client_secret": "cs-SECRET",
            "oauth": {"apiKey": "ak-SECRET", "scopes": ["repo"]},
            "hooks": [
                {"x-auth-token": "ht-SECRET", "url": "https://h/?token=q-SECRET"}
            ],
        }
    )
    text = repr(cred)
    assert "SECRET" not in text
    assert "'account': 'me'" in text
    assert "'scopes': ['repo']" in text
    assert "'client_secret': '**********'" in text
    assert json.loads(cred.model_dump_json())["metadata"]["oauth"] == {
        "apiKey": "**********",
        "scopes": ["repo"],
    }


# -- opening ----------------------------------------------------------------------------


def test_missing_store_fails_fast(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        CredentialStore(tmp_path / "none.json")
    assert info.value.code == "CONFIG_MISSING"
    assert "create=True" in str(info.value)
    assert not (tmp_path / "none.json").exists()


def test_create_makes_an_empty_0600_store(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    with capture_events() as events:
        store = CredentialStore(path, create=True)
    assert _mode(path) == 0o600
    assert json.loads(path.read_text()) == {"version": 1, "profiles": {}}
    assert store.names() == []
    assert len(events.of("credentials.created")) == 1
    CredentialStore(path, create=True)  # existing: left alone
    assert json.loads(path.read_text()) == {"version": 1, "profiles": {}}


def test_create_through_a_dangling_symlink_makes_its_target(tmp_path: Path) -> None:
    link = tmp_path / "auth.json"
    link.symlink_to(tmp_path / "real.json")
    assert CredentialStore(link, create=True).names() == []
    assert link.is_symlink()
    assert _mode(tmp_path / "real.json") == 0o600


def test_invalid_store_error_carries_no_secret(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "profiles": {
                    "a": {"provider": "x", "token": {"nested": SECRET}},
                    "b": {"provider": "y", "token": "t", "expires_at": SECRET},
                    "c": {"provider": "z", "token": REFRESH, "surprise": REFRESH},
                },
            }
        )
    )
    path.chmod(0o600)
    with pytest.raises(ConfigError) as info:
        CredentialStore(path)
    err = info.value
    assert err.path == str(path)
    assert [f for f, _ in err.errors] == [
        "profiles.a.token",
        "profiles.b.expires_at",
        "profiles.c.surprise",
    ]
    assert err.__cause__ is None
    assert err.__context__ is None
    record = json.dumps(audit_event(err))
    for text in (str(err), repr(err), repr(err.errors), record):
        assert SECRET not in text
        assert REFRESH not in text


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (b"not json", "<file>"),
        (b"[]", "<root>"),
        (b'{"version": 2, "profiles": {}}', "version"),
        (b'{"version": 1, "profiles": []}', "profiles"),
        (b"\xff\xfe", "<file>"),
    ],
)
def test_bad_store_files(tmp_path: Path, content: bytes, field: str) -> None:
    path = tmp_path / "auth.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        CredentialStore(path)
    assert info.value.errors[0][0] == field
    assert path.read_bytes() == content


def test_loose_permissions_are_corrected_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    CredentialStore(path, create=True).set("a", _cred())
    path.chmod(0o644)
    with capture_events() as events:
        store = CredentialStore(path)
    assert _mode(path) == 0o600
    [event] = events.of("credentials.permissions_fixed")
    assert event.level == "warning"
    assert event.fields["was"] == "0o644"
    assert store.get("a").provider == "github"


# -- hostile files and operating-system failures ------------------------------------------


@pytest.mark.parametrize("kind", sorted(HOSTILE_KINDS))
def test_a_special_file_is_refused_at_once_with_a_credential_error(
    tmp_path: Path, kind: str
) -> None:
    with hostile(kind, tmp_path / "auth.json") as path:
        before = os.lstat(path)
        for create in (False, True):
            with pytest.raises(CredentialError) as info:
                finishes(lambda c=create: CredentialStore(path, create=c))  # type: ignore[misc]
            error = info.value
            assert str(path) in str(error)
            assert HOSTILE_KINDS[kind] in str(error)
            assert error.context["path"] == str(path)
            expected = "IS_A_DIRECTORY" if kind == "directory" else "CREDENTIAL_ERROR"
            assert error.code == expected
        report = finishes(lambda: credential_status(path))
        assert not report.ok
        assert HOSTILE_KINDS[kind] in report.problems[0]
        after = os.lstat(path)
        assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)


def test_a_store_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    with path.open("wb") as fh:
        fh.truncate(16 * 1024 * 1024 + 1)  # sparse
    with pytest.raises(CredentialError, match="16777217 bytes"):
        CredentialStore(path)
    assert "16777217 bytes" in credential_status(path).problems[0]
    small = tmp_path / "small.json"
    CredentialStore(small, create=True).set("a", _cred())
    with pytest.raises(CredentialError, match="limit"):
        CredentialStore(small, max_bytes=50)
    assert CredentialStore(small, max_bytes=10_000).names() == ["a"]


def test_a_missing_directory_is_a_credential_error(tmp_path: Path) -> None:
    with pytest.raises(CredentialError) as info:
        CredentialStore(tmp_path / "nope" / "auth.json", create=True)
    assert info.value.code == "FILE_NOT_FOUND"
    assert f"directory {tmp_path / 'nope'} does not exist" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_directory_is_a_permission_credential_error() -> None:
    with readonly_dir() as directory:
        path = directory / "auth.json"
        CredentialStore(path, create=True).set("p", _cred())
        give_away(path, directory / ".auth.json.lock")
        seal(directory)
        before = state(path)
        answer = run_unprivileged("cred_set", str(path))
        assert answer["ok"] is False
        assert "CredentialError" in answer["types"]
        assert answer["code"] == "PERMISSION_DENIED"
        assert str(path) in answer["message"]
        assert "Permission denied (EACCES)" in answer["message"]
        assert "new-secret-token" not in answer["message"]
        assert state(path) == before
        assert sorted(p.name for p in directory.iterdir()) == [
            ".auth.json.lock",
            "auth.json",
        ]


def test_a_write_past_the_file_size_limit_is_a_credential_error(
    tmp_path: Path,
) -> None:
    """RLIMIT_FSIZE makes the write fail with EFBIG, as near to a full disk as we get."""
    path = tmp_path / "auth.json"
    store = CredentialStore(path, create=True)
    store.set("big", _cred(metadata={"notes": "n" * 10_000}))
    before = state(path)
    proc = subprocess.run(
        [sys.executable, WORKERS, "fsize_limited", "4096", "cred_set", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    answer = json.loads(proc.stdout)
    assert answer["ok"] is False
    assert "CredentialError" in answer["types"]
    assert answer["code"] == "DISK_FULL"
    assert "File too large (EFBIG)" in answer["message"]
    assert "new-secret-token" not in answer["message"]
    assert state(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".auth.json.lock",
        "auth.json",
    ]


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_finding_11_every_store_file_is_0600_from_its_creation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, umask: int
) -> None:
    created = record_creation_modes(monkeypatch, tmp_path)
    old_umask = os.umask(umask)
    try:
        store = CredentialStore(tmp_path / "auth.json", create=True)
        store.set("gh", _cred())
        store.update("gh", lambda cred: _cred(token="rotated"))
        store.record_usage("gh")
    finally:
        os.umask(old_umask)
    monkeypatch.undo()
    temps = [mode for name, mode in created if name.endswith(".tmp")]
    assert len(temps) == 4  # create, set, update, usage
    assert all(mode == 0o600 for mode in temps), [oct(m) for m in temps]
    assert _mode(store.path) == 0o600


# -- get / set ---------------------------------------------------------------------------


def test_set_then_get(store: CredentialStore, clock: FakeClock) -> None:
    with capture_events() as events:
        store.set("gh", _cred(expires_at=_now(clock) + dt.timedelta(days=30)))
    got = store.get("gh")
    assert got.token.get_secret_value() == SECRET
    assert got.refresh_token is not None
    assert got.refresh_token.get_secret_value() == REFRESH
    assert got.metadata == {"account": "me"}
    assert _mode(store.path) == 0o600
    on_disk = json.loads(store.path.read_text())
    assert on_disk["profiles"]["gh"]["token"] == SECRET  # the file is the secret store
    assert store.names() == ["gh"]
    # Another store object (another process, in effect) sees it at once.
    assert CredentialStore(store.path).get("gh") == got
    assert [e.subject for e in events.of("credentials.set")] == ["gh"]
    _no_secret_in(events, repr(store))


def test_get_missing_and_expired(store: CredentialStore, clock: FakeClock) -> None:
    with pytest.raises(CredentialMissingError) as missing:
        store.get("nope")
    assert missing.value.code == "CREDENTIAL_MISSING"
    store.set("old", _cred(expires_at=_now(clock) - dt.timedelta(seconds=1)))
    with pytest.raises(CredentialExpiredError) as expired:
        store.get("old")
    assert expired.value.code == "CREDENTIAL_EXPIRED"
    assert SECRET not in str(expired.value)
    assert store.get("old", allow_expired=True).provider == "github"
    with pytest.raises(TypeError):
        store.set("x", {"provider": "p", "token": "t"})  # type: ignore[arg-type]


def test_delete(store: CredentialStore) -> None:
    store.set("a", _cred())
    store.set("b", _cred())
    assert store.delete("a") is True
    assert store.delete("a") is False
    assert store.names() == ["b"]


# -- usage ----------------------------------------------------------------------------------


def test_update_changes_one_profile_in_place(
    store: CredentialStore, clock: FakeClock
) -> None:
    store.set("gh", _cred())
    store.set("other", _cred(provider="slack"))
    with capture_events() as events:
        new = store.update(
            "gh",
            lambda cred: (
                None
                if cred is None
                else cred.model_copy(
                    update={"metadata": {**cred.metadata, "team": "a"}}
                )
            ),
        )
    assert new is not None
    assert new.metadata == {"account": "me", "team": "a"}
    assert new.token.get_secret_value() == SECRET
    fresh = CredentialStore(store.path)
    assert fresh.get("gh") == new
    assert fresh.get("other").provider == "slack"
    [event] = events.of("credentials.updated")
    assert event.subject == "gh"
    assert event.fields["created"] is False
    _no_secret_in(events)
    assert _mode(store.path) == 0o600


def test_update_creates_a_missing_profile(store: CredentialStore) -> None:
    seen: list[Credential | None] = []

    def make(cred: Credential | None) -> Credential:
        seen.append(cred)
        return _cred(provider="new")

    with capture_events() as events:
        assert store.update("fresh", make) == store.get("fresh")
    assert seen == [None]
    assert events.of("credentials.updated")[0].fields["created"] is True


def test_update_that_returns_none_or_the_same_writes_nothing(
    store: CredentialStore,
) -> None:
    store.set("gh", _cred())
    before = (state(store.path), store.path.stat().st_ino)
    with capture_events() as events:
        assert store.update("gh", lambda cred: None) == store.get("gh")
        assert store.update("gh", lambda cred: cred) == store.get("gh")
        assert store.update("nobody", lambda cred: None) is None
    assert (state(store.path), store.path.stat().st_ino) == before
    assert events.of("credentials.updated") == []
    assert store.names() == ["gh"]  # None never deletes


def test_update_errors_write_nothing(store: CredentialStore) -> None:
    store.set("gh", _cred())
    before = (state(store.path), store.path.stat().st_ino)
    error = LookupError("the token endpoint said no")

    def boom(cred: Credential | None) -> Credential:
        raise error

    with pytest.raises(LookupError) as info:
        store.update("gh", boom)
    assert info.value is error
    with pytest.raises(TypeError, match="Credential or None"):
        store.update("gh", lambda cred: {"token": "x"})  # type: ignore[arg-type,return-value]
    with pytest.raises(ConfigError) as invalid:
        store.update(
            "gh",
            lambda cred: (
                None if cred is None else cred.model_copy(update={"token": 42})
            ),
        )
    assert invalid.value.code == "VALIDATION_ERROR"
    assert "token" in str(invalid.value)
    assert invalid.value.__cause__ is None
    assert invalid.value.__context__ is None
    assert (state(store.path), store.path.stat().st_ino) == before
    with file_lock(store.path, timeout=1):
        pass  # the lock was released on every error


def test_update_sees_and_keeps_pending_usage(tmp_path: Path, clock: FakeClock) -> None:
    store = CredentialStore(tmp_path / "auth.json", create=True, usage_interval=300)
    store.set("gh", _cred())
    store.record_usage("gh")  # written at once
    clock.advance(10)
    store.record_usage("gh")  # pending, in memory
    used = _now(clock)
    seen: list[dt.datetime | None] = []

    def rotate(cred: Credential | None) -> Credential:
        assert cred is not None
        seen.append(cred.last_used)
        # A refresher that builds a new credential, without last_used.
        return _cred(token="rotated")

    new = store.update("gh", rotate)
    assert seen == [used]
    assert new is not None
    assert new.last_used == used  # never backwards
    assert CredentialStore(store.path).get("gh").last_used == used
    assert store.flush() is False  # the pending usage went out with the update


def test_finding_10_update_keeps_a_rotation_another_process_made(
    tmp_path: Path,
) -> None:
    """The finding's scenario: read, another process rotates, then change metadata."""
    path = tmp_path / "auth.json"
    store = CredentialStore(path, create=True)
    store.set("github", _cred(token="access-1", refresh_token="R1"))
    stale = store.get("github")
    assert stale.refresh_token is not None
    proc = subprocess.run(
        [sys.executable, WORKERS, "cred_rotate", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(proc.stdout) == {"rotated": True}
    store.update(
        "github",
        lambda cred: (
            None
            if cred is None
            else cred.model_copy(
                update={"metadata": {**cred.metadata, "team": "infra"}}
            )
        ),
    )
    got = CredentialStore(path).get("github")
    assert got.refresh_token is not None
    assert got.refresh_token.get_secret_value() == "R2"  # the rotation survived
    assert got.token.get_secret_value() == "access-2"
    assert got.metadata == {"account": "me", "team": "infra"}


@pytest.mark.stress
def test_finding_10_two_processes_updating_one_profile_lose_nothing(
    tmp_path: Path,
) -> None:
    """One process rotates the tokens, the other edits metadata, 40 times each."""
    path = tmp_path / "auth.json"
    go = tmp_path / "go"
    CredentialStore(path, create=True).set(
        "github", _cred(token="access-0", refresh_token="refresh-0")
    )
    procs = [
        subprocess.Popen(
            [sys.executable, WORKERS, "cred_update", str(path), key, "40", str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for key in ("rotations", "edits")
    ]
    go.touch()
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        assert json.loads(out)["done"] == 40
    got = CredentialStore(path).get("github")
    assert got.metadata == {"account": "me", "rotations": 40, "edits": 40}
    assert got.token.get_secret_value() == "access-40"
    assert got.refresh_token is not None
    assert got.refresh_token.get_secret_value() == "refresh-40"
    assert _mode(path) == 0o600


def test_record_usage_writes_once_per_interval(
    store: CredentialStore, clock: FakeClock
) -> None:
    store.set("gh", _cred())
    with capture_events() as events:
        for _ in range(10_000):
            store.record_usage("gh")
            clock.advance(0.029)  # 10,000 uses over 290 s of (fake) time
    writes = [
        e for e in events.of("credentials.written") if e.fields["reason"] == "usage"
    ]
    assert len(writes) == 1
    inode = store.path.stat().st_ino
    first_write = json.loads(store.path.read_text())["profiles"]["gh"]["last_used"]
    assert first_write == "2023-11-14T22:13:20+00:00"
    # The newest usage is visible in this process before it is written...
    assert store.get("gh").last_used == _now(clock) - dt.timedelta(seconds=0.029)
    assert store.path.stat().st_ino == inode
    clock.advance(11)  # ...and goes out with the first use after the interval
    store.record_usage("gh")
    assert store.path.stat().st_ino != inode
    on_disk = CredentialStore(store.path).get("gh").last_used
    assert on_disk == _now(clock)


def test_flush_and_close_write_pending_usage(
    store: CredentialStore, clock: FakeClock
) -> None:
    store.set("gh", _cred())
    store.record_usage("gh")  # written at once
    clock.advance(5)
    store.record_usage("gh")  # pending
    other = CredentialStore(store.path)
    assert other.get("gh").last_used == _now(clock) - dt.timedelta(seconds=5)
    assert store.flush() is True
    assert store.flush() is False
    assert other.get("gh").last_used == _now(clock)
    clock.advance(5)
    store.record_usage("gh")
    store.close()
    assert other.get("gh").last_used == _now(clock)


def test_usage_never_goes_backwards(store: CredentialStore, clock: FakeClock) -> None:
    store.set("gh", _cred())
    later = _now(clock) + dt.timedelta(hours=1)
    other = CredentialStore(store.path)
    other.record_usage("gh", when=later)
    store.record_usage("gh", when=_now(clock))  # older: must not win
    store.flush()
    assert other.get("gh").last_used == later
    store.set("gh", _cred(token="rotated"))  # a new credential keeps the max too
    assert store.get("gh").last_used == later


def test_record_usage_of_unknown_profile(store: CredentialStore) -> None:
    with pytest.raises(CredentialMissingError):
        store.record_usage("ghost")


def test_pending_usage_is_flushed_at_interpreter_exit(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    CredentialStore(path, create=True).set("gh", _cred())
    script = textwrap.dedent(
        f"""
        import datetime as dt
        from paios_reliability import CredentialStore
        store = CredentialStore({str(path)!r})
        store.record_usage("gh", when=dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc))
        store.record_usage("gh", when=dt.datetime(2031, 1, 1, tzinfo=dt.timezone.utc))
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    last = CredentialStore(path).get("gh").last_used
    assert last == dt.datetime(2031, 1, 1, tzinfo=UTC)


# -- expiry -----------------------------------------------------------------------------------


def test_expiring_lists_profiles_in_the_window(
    store: CredentialStore, clock: FakeClock
) -> None:
    now = _now(clock)
    store.set("later", _cred(expires_at=now + dt.timedelta(days=30)))
    store.set("soon", _cred(expires_at=now + dt.timedelta(days=3)))
    store.set("gone", _cred(expires_at=now - dt.timedelta(days=1)))
    store.set("never", _cred())
    with capture_events() as events:
        assert [n for n, _ in store.expiring()] == ["gone", "soon"]
        assert [n for n, _ in store.expiring(within=dt.timedelta(days=60))] == [
            "gone",
            "soon",
            "later",
        ]
        store.get("soon")
    warned = events.of("credentials.expiring")
    # warnings only inside expiry_warning (7 days), once per profile and date
    assert sorted(e.subject or "" for e in warned) == ["gone", "soon"]
    assert all(e.level == "warning" for e in warned)
    _no_secret_in(events)


# -- refresh ---------------------------------------------------------------------------------


def test_refresh_due(store: CredentialStore, clock: FakeClock) -> None:
    now = _now(clock)
    store.set("due", _cred(expires_at=now + dt.timedelta(minutes=1)))
    store.set("fine", _cred(expires_at=now + dt.timedelta(days=1)))
    store.set("other", _cred(provider="gitlab", expires_at=now))
    calls: list[str] = []

    @store.refresher("github")
    def refresh(cred: Credential) -> Credential:
        calls.append(cred.token.get_secret_value())
        return cred.model_copy(
            update={
                "token": "new-token",
                "refresh_token": "new-refresh",
                "expires_at": now + dt.timedelta(hours=1),
            }
        )

    with capture_events() as events:
        assert store.refresh_due() == ["due"]
        assert store.refresh_due() == []
    assert calls == [SECRET]
    fresh = CredentialStore(store.path).get("due")
    assert fresh.token.get_secret_value() == "new-token"
    assert fresh.expires_at == now + dt.timedelta(hours=1)
    assert [e.subject for e in events.of("credentials.refreshed")] == ["due"]
    _no_secret_in(events)


def test_refresh_failures_are_reported_after_trying_all(
    store: CredentialStore, clock: FakeClock
) -> None:
    now = _now(clock)
    store.set("a-bad", _cred(provider="broken", expires_at=now))
    store.set("b-good", _cred(provider="ok", expires_at=now))
    store.set("c-wrong", _cred(provider="wrong", expires_at=now))

    @store.refresher("broken")
    def broken(cred: Credential) -> Credential:
        raise ConnectionResetError("token endpoint down")

    @store.refresher("ok")
    def ok(cred: Credential) -> Credential:
        return cred.model_copy(update={"expires_at": now + dt.timedelta(days=1)})

    @store.refresher("wrong")
    def wrong(cred: Credential) -> Credential:
        return "not a credential"  # type: ignore[return-value]

    with capture_events() as events, pytest.raises(CredentialError) as info:
        store.refresh_due()
    assert info.value.context["failed"] == ["a-bad", "c-wrong"]
    assert info.value.context["refreshed"] == ["b-good"]
    assert isinstance(info.value.__cause__, ConnectionResetError)
    assert store.get("b-good").expires_at == now + dt.timedelta(days=1)
    assert len(events.of("credentials.refresh_failed")) == 2


def test_secrets_never_reach_logs(
    store: CredentialStore, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="paios_reliability")
    store.set("gh", _cred(expires_at=_now(clock)))
    store.record_usage("gh")
    store.expiring()

    @store.refresher("github")
    def refresh(cred: Credential) -> Credential:
        return cred.model_copy(update={"expires_at": None})

    store.refresh_due()
    assert caplog.records  # something was logged...
    assert SECRET not in caplog.text  # ...and no secret
    assert REFRESH not in caplog.text


# -- status (CLI) -----------------------------------------------------------------------------


def test_credential_status(store: CredentialStore, clock: FakeClock) -> None:
    now = _now(clock)
    store.set("ok", _cred(expires_at=now + dt.timedelta(days=60)))
    store.set("soon", _cred(expires_at=now + dt.timedelta(days=2)))
    report = credential_status(store.path)
    assert report.ok
    assert [p["state"] for p in report.profiles] == ["ok", "expiring"]
    assert any("soon" in w for w in report.warnings)
    store.set("dead", _cred(provider="slack", expires_at=now - dt.timedelta(days=1)))
    store.path.chmod(0o644)
    report = credential_status(store.path)
    assert not report.ok
    assert any("dead expired" in p for p in report.problems)
    assert any("looser than 0o600" in w for w in report.warnings)
    assert _mode(store.path) == 0o644  # status never changes the file
    text = report.to_text()
    assert "dead: slack, expired" in text
    for out in (text, json.dumps(report.to_dict())):
        assert SECRET not in out
        assert REFRESH not in out


def test_credential_status_of_bad_files(tmp_path: Path) -> None:
    missing = credential_status(tmp_path / "none.json")
    assert not missing.ok
    assert "cannot read" in missing.problems[0]
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert "invalid JSON" in credential_status(bad).problems[0]


# -- real processes ----------------------------------------------------------------------------


def test_eight_processes_lose_no_profile(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    go = tmp_path / "go"
    CredentialStore(path, create=True).set("shared", _cred())
    procs = [
        subprocess.Popen(
            [sys.executable, WORKERS, "cred_writer", str(path), str(i), "8", str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    time.sleep(0.2)
    go.touch()
    observed = 0
    while any(p.poll() is None for p in procs):
        raw = path.read_bytes()  # the file is valid at every instant
        doc = json.loads(raw)
        assert doc["version"] == 1
        assert _mode(path) == 0o600
        observed += 1
        time.sleep(0.005)
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-3000:]
    final = CredentialStore(path)
    expected = {"shared"} | {f"p{i}-{j}" for i in range(8) for j in range(8)}
    assert set(final.names()) == expected
    assert final.get("p3-7").token.get_secret_value() == "secret-token-3-7"
    assert all(final.get(n).last_used is not None for n in expected)
    assert _mode(path) == 0o600
    assert observed > 0


def test_racing_refreshers_use_a_rotating_token_once(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    log = tmp_path / "refresh.log"
    server = tmp_path / "server-token"
    go = tmp_path / "go"
    server.write_text("rt-0")
    CredentialStore(path, create=True).set(
        "svc",
        Credential(
            provider="oauth",
            token="access-0",
            refresh_token="rt-0",
            expires_at=dt.datetime.now(UTC) - dt.timedelta(seconds=1),
        ),
    )
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                WORKERS,
                "cred_refresh",
                str(path),
                str(log),
                str(server),
                str(go),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    time.sleep(0.2)
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out)["refreshed"])
    assert sorted(results) == [[], ["svc"]]
    assert len(log.read_text().splitlines()) == 1
    assert log.read_text().split()[1] == "ok"
    stored = CredentialStore(path).get("svc")
    assert stored.refresh_token is not None
    assert stored.refresh_token.get_secret_value() == server.read_text() == "rt-0+"


# -- Hypothesis: outside input ------------------------------------------------------------------

json_leaf = st.none() | st.booleans() | st.integers() | st.text(max_size=10)
profile_like = st.dictionaries(
    st.sampled_from(
        ["provider", "token", "refresh_token", "expires_at", "last_used", "metadata"]
    )
    | st.text(max_size=5),
    json_leaf | st.dictionaries(st.text(max_size=5), json_leaf, max_size=2),
    max_size=6,
)
store_like = st.fixed_dictionaries(
    {},
    optional={
        "version": st.sampled_from([1, 2, "1", None]),
        "profiles": st.dictionaries(st.text(max_size=6), profile_like, max_size=3)
        | json_leaf,
    },
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    raw=st.binary(max_size=300) | store_like.map(lambda d: json.dumps(d).encode()),
    max_bytes=st.one_of(st.just(16 * 1024 * 1024), st.integers(1, 300)),
)
def test_any_store_file_gives_a_typed_error_or_a_store(
    tmp_path: Path, raw: bytes, max_bytes: int
) -> None:
    path = tmp_path / "fuzz.json"
    path.write_bytes(raw)
    path.chmod(0o600)
    error: ConfigError | CredentialError | None = None
    try:
        store = CredentialStore(path, max_bytes=max_bytes)
    except (ConfigError, CredentialError) as exc:
        error = exc
    if isinstance(error, ConfigError):
        assert error.errors
        assert error.__context__ is None
        assert len(raw) <= max_bytes
    elif isinstance(error, CredentialError):
        assert len(raw) > max_bytes
        assert "read limit" in str(error)
    else:
        assert len(raw) <= max_bytes
        for name in store.names():
            with contextlib.suppress(CredentialExpiredError):
                store.get(name)
    if max_bytes > 1024:  # the status report reads with the default limit
        report = credential_status(path)
        assert report.ok == (error is None) or any(
            "expired" in p for p in report.problems
        )
    assert path.read_bytes() == raw


# -- Hypothesis: two store objects (two processes, in effect) against a dict model ----------


class StoreMachine(RuleBasedStateMachine):
    """Writers interleave; the file always holds exactly what the model says."""

    names = st.sampled_from(["a", "b", "c"])

    def __init__(self) -> None:
        super().__init__()
        self._dir = tempfile.TemporaryDirectory()
        self.clock = FakeClock(wall=1_700_000_000.0)
        self._restore = self.clock.install()
        path = Path(self._dir.name) / "auth.json"
        self.stores = [
            CredentialStore(path, create=True, usage_interval=60.0),
            CredentialStore(path, usage_interval=60.0),
        ]
        self.tokens: dict[str, str] = {}
        self.used: dict[str, dt.datetime] = {}  # latest usage ever recorded
        self.fresh: dict[str, dt.datetime] = {}  # ... since the profile was created
        self.counter = 0

    @rule(which=st.integers(0, 1), name=names)
    def set(self, which: int, name: str) -> None:
        self.counter += 1
        token = f"tok-{self.counter}"
        self.stores[which].set(name, _cred(token=token))
        self.tokens[name] = token

    @rule(
        which=st.integers(0, 1),
        name=names,
        action=st.sampled_from(["rotate", "same", "none"]),
    )
    def update(self, which: int, name: str, action: str) -> None:
        seen: list[str | None] = []

        def fn(cred: Credential | None) -> Credential | None:
            seen.append(None if cred is None else cred.token.get_secret_value())
            if action == "none":
                return None
            if action == "same":
                return cred
            self.counter += 1
            token = f"tok-{self.counter}"
            if cred is None:
                return _cred(token=token)
            return cred.model_copy(update={"token": token})

        result = self.stores[which].update(name, fn)
        assert seen == [self.tokens.get(name)]  # always the stored one, fresh
        if action == "rotate":
            self.tokens[name] = f"tok-{self.counter}"
        if name in self.tokens:
            assert result is not None
            assert result.token.get_secret_value() == self.tokens[name]
        else:
            assert result is None

    @rule(which=st.integers(0, 1), name=names)
    def delete(self, which: int, name: str) -> None:
        assert self.stores[which].delete(name) == (name in self.tokens)
        self.tokens.pop(name, None)
        self.fresh.pop(name, None)

    @rule(which=st.integers(0, 1), name=names, seconds=st.integers(0, 90))
    def use(self, which: int, name: str, seconds: int) -> None:
        self.clock.advance(seconds)
        if name not in self.tokens:
            with pytest.raises(CredentialMissingError):
                self.stores[which].record_usage(name)
            return
        self.stores[which].record_usage(name)
        self.used[name] = self.fresh[name] = _now(self.clock)

    @rule(which=st.integers(0, 1))
    def flush(self, which: int) -> None:
        self.stores[which].flush()

    @invariant()
    def file_matches(self) -> None:
        fresh = CredentialStore(self.stores[0].path)
        assert fresh.names() == sorted(self.tokens)
        for name, token in self.tokens.items():
            got = fresh.get(name)
            assert got.token.get_secret_value() == token
            if got.last_used is not None:  # never ahead of real use
                assert got.last_used <= self.used[name]
        assert _mode(fresh.path) == 0o600

    @invariant()
    def nothing_pending_is_lost(self) -> None:
        for name, latest in self.fresh.items():
            seen = [s.get(name, allow_expired=True).last_used for s in self.stores]
            assert max(x for x in seen if x is not None) == latest

    def teardown(self) -> None:
        for store in self.stores:
            store.flush()
        fresh = CredentialStore(self.stores[0].path)
        for name, latest in self.fresh.items():
            assert fresh.get(name).last_used == latest  # all usage reached disk
        self._restore()
        self._dir.cleanup()


StoreMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=15, deadline=None
)
test_store_state_machine = StoreMachine.TestCase


@pytest.mark.parametrize("driver", ["sync", "async"])
async def test_set_and_get_from_sync_and_async_code(
    tmp_path: Path, driver: str
) -> None:
    store = CredentialStore(tmp_path / "auth.json", create=True)
    if driver == "sync":
        store.set("gh", _cred())
        got = store.get("gh")
    else:
        await asyncio.to_thread(store.set, "gh", _cred())
        got = await asyncio.to_thread(store.get, "gh")
    assert got.token.get_secret_value() == SECRET
    assert _mode(store.path) == 0o600


# -- issue 16: auth-profiles files, usage counter -------------------------------------

AUTH_PROFILES = {
    "version": 1,
    "profiles": {
        "anthropic:default": {
            "type": "api_key",
            "provider": "anthropic",
            "key": "sk-ant-AUTHPROFILE-SECRET",
            "email": "me@example.com",
        },
        "github:work": {
            "type": "oauth",
            "provider": "github",
            "access": "gho-ACCESS-SECRET",
            "refresh": "ghr-REFRESH-SECRET",
            "expires": 1893456000000,
            "accountId": "acct-1",
        },
    },
    "usageStats": {
        "anthropic:default": {"count": 12, "lastUsed": 1700000000000, "errors": 1}
    },
    "order": ["anthropic:default", "github:work"],
}


def _auth_file(tmp_path: Path) -> Path:
    path = tmp_path / "auth-profiles.json"
    path.write_text(json.dumps(AUTH_PROFILES, indent=2))
    path.chmod(0o600)
    return path


def test_finding_16_an_existing_auth_profiles_file_opens(tmp_path: Path) -> None:
    store = CredentialStore(_auth_file(tmp_path))
    key = store.get("anthropic:default")
    assert key.provider == "anthropic"
    assert key.token.get_secret_value() == "sk-ant-AUTHPROFILE-SECRET"
    assert key.use_count == 12
    assert key.last_used == dt.datetime(
        2023, 11, 14, 22, 13, 20, tzinfo=dt.timezone.utc
    )
    assert key.metadata == {"type": "api_key", "email": "me@example.com"}
    oauth = store.get("github:work")
    assert oauth.token.get_secret_value() == "gho-ACCESS-SECRET"
    assert oauth.refresh_token is not None
    assert oauth.refresh_token.get_secret_value() == "ghr-REFRESH-SECRET"
    assert oauth.expires_at == dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
    assert "SECRET" not in repr(store.get("github:work"))


def test_finding_16_auth_profiles_are_written_back_in_their_shape(
    tmp_path: Path,
) -> None:
    path = _auth_file(tmp_path)
    store = CredentialStore(path, usage_interval=0)
    store.update(
        "github:work",
        lambda c: None if c is None else c.model_copy(update={"token": "gho-NEW"}),
    )
    store.record_usage("anthropic:default")
    store.set(
        "openai:default",
        Credential(provider="openai", token="sk-OPENAI"),  # type: ignore[arg-type]
    )
    doc = json.loads(path.read_text())
    expected = json.loads(json.dumps(AUTH_PROFILES))
    expected["profiles"]["github:work"]["access"] = "gho-NEW"
    expected["profiles"]["openai:default"] = {
        "type": "api_key",
        "provider": "openai",
        "key": "sk-OPENAI",
    }
    used = doc["usageStats"]["anthropic:default"]
    assert used["count"] == 13
    assert used["errors"] == 1  # a usage field it does not own is kept
    expected["usageStats"]["anthropic:default"] = used
    assert doc == expected
    assert list(doc["profiles"]["github:work"]) == list(
        AUTH_PROFILES["profiles"]["github:work"]  # type: ignore[index]
    )
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    store.delete("anthropic:default")
    doc = json.loads(path.read_text())
    assert "anthropic:default" not in doc["profiles"]
    assert "anthropic:default" not in doc["usageStats"]


def test_finding_16_usage_counts_from_several_processes_lose_nothing(
    tmp_path: Path,
) -> None:
    path = _auth_file(tmp_path)
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, WORKERS, "cred_use", str(path), "30", interval, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # Writes at every use, and throttled ones flushed at close().
        for interval in ("0", "0", "300", "300")
    ]
    go.touch()
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-3000:]
    doc = json.loads(path.read_text())
    assert doc["usageStats"]["anthropic:default"]["count"] == 12 + 4 * 30
    assert CredentialStore(path).get("anthropic:default").use_count == 132


def test_finding_16_format_choice(tmp_path: Path) -> None:
    plain = CredentialStore(tmp_path / "new.json", create=True)
    plain.set("a", _cred())
    assert json.loads((tmp_path / "new.json").read_text())["version"] == 1
    assert "usageStats" not in json.loads((tmp_path / "new.json").read_text())
    made = CredentialStore(tmp_path / "ap.json", create=True, format="auth-profiles")
    made.set("a", _cred())
    entry = json.loads((tmp_path / "ap.json").read_text())["profiles"]["a"]
    cred = _cred()
    assert entry["provider"] == cred.provider
    secret_field = "access" if entry["type"] == "oauth" else "key"
    assert entry[secret_field] == cred.token.get_secret_value()
    with pytest.raises(ValueError, match="format must be"):
        CredentialStore(tmp_path / "x.json", format="yaml")


def test_finding_16_a_bad_auth_profile_names_the_profile_not_the_secret(
    tmp_path: Path,
) -> None:
    path = tmp_path / "auth-profiles.json"
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "profiles": {
                    "x": {"type": "api_key", "provider": "p", "kee": "sk-TYPO"}
                },
                "usageStats": {},
            }
        )
    )
    before = path.read_bytes()
    with pytest.raises(ConfigError) as info:
        CredentialStore(path)
    assert "profiles.x" in str(info.value)
    assert "sk-TYPO" not in str(info.value)
    assert path.read_bytes() == before


_json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
)
_auth_entry = st.dictionaries(
    st.sampled_from(
        ["type", "provider", "key", "token", "access", "refresh", "expires", "x"]
    ),
    _json_leaf,
    max_size=6,
)


@settings(max_examples=150, deadline=None)
# Found by Hypothesis: a usage entry that is not an object crashed the write.
@example(profiles={"": {"key": ""}}, stats={"": "0"})
@example(profiles={"": {"key": ""}}, stats={"": 1})
@given(
    profiles=st.dictionaries(st.text(max_size=6), _auth_entry | _json_leaf, max_size=3),
    stats=st.dictionaries(
        st.text(max_size=6),
        st.dictionaries(st.sampled_from(["count", "lastUsed", "y"]), _json_leaf)
        | _json_leaf,
        max_size=3,
    )
    | _json_leaf,
)
def test_finding_16_any_auth_profiles_document_loads_or_is_a_config_error(
    profiles: dict[str, object], stats: object
) -> None:
    doc = {"version": 1, "profiles": profiles, "usageStats": stats}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "auth-profiles.json"
        raw = json.dumps(doc).encode()
        path.write_bytes(raw)
        error: ConfigError | None = None
        try:
            store = CredentialStore(path, usage_interval=0)
        except ConfigError as exc:
            error = exc
        if error is not None:
            secrets = [
                value
                for entry in profiles.values()
                if isinstance(entry, dict)
                for value in entry.values()
                if isinstance(value, str) and len(value) > 3
            ]
            assert not any(repr(value) in str(error) for value in secrets)
            assert path.read_bytes() == raw
            return
        for name in store.names():
            cred = store.get(name, allow_expired=True)
            assert cred.use_count >= 0
            store.record_usage(name)
        assert sorted(json.loads(path.read_text())["profiles"]) == sorted(store.names())
