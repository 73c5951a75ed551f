"""Worker entry points for the multi-process data-integrity tests.

Run as ``python tests/_proc_data_workers.py COMMAND ARGS...``; each command
prints one JSON line with what it did, so the parent can assert on it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any


def _wait_for_go(go: str) -> None:
    # All workers start their loops at (almost) the same moment.
    deadline = time.monotonic() + 30
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            raise SystemExit("start signal never came")
        time.sleep(0.005)


def sqlite_increment(path: str, count: str, go: str) -> dict[str, object]:
    from paios_reliability import open_database, write_transaction

    errors = 0
    done = 0
    with open_database(path) as conn:
        _wait_for_go(go)
        for _ in range(int(count)):
            try:
                with write_transaction(conn):
                    (value,) = conn.execute(
                        "SELECT v FROM counter WHERE k = 'n'"
                    ).fetchone()
                    conn.execute("UPDATE counter SET v = ? WHERE k = 'n'", (value + 1,))
                done += 1
            except Exception:
                errors += 1
    return {"done": done, "errors": errors}


def sqlite_open(path: str, go: str) -> dict[str, object]:
    from paios_reliability import open_database

    _wait_for_go(go)
    try:
        with open_database(path) as conn:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    except Exception as exc:
        return {"ok": False, "error": repr(exc)}
    return {"ok": True, "mode": mode}


def sqlite_writer_forever(path: str, ready: str) -> None:
    """Commit numbered rows one by one, then hang inside an open transaction."""
    from paios_reliability import open_database, write_transaction

    conn = open_database(path)
    i = 0
    while True:
        with write_transaction(conn):
            conn.execute("INSERT INTO rows (n, payload) VALUES (?, ?)", (i, "x" * 2000))
            if i == 50:
                open(ready, "w").close()
        i += 1


def _documents() -> dict[str, dict[str, object]]:
    # Two large, different documents; every valid state of the file is one
    # of them (or the initial one).
    return {
        "A": {"name": "A", "items": [{"i": i, "text": "a" * 40} for i in range(2000)]},
        "B": {
            "name": "B",
            "items": [{"i": -i, "text": "bb" * 30} for i in range(3000)],
        },
    }


def kill_loop(kind: str, path: str, rounds: str, seed: str) -> dict[str, object]:
    """Fork a writer that loops saving A/B, SIGKILL it at random, check the file.

    Runs in its own clean, single-threaded process so that fork() is safe.
    """
    import random
    import signal

    from pydantic import BaseModel, ConfigDict

    from paios_reliability import ConfigFile, atomic_write

    class Item(BaseModel):
        model_config = ConfigDict(extra="forbid")
        i: int
        text: str

    class Doc(BaseModel):
        model_config = ConfigDict(extra="forbid")
        name: str
        items: list[Item]

    docs = _documents()
    config = ConfigFile(path, Doc, backups=3)
    encoded = {k: json.dumps(v).encode() for k, v in docs.items()}

    def write(which: str) -> None:
        if kind == "config":
            config.save(docs[which])
        else:
            atomic_write(path, encoded[which])

    def observe() -> str:
        if kind == "config":
            return config.load().name
        return {v: k for k, v in encoded.items()}.get(Path(path).read_bytes(), "BAD")

    rng = random.Random(int(seed))
    write("A")
    # Kill within a window a few saves long: on a slow or loaded machine a
    # fixed 30 ms could end every child before its first save completes.
    started = time.perf_counter()
    for which in "BABA":
        write(which)
    window = max(0.03, (time.perf_counter() - started))
    states: dict[str, int] = {}
    stale_seen = 0
    directory = os.path.dirname(path) or "."
    state = "A"
    for _ in range(int(rounds)):
        first = 1 if state == "A" else 0  # the first write is a real change
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child only writes until killed
            n = first
            while True:
                write("AB"[n % 2])
                n += 1
        time.sleep(rng.uniform(0, window))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        try:
            state = observe()
        except Exception as exc:
            state = f"ERROR {type(exc).__name__}: {exc}"[:300]
        states[state] = states.get(state, 0) + 1
        stale_seen = max(
            stale_seen, sum(1 for n in os.listdir(directory) if n.endswith(".tmp"))
        )
    if state == "B":
        # ConfigFile.save of an unchanged value writes (and so cleans) nothing;
        # make the next save a real one, which must clean every stale temp.
        write("A")
    write("B")
    leftover = sorted(n for n in os.listdir(directory) if n.endswith(".tmp"))
    backups = [] if kind != "config" else [str(b) for b in config.backups()]
    bad_backups = []
    for b in backups:
        try:
            config.validate(Path(b).read_bytes())
        except Exception as exc:
            bad_backups.append(f"{b}: {exc}")
    return {
        "states": states,
        "stale_seen": stale_seen,
        "leftover": leftover,
        "final": observe(),
        "backups": len(backups),
        "bad_backups": bad_backups,
    }


def config_update(path: str, count: str, go: str) -> dict[str, object]:
    from pydantic import BaseModel

    from paios_reliability import ConfigFile

    class Counter(BaseModel):
        n: int = 0
        by: dict[str, int] = {}

    me = str(os.getpid())
    config = ConfigFile(path, Counter, backups=2)
    _wait_for_go(go)

    def bump(c: Counter) -> Counter:
        return Counter(n=c.n + 1, by={**c.by, me: c.by.get(me, 0) + 1})

    for _ in range(int(count)):
        config.update(bump)
    return {"pid": me, "done": int(count)}


def config_edit_plain(path: str, count: str, go: str) -> dict[str, object]:
    import sys

    from paios_reliability import ConfigFile

    me = str(os.getpid())
    config = ConfigFile(path, backups=2, default={})
    _wait_for_go(go)
    for _ in range(int(count)):
        with config.edit() as data:
            data["n"] = data.get("n", 0) + 1
            data.setdefault("by", {})[me] = data.get("by", {}).get(me, 0) + 1
    return {"pid": me, "done": int(count), "pydantic": "pydantic" in sys.modules}


def cred_use(path: str, count: str, interval: str, go: str) -> dict[str, object]:
    from paios_reliability import CredentialStore

    store = CredentialStore(path, usage_interval=float(interval))
    _wait_for_go(go)
    for _ in range(int(count)):
        store.record_usage("anthropic:default")
    store.close()
    return {"pid": os.getpid(), "done": int(count)}


def cred_writer(path: str, index: str, count: str, go: str) -> dict[str, object]:
    import datetime as dt

    from paios_reliability import Credential, CredentialStore

    store = CredentialStore(path, usage_interval=0.0)
    _wait_for_go(go)
    for j in range(int(count)):
        name = f"p{index}-{j}"
        store.set(
            name,
            Credential(
                provider=f"prov{index}",
                token=f"secret-token-{index}-{j}",
                expires_at=dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc),
            ),
        )
        store.record_usage(name)
        store.record_usage("shared")
    store.close()
    return {"index": index, "done": int(count)}


def cred_refresh(path: str, log: str, server: str, go: str) -> dict[str, object]:
    """Race refresh_due against another process on a rotating refresh token."""
    import datetime as dt

    from paios_reliability import Credential, CredentialStore

    store = CredentialStore(path)

    @store.refresher("oauth")
    def refresh(cred: Credential) -> Credential:
        assert cred.refresh_token is not None
        used = cred.refresh_token.get_secret_value()
        with open(server) as fh:
            valid = fh.read()
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()} {'ok' if used == valid else 'REUSED'}\n")
        time.sleep(0.2)  # a slow token endpoint widens the race window
        new_refresh = f"{used}+"
        with open(server, "w") as fh:
            fh.write(new_refresh)
        return cred.model_copy(
            update={
                "token": f"access-{new_refresh}",
                "refresh_token": new_refresh,
                "expires_at": dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1),
            }
        )

    _wait_for_go(go)
    return {"refreshed": store.refresh_due()}


def cred_update(path: str, key: str, count: str, go: str) -> dict[str, object]:
    """Bump ``metadata[key]`` of profile "github" ``count`` times with update().

    With ``key == "rotations"`` every bump also rotates the token and the
    refresh token, as an OAuth refresh would.
    """
    from paios_reliability import Credential, CredentialStore

    store = CredentialStore(path)
    _wait_for_go(go)

    def bump(cred: Credential | None) -> Credential:
        assert cred is not None
        n = int(cred.metadata.get(key, 0)) + 1
        update: dict[str, object] = {"metadata": {**cred.metadata, key: n}}
        if key == "rotations":
            update.update(token=f"access-{n}", refresh_token=f"refresh-{n}")
        return cred.model_copy(update=update)

    for _ in range(int(count)):
        store.update("github", bump)
    return {"key": key, "done": int(count)}


def cred_rotate(path: str) -> dict[str, object]:
    """Rotate profile "github" once, as another process's OAuth refresh."""
    from paios_reliability import CredentialStore

    store = CredentialStore(path)
    new = store.update(
        "github",
        lambda cred: (
            None
            if cred is None
            else cred.model_copy(update={"token": "access-2", "refresh_token": "R2"})
        ),
    )
    return {"rotated": new is not None}


