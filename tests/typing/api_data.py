"""Type-checked (mypy --strict), never run: the data-integrity API's types hold."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path
from typing import IO, Any, BinaryIO, TextIO

from pydantic import BaseModel
from typing_extensions import assert_type

import paios_reliability as pr
from paios_reliability._data.credential_status import (
    CredentialReport,
    credential_status,
)
from paios_reliability._data.db_maintenance import CheckpointResult

# -- SQLite -----------------------------------------------------------------------------

conn = pr.open_database("app.db")
assert_type(conn, sqlite3.Connection)
assert_type(
    pr.open_database(Path("app.db"), busy_timeout_ms=100, readonly=True),
    sqlite3.Connection,
)
with pr.open_database("app.db", synchronous="FULL") as c:
    assert_type(c, sqlite3.Connection)
with pr.write_transaction(conn) as tx:
    assert_type(tx, sqlite3.Connection)
with pr.read_transaction(conn, warn_after=None) as rx:
    assert_type(rx, sqlite3.Connection)
assert_type(pr.checkpoint(conn, "TRUNCATE"), CheckpointResult)
report = pr.check_database("app.db", full=True)
assert_type(report, pr.DatabaseReport)
assert_type(report.ok, bool)
assert_type(report.to_text(), str)
assert_type(report.to_dict(), dict[str, Any])

pr.open_database(42)  # type: ignore[arg-type]
pr.open_database("x.db", busy_timeout_ms="5s")  # type: ignore[arg-type]
pr.write_transaction("not a connection")  # type: ignore[arg-type]

# -- atomic files -------------------------------------------------------------------------

assert_type(pr.atomic_write("f.txt", "text"), None)
pr.atomic_write(Path("f.bin"), b"bytes", mode=0o600)
pr.atomic_write("f.txt", 42)  # type: ignore[arg-type]
with pr.atomic_open("f.txt") as text_file:
    assert_type(text_file, TextIO)
with pr.atomic_open("f.txt", "w", newline="\n") as text_file2:
    assert_type(text_file2, TextIO)
with pr.atomic_open("f.bin", "wb", perms=0o644) as binary_file:
    assert_type(binary_file, BinaryIO)
pr.atomic_open("f.txt", "a")  # type: ignore[call-overload]


def takes_io(f: IO[Any]) -> None: ...


with pr.atomic_open("f.txt") as any_file:
    takes_io(any_file)

# -- ConfigFile ----------------------------------------------------------------------------


class App(BaseModel):
    name: str


config = pr.ConfigFile("app.json", App, backups=3)
assert_type(config, pr.ConfigFile[App])
assert_type(config.load(), App)
assert_type(config.validate({"name": "x"}), App)
result = config.save(App(name="x"), dry_run=True)
assert_type(result, pr.SaveResult)
assert_type(result.changed, bool)
assert_type(result.backup, Path | None)
assert_type(result.diff, str)
assert_type(config.save({"name": "mapping"}), pr.SaveResult)
assert_type(
    config.update(lambda app: app.model_copy(update={"name": "y"})), pr.SaveResult
)
assert_type(config.rollback(steps=2), pr.SaveResult)
assert_type(config.backups(), list[Path])
pr.ConfigFile("app.json", App, default=App(name="d"))
pr.ConfigFile("app.json", App, backups="ten")  # type: ignore[call-overload]
config.save(42)  # type: ignore[arg-type]


def rename(app: App) -> None:
    app.name = "z"


config.update(rename)


def wrong_update(app: int) -> int:
    return app


config.update(wrong_update)  # type: ignore[arg-type]

# -- credentials ------------------------------------------------------------------------------

store = pr.CredentialStore("auth.json", usage_interval=60.0, create=True)
cred = pr.Credential(provider="github", token="t")  # type: ignore[arg-type]
cred = pr.Credential.model_validate({"provider": "github", "token": "t"})
store.set("gh", cred)
assert_type(store.get("gh"), pr.Credential)
assert_type(store.get("gh").expires_at, dt.datetime | None)
store.record_usage("gh")
assert_type(store.flush(), bool)
assert_type(
    store.expiring(within=dt.timedelta(days=1)), list[tuple[str, pr.Credential]]
)
assert_type(store.refresh_due(), list[str])
store.set("gh", {"provider": "x"})  # type: ignore[arg-type]


def add_team(current: pr.Credential | None) -> pr.Credential | None:
    if current is None:
        return None
    return current.model_copy(update={"metadata": {"team": "infra"}})


assert_type(store.update("gh", add_team), pr.Credential | None)
store.update("gh", lambda current: current)
store.update("gh", lambda current: "token")  # type: ignore[arg-type,return-value]


@store.refresher("github")
def refresh(credential: pr.Credential) -> pr.Credential:
    return credential


assert_type(refresh(cred), pr.Credential)  # the decorator keeps the function


@store.refresher("github")  # type: ignore[type-var]
def bad_refresh(credential: int) -> str:
    return ""


assert_type(credential_status("auth.json"), CredentialReport)

# -- signed files and hashes ------------------------------------------------------------------

pr.write_signed("state.sig", {"a": 1}, b"key")
pr.write_signed("state.sig", {"a": 1}, "key", mode=0o600)
assert_type(pr.read_signed("state.sig", b"key"), Any)
assert_type(pr.stable_hash({"a": 1}), str)
assert_type(pr.stable_hash([1, 2], exclude={"x"}), str)
pr.write_signed("state.sig", {"a": 1}, 42)  # type: ignore[arg-type]
pr.stable_hash({"a": 1}, exclude=5)  # type: ignore[arg-type]
