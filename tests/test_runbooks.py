"""Every command in docs/runbooks/ runs, against real broken files, with the
exit status the runbook states.

Each runbook page is played in order in a temporary working directory that
holds the broken state the page is about (a corrupted database, a 0-byte
placeholder, a database locked by another real process, an expired
credential, an invalid config file with backups, an event store with events,
a Redis port with nothing listening). A command line in a ```console block is

    $ paios-reliability ...   # exits N
    $ python -c "..."         # exits N; prints "text"

and the test runs it (``paios-reliability`` as ``python -m
paios_reliability``), asserting the status and, where given, the text in its
output. ``mv``/``cp`` lines are performed; other lines (``systemctl``,
``kill``...) are operator actions the test performs itself at the page's
"Fix" heading.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shlex
import shutil
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

RUNBOOKS = Path(__file__).parent.parent / "docs" / "runbooks"
CONSOLE = re.compile(r"^```console[ \t]*\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)
MARKER = re.compile(r'#\s*exits\s+(?P<code>\d+)(?:;\s*prints\s+"(?P<text>[^"]*)")?\s*$')
RUN_TIMEOUT = 60

HEALTH_MODULE = textwrap.dedent(
    """
    import os

    import paios_reliability as pr
    from settings_model import Settings


    def registry():
        health = pr.HealthRegistry(default_timeout=5.0)
        if os.path.exists("app.sqlite"):
            health.add_database_check("app.sqlite")
        if os.path.exists("settings.json"):
            health.add_config_check(pr.ConfigFile("settings.json", Settings))
        if os.path.exists("auth.json"):
            health.add_credentials_check(pr.CredentialStore("auth.json"))
        if os.path.exists("breakers.sqlite"):
            store = pr.SQLiteStore("breakers.sqlite")
            health.add_breaker_check(pr.CircuitBreaker("github", store=store))
        if os.path.exists("redis.port"):
            with open("redis.port") as fh:
                port = int(fh.read())
            health.add_tcp_check("127.0.0.1", port, name="redis", timeout=1.0)
        return health
    """
)

MODEL_MODULE = textwrap.dedent(
    """
    from pydantic import BaseModel, ConfigDict, Field


    class Settings(BaseModel):
        model_config = ConfigDict(extra="forbid")
        name: str
        port: int = Field(ge=1, le=65535)
    """
)

HOLDER = textwrap.dedent(
    """
    import sqlite3, sys, time
    conn = sqlite3.connect("app.sqlite", isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO notes (body) VALUES ('held')")
    print("locked", flush=True)
    sys.stdin.readline()  # hold the write lock until told (or killed)
    """
)


def _pages() -> list[Path]:
    return sorted(p for p in RUNBOOKS.glob("*.md") if p.name != "index.md")


def _commands(page: Path) -> list[tuple[str, str]]:
    """(section, command line) for each ``$ `` line, in page order."""
    text = page.read_text()
    out: list[tuple[str, str]] = []
    for m in CONSOLE.finditer(text):
        heads = re.findall(r"^## (.+)$", text[: m.start()], re.M)
        section = heads[-1].strip() if heads else ""
        out.extend(
            (section, line[2:].strip())
            for line in m.group("body").splitlines()
            if line.startswith("$ ")
        )
    return out


def _make_db(path: str, rows: int = 200) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.execute("CREATE INDEX notes_body ON notes (body)")
    conn.executemany(
        "INSERT INTO notes (body) VALUES (?)",
        [(f"note {i} " * 20,) for i in range(rows)],
    )
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def _corrupt(path: str) -> None:
    """Overwrite the pages after the first with garbage; the header stays valid."""
    with open(path, "r+b") as fh:
        fh.seek(4096)
        fh.write(b"\xde\xad\xbe\xef" * 4096)


def _events(*rows: tuple[str, str, str, str]) -> None:
    import paios_reliability as pr

    store = pr.EventStore("observability.sqlite")
    for service, category, action, level in rows:
        store.emit(category, action, level=level, service=service, pid=4242)
    store.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Scenario:
    """Builds a page's broken state; ``fix()`` does the operator's manual step."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        self.fix: Callable[[], None] = lambda: None

    def spawn(self, args: list[str], **kw: object) -> subprocess.Popen[str]:
        proc: subprocess.Popen[str] = subprocess.Popen(args, text=True, **kw)  # type: ignore[call-overload]
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            _stop(proc)


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()


def _setup(name: str, sc: Scenario) -> None:
    import paios_reliability as pr

    Path("settings_model.py").write_text(MODEL_MODULE)
    Path("health_checks.py").write_text(HEALTH_MODULE)
    if name == "service-crash-loop":
        Path("app.sqlite").write_bytes(b"")  # a touched placeholder
        _events(
            *[("gateway", "crash", "unclean_exit", "critical")] * 3,
            ("gateway", "lifecycle", "started", "info"),
        )
    elif name == "mcp-server-crash":
        _events(
            ("notes-mcp", "crash", "uncaught_exception", "critical"),
            ("notes-mcp", "error_boundary", "caught", "error"),
        )
    elif name == "config-corruption":
        from settings_model import Settings  # type: ignore[import-not-found]

        config = pr.ConfigFile("settings.json", Settings)
        config.save(Settings(name="gateway", port=8080))
        config.save(Settings(name="gateway", port=8081))
        Path("settings.json").write_text('{"name": "gateway", "port": 0, "colour"')
    elif name == "sqlite-corruption":
        _make_db("app.sqlite")
        Path("backups").mkdir()
        shutil.copy("app.sqlite", "backups/app.sqlite")
        _corrupt("app.sqlite")
    elif name == "sqlite-locked":
        _make_db("app.sqlite", rows=10)
        holder = sc.spawn(
            [sys.executable, "-c", HOLDER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        _events(("gateway", "sqlite", "busy_retry", "warning"))

        sc.fix = lambda: _stop(holder)
    elif name == "credential-expiry":
        store = pr.CredentialStore("auth.json", create=True)
        store.set(
            "github",
            pr.Credential.model_validate(
                {
                    "provider": "github",
                    "token": "ghp-expired-token",
                    "expires_at": dt.datetime.now(dt.timezone.utc)
                    - dt.timedelta(hours=1),
                }
            ),
        )
        store.close()
    elif name == "leak-alarm":
        _events(
            ("embedder", "leak_monitor", "leak_detected", "warning"),
            ("embedder", "recycling_worker", "recycled", "info"),
        )
    elif name == "breaker-stuck-open":
        store = pr.SQLiteStore("breakers.sqlite")
        try:
            pr.CircuitBreaker("github", store=store).trip()
        finally:
            store.close()
        _events(("gateway", "circuit_breaker", "opened", "warning"))
    elif name == "redis-down":
        port = _free_port()
        Path("redis.port").write_text(str(port))
        _events(("gateway", "circuit_breaker", "store_unavailable", "error"))

        def start_redis() -> None:
            sc.spawn(
                [
                    "redis-server",
                    "--port",
                    str(port),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
                stdout=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    return
                except OSError:
                    assert time.monotonic() < deadline, "redis-server did not start"
                    time.sleep(0.05)

        sc.fix = start_redis


def _run(line: str) -> tuple[int, str]:
    command, _, _ = line.partition("  #")
    argv = shlex.split(command)
    if argv[0] in ("mv", "cp"):
        assert len(argv) == 3, line
        (shutil.move if argv[0] == "mv" else shutil.copy)(argv[1], argv[2])
        return 0, ""
    if argv[0] == "paios-reliability":
        argv = [sys.executable, "-m", "paios_reliability", *argv[1:]]
    else:
        assert argv[0] == "python", line
        argv = [sys.executable, *argv[1:]]
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False
    )
    return result.returncode, result.stdout + result.stderr


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), *sys.path]))
    yield tmp_path
    sys.modules.pop("settings_model", None)