def hold_lock(path: str, ready: str) -> dict[str, object]:
    """Hold the sidecar lock of ``path`` until stdin closes."""
    from paios_reliability._data.file_lock import file_lock

    with file_lock(path, timeout=10):
        open(ready, "w").close()
        sys.stdin.read()
    return {"held": True}


def _unprivileged_config_save(path: str, size: str = "3") -> dict[str, object]:
    from pydantic import BaseModel

    from paios_reliability import ConfigFile

    class Doc(BaseModel):
        name: str

    result = ConfigFile(path, Doc).save({"name": "n" * int(size)})
    return {"changed": result.changed}


def _unprivileged_cred_set(path: str) -> dict[str, object]:
    from paios_reliability import Credential, CredentialStore

    store = CredentialStore(path)
    store.set("p", Credential(provider="x", token="new-secret-token"))
    return {"names": store.names()}


_UNPRIVILEGED_OPS = {
    "config_save": _unprivileged_config_save,
    "cred_set": _unprivileged_cred_set,
}


def _report(fn: Any, *args: str) -> dict[str, object]:
    try:
        return {"ok": True, **fn(*args)}
    except Exception as exc:  # reported to the parent
        return {
            "ok": False,
            "types": [cls.__name__ for cls in type(exc).__mro__],
            "code": getattr(exc, "code", None),
            "message": str(exc),
        }


