"""Shared fixtures: a real redis-server, and every state store kind.

The Redis server is a real ``redis-server`` process on a free loopback port in
a temporary directory, without persistence, started once per session on first
use and terminated at the end. A missing binary FAILS the tests that need it
(CI installs it): the Redis suites must never silently not run. Under
pytest-xdist every worker is its own session, so each starts its own server.

Hypothesis runs under the profile named by ``HYPOTHESIS_PROFILE``:

- ``dev`` (the default, for local runs): random examples and the example
  database, to keep exploring;
- ``ci`` (set by ``.ci/run`` through nox): the same examples on every run
  (``derandomize``), no example database, and no check that depends on how
  fast the machine is, so a red CI means a real defect; a failure prints the
  blob that replays it (``@reproduce_failure``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from paios_reliability import MemoryStore, RedisStore, SQLiteStore
from paios_reliability.typing import StateStore

# Timing is not a property of the code under test: wall-clock deadlines and
# the too-slow health check fail at random on a loaded 2-core machine.
# Hypothesis loads its own "ci" profile when ``CI`` is set; "dev" builds on
# the plain defaults so that HYPOTHESIS_PROFILE=dev means the same everywhere.
settings.register_profile(
    "dev",
    parent=settings.get_profile("default"),
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    print_blob=True,
    deadline=None,
    max_examples=100,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

STORE_KINDS = ("memory", "sqlite", "redis")
_START_TIMEOUT = 10.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A real redis-server child process; ``stop()``/``start()`` at will."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail(
                "redis-server is not installed (not on PATH); the Redis store "
                "tests need it: apt-get install -y redis-server"
            )
        self.binary = binary
        self.directory = directory
        self.port = port or _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.process is None, "already running"
        self.directory.mkdir(parents=True, exist_ok=True)
        log = self.directory / "redis.log"
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--logfile",
                str(log),
                "--daemonize",
                "no",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        give_up = time.monotonic() + _START_TIMEOUT
        while not _pings(self.port):
            if self.process.poll() is not None or time.monotonic() > give_up:
                self.stop()
                detail = log.read_text()[-2000:] if log.exists() else ""
                raise RuntimeError(
                    f"redis-server did not answer PING on port {self.port}:\n{detail}"
                )
            time.sleep(0.02)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def __repr__(self) -> str:
        return f"RedisServer(port={self.port})"


def _started(directory: Path) -> RedisServer:
    last: Exception | None = None
    for _ in range(3):  # the free port may be taken between probe and bind
        server = RedisServer(directory)
        try:
            server.start()
        except RuntimeError as exc:
            last = exc
            continue
        return server
    raise RuntimeError(f"could not start redis-server: {last}")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the whole session."""
    server = _started(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    """URL of the session's real redis-server."""
    return redis_server.url


@pytest.fixture
def redis_server_factory(tmp_path: Path) -> Iterator[Callable[[], RedisServer]]:
    """Start private redis-servers (for tests that stop them); all stop at the end."""
    servers: list[RedisServer] = []

    def make() -> RedisServer:
        server = _started(tmp_path / f"redis-{len(servers)}")
        servers.append(server)
        return server

    try:
        yield make
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    """Each state store kind in turn: memory, sqlite, redis."""
    return str(request.param)


@pytest.fixture
def make_store(
    store_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[[], StateStore]]:
    """Make store instances that all see the same state (same file, same prefix).

    Memory stores are one shared instance (state in memory is per instance).
    """
    made: list[StateStore] = []
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    memory = MemoryStore()
    url = request.getfixturevalue("redis_url") if store_kind == "redis" else ""

    def make() -> StateStore:
        store: StateStore
        if store_kind == "memory":
            store = memory
        elif store_kind == "sqlite":
            store = SQLiteStore(tmp_path / "state.db")
        else:
            store = RedisStore(url, prefix=prefix)
        made.append(store)
        return store

    try:
        yield make
    finally:
        for store in made:
            with contextlib.suppress(Exception):
                store.close()


@pytest.fixture
def store(make_store: Callable[[], StateStore]) -> StateStore:
    """A fresh store of the current kind."""
    return make_store()


# -- real worker processes ------------------------------------------------------------


class Worker:
    """A Python child process that answers one line per command line (bounded)."""

    def __init__(self, script: str, *args: str) -> None:
        import sys

        self.process = subprocess.Popen(
            [sys.executable, "-c", script, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def read(self, timeout: float = 60.0) -> str:
        import selectors

        assert self.process.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.process.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                self.kill()
                raise TimeoutError(f"worker gave no answer within {timeout}s")
        line = self.process.stdout.readline()
        if not line:
            err = self.process.stderr.read() if self.process.stderr else ""
            raise RuntimeError(f"worker exited: {err[-3000:]}")
        return line.strip()

    def ask(self, command: str, timeout: float = 60.0) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.read(timeout)

    def finish(self, timeout: float = 60.0) -> str:
        """Close stdin, wait for exit; the remaining stdout (failing on errors)."""
        try:
            out, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        if self.process.returncode != 0:
            raise RuntimeError(
                f"worker failed ({self.process.returncode}): {err[-3000:]}"
            )
        return out

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError, ValueError):
                    pipe.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)


@pytest.fixture
def spawn() -> Iterator[Callable[..., Worker]]:
    """Start ``python -c script *args`` workers; all are killed at the end."""
    workers: list[Worker] = []

    def start(script: str, *args: str) -> Worker:
        worker = Worker(script, *args)
        workers.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in workers:
            worker.kill()