def test_every_runbook_is_covered() -> None:
    names = {p.stem for p in _pages()}
    assert names == {
        "service-crash-loop",
        "mcp-server-crash",
        "config-corruption",
        "sqlite-locked",
        "sqlite-corruption",
        "credential-expiry",
        "leak-alarm",
        "breaker-stuck-open",
        "redis-down",
    }
    index = (RUNBOOKS / "index.md").read_text()
    for name in names:
        assert name in index
    for page in _pages():
        text = page.read_text()
        for heading in ("## Symptoms", "## Diagnose", "## Fix", "## Verify"):
            assert heading in text, (page.name, heading)


def test_every_command_states_its_exit_status() -> None:
    for page in _pages():
        commands = _commands(page)
        assert any(line.startswith("paios-reliability") for _, line in commands), page
        for _, line in commands:
            if line.split()[0] in ("paios-reliability", "python", "mv", "cp"):
                assert MARKER.search(line), f"{page.name}: no '# exits N' on {line!r}"


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.stem)
def test_runbook_commands(page: Path, in_tmp: Path) -> None:
    sc = Scenario()
    try:
        _setup(page.stem, sc)
        fixed = False
        ran = 0
        for section, line in _commands(page):
            if section.startswith(("Fix", "Verify")) and not fixed:
                sc.fix()
                fixed = True
            marker = MARKER.search(line)
            if marker is None:
                continue  # an operator action (systemctl, kill...): see Scenario.fix
            status, output = _run(line)
            assert status == int(marker["code"]), f"{line}\n{output[-3000:]}"
            if marker["text"]:
                assert marker["text"] in output, f"{line}\n{output[-3000:]}"
            ran += 1
        assert ran >= 3
    finally:
        sc.close()