def fsize_limited(limit: str, op: str, *args: str) -> dict[str, object]:
    """Run ``op`` with files limited to ``limit`` bytes: writes past it fail (EFBIG).

    The nearest to a full disk a test can get without a tiny file system.
    """
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(limit), int(limit)))
    return _report(_UNPRIVILEGED_OPS[op], *args)


def unprivileged(op: str, *args: str) -> dict[str, object]:
    """Run ``op`` as uid 65534 (when root), after a warm-up run as root.

    The interpreter's own files may be closed to that user (a Python under
    /root), so every import the operation and its error paths need happens
    first, in a warm-up on a scratch copy of the files.
    """
    import shutil
    import tempfile

    import pydantic  # noqa: F401
    from pydantic import BaseModel  # noqa: F401

    from paios_reliability import ConfigError, CredentialError  # noqa: F401
    from paios_reliability._core.taxonomy import classify

    classify(PermissionError(13, "warm-up"))
    fn = _UNPRIVILEGED_OPS[op]
    scratch = tempfile.mkdtemp()
    try:
        copies = []
        for arg in args:
            copy = os.path.join(scratch, os.path.basename(arg))
            if os.path.exists(arg):
                shutil.copy2(arg, copy)
            copies.append(copy)
        fn(*copies)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if os.geteuid() == 0:
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
        except OSError as exc:
            return {"cannot_drop": str(exc)}
    return _report(fn, *args)


COMMANDS = {
    "sqlite_increment": sqlite_increment,
    "sqlite_open": sqlite_open,
    "sqlite_writer_forever": sqlite_writer_forever,
    "kill_loop": kill_loop,
    "config_update": config_update,
    "config_edit_plain": config_edit_plain,
    "cred_writer": cred_writer,
    "cred_use": cred_use,
    "cred_refresh": cred_refresh,
    "hold_lock": hold_lock,
    "cred_update": cred_update,
    "cred_rotate": cred_rotate,
    "unprivileged": unprivileged,
    "fsize_limited": fsize_limited,
}


if __name__ == "__main__":
    result = COMMANDS[sys.argv[1]](*sys.argv[2:])
    print(json.dumps(result), flush=True)
