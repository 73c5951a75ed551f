"""HealthRegistry: sync and async checks, timeouts, ready-made checks on real
files, sockets and HTTP servers, and the CLI entry point."""

from __future__ import annotations

import asyncio
import datetime as dt
import http.server
import json
import socket
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from paios_reliability import (
    CircuitBreaker,
    ConfigError,
    ConfigFile,
    Credential,
    CredentialStore,
    HealthRegistry,
    HealthReport,
    LeakMonitor,
)
from paios_reliability._observe.health_command import health_command
from paios_reliability.testing import FakeClock


@pytest.fixture(params=["run", "arun"])
def run(request: pytest.FixtureRequest) -> Callable[[HealthRegistry], HealthReport]:
    """registry.run() or registry.arun(), driven the same way."""
    if request.param == "run":
        return lambda registry: registry.run()
    return lambda registry: asyncio.run(registry.arun())


def test_statuses_from_return_values_and_errors(
    run: Callable[[HealthRegistry], HealthReport],
) -> None:
    registry = HealthRegistry()

    @registry.check
    def plain() -> None:
        return None

    @registry.check("described")
    def _described() -> str:
        return "3 rows"

    @registry.check("async_ok")
    async def _async_ok() -> bool:
        await asyncio.sleep(0)
        return True

    @registry.check("warn", critical=False)
    def _warn() -> tuple[str, str]:
        return ("warning", "queue is long")

    @registry.check("soft_fail", critical=False)
    async def _soft() -> bool:
        return False

    report = run(registry)
    assert report.status == "degraded"
    assert report.ok
    assert report.exit_code == 0
    assert [(c.name, c.status) for c in report.checks] == [
        ("plain", "ok"),
        ("described", "ok"),
        ("async_ok", "ok"),
        ("warn", "degraded"),
        ("soft_fail", "failing"),
    ]
    assert report["described"].detail == "3 rows"
    assert report["soft_fail"].detail == "check returned False"
    assert plain() is None  # the decorator returns the function unchanged


def test_a_failing_critical_check_fails_the_report(
    run: Callable[[HealthRegistry], HealthReport],
) -> None:
    registry = HealthRegistry()

    @registry.check("db")
    def _db() -> None:
        raise sqlite3.OperationalError("disk I/O error token=abc123")

    @registry.check("api")
    async def _api() -> None:
        raise ConnectionRefusedError("refused")

    report = run(registry)
    assert report.status == "failing"
    assert not report.ok
    assert report.exit_code == 1
    assert "disk I/O error" in report["db"].detail
    assert "abc123" not in report["db"].detail
    assert report["api"].detail.startswith("ConnectionRefusedError")


def test_timeouts_fail_the_check_and_a_hung_check_is_not_started_twice(
    run: Callable[[HealthRegistry], HealthReport],
) -> None:
    release = threading.Event()
    started = []
    registry = HealthRegistry()

    @registry.check("hangs", timeout=0.2)
    def _hangs() -> None:
        started.append(1)
        release.wait(30)

    @registry.check("slow_async", timeout=0.2)
    async def _slow() -> None:
        await asyncio.sleep(30)

    @registry.check("fine")
    def _fine() -> None:
        return None

    try:
        first = run(registry)
        second = run(registry)
    finally:
        release.set()
    assert first["hangs"].status == "failing"
    assert first["hangs"].detail == "timed out after 0.2s"
    assert first["slow_async"].detail == "timed out after 0.2s"
    assert first["fine"].status == "ok"
    assert second["hangs"].detail == "still running from an earlier run (hung)"
    assert len(started) == 1


def test_report_json_and_text() -> None:
    registry = HealthRegistry()
    registry.add("a", lambda: "fine")
    registry.add("b", lambda: ("degraded", "slow"), critical=False)
    report = registry.run()
    data = json.loads(report.to_json())
    assert data["status"] == "degraded"
    assert [c["name"] for c in data["checks"]] == ["a", "b"]
    assert data["checks"][1] | {"duration": 0} == {
        "name": "b",
        "status": "degraded",
        "detail": "slow",
        "duration": 0,
        "critical": False,
    }
    text = report.to_text()
    assert "DEGRADED" in text.splitlines()[-1]
    assert "(non-critical) slow" in text


def test_registration_errors() -> None:
    registry = HealthRegistry()
    registry.add("x", lambda: None)
    with pytest.raises(ConfigError, match="already registered"):
        registry.add("x", lambda: None)
    with pytest.raises(ConfigError):
        registry.add("", lambda: None)
    with pytest.raises(ConfigError):
        registry.add("y", lambda: None, timeout=0)
    registry.remove("x")
    assert registry.names == []
    assert registry.run().status == "ok"


# -- ready-made checks -----------------------------------------------------------------


def test_database_check(tmp_path: Path) -> None:
    good = tmp_path / "good.sqlite"
    conn = sqlite3.connect(good)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    registry = HealthRegistry()
    registry.add_database_check(good, name="good")
    registry.add_database_check(empty, name="placeholder")
    report = registry.run()
    assert report["good"].status == "ok"
    assert report["placeholder"].status == "failing"
    assert (
        "0-byte" in report["placeholder"].detail
        or "empty" in report["placeholder"].detail
    )


class Settings(BaseModel):
    port: int


def test_config_check(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text('{"port": 8080}')
    bad = tmp_path / "bad.json"
    bad.write_text('{"port": "eighty"}')
    registry = HealthRegistry()
    registry.add_config_check(ConfigFile(good, Settings), name="good")
    registry.add_config_check(ConfigFile(bad, Settings), name="bad")
    report = registry.run()
    assert report["good"].status == "ok"
    assert report["bad"].status == "failing"
    assert "port" in report["bad"].detail


def test_credentials_check(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.timezone.utc)

    def store_with(**expiries: dt.datetime) -> CredentialStore:
        store = CredentialStore(
            tmp_path / f"{len(list(tmp_path.iterdir()))}.json", create=True
        )
        for name, when in expiries.items():
            store.set(
                name, Credential(provider=name, token="t0k3n-secret", expires_at=when)
            )
        return store

    registry = HealthRegistry()
    registry.add_credentials_check(
        store_with(github=now + dt.timedelta(days=60)), name="fine"
    )
    registry.add_credentials_check(
        store_with(github=now + dt.timedelta(days=2)), name="expiring"
    )
    registry.add_credentials_check(
        store_with(
            github=now - dt.timedelta(hours=1), slack=now + dt.timedelta(days=1)
        ),
        name="expired",
    )
    report = registry.run()
    assert report["fine"].status == "ok"
    assert report["expiring"].status == "degraded"
    assert report["expiring"].detail == "expiring: github"
    assert report["expired"].status == "failing"
    assert report["expired"].detail == "expired: github; expiring: slack"
    assert "t0k3n" not in report.to_json()


def test_breaker_check_is_non_critical_by_default() -> None:
    github = CircuitBreaker("github-health-test")
    slack = CircuitBreaker("slack-health-test")
    registry = HealthRegistry()
    registry.add_breaker_check(github, slack)
    assert registry.run()["breakers"].status == "ok"
    github.trip()
    report = registry.run()
    assert report["breakers"].status == "failing"
    assert "github-health-test: open" in report["breakers"].detail
    assert report.status == "degraded"
    with pytest.raises(ConfigError):
        registry.add_breaker_check(name="none")


def test_leak_check() -> None:
    clock = FakeClock()
    value = [100.0 * (1 << 20)]
    monitor = LeakMonitor(source=lambda: value[0], clock=clock)
    registry = HealthRegistry()
    registry.add_leak_check(monitor)
    assert "warming up" in registry.run()["memory"].detail
    for _ in range(300):
        value[0] += 1 << 20
        monitor.sample()
        clock.advance(30)
    report = registry.run()
    assert report["memory"].status == "failing"
    assert report.status == "degraded"


def test_disk_check(tmp_path: Path) -> None:
    registry = HealthRegistry()
    registry.add_disk_check(
        tmp_path, min_free_mb=1, min_free_ratio=0.0001, name="roomy"
    )
    registry.add_disk_check(tmp_path, min_free_mb=10**12, name="impossible")
    report = registry.run()
    assert report["roomy"].status == "ok"
    assert "MiB free" in report["roomy"].detail
    assert report["impossible"].status == "failing"


def test_tcp_check() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead_port = closed.getsockname()[1]
    closed.close()
    registry = HealthRegistry(default_timeout=2)
    registry.add_tcp_check("127.0.0.1", port, name="up")
    registry.add_tcp_check("127.0.0.1", dead_port, name="down")
    try:
        report = registry.run()
    finally:
        listener.close()
    assert report["up"].status == "ok"
    assert report["down"].status == "failing"
    assert "Refused" in report["down"].detail or "refused" in report["down"].detail


@pytest.fixture
def http_server() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/ok" else 500)
            self.end_headers()
            self.wfile.write(b"x")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(10)


def test_http_check(http_server: str) -> None:
    registry = HealthRegistry(default_timeout=2)
    registry.add_http_check(f"{http_server}/ok", name="ok")
    registry.add_http_check(f"{http_server}/broken", name="broken")
    report = registry.run()
    assert report["ok"].status == "ok"
    assert report["ok"].detail == "HTTP 200"
    assert report["broken"].status == "failing"
    assert report["broken"].detail == "HTTP 500"
    with pytest.raises(ConfigError):
        registry.add_http_check("ftp://example.invalid/")


# -- CLI -------------------------------------------------------------------------


def test_health_command_finds_a_module_in_the_working_directory_and_leaves_sys_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cwd_health_app.py").write_text(
        "from paios_reliability import HealthRegistry\n"
        "registry = HealthRegistry()\n"
        "registry.add('ok', lambda: 'fine')\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))]
    )
    before = list(sys.path)
    text, status = health_command("cwd_health_app:registry")
    assert status == 0
    assert "OK" in text
    assert sys.path == before


def test_health_command_loads_module_attr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ops_health_app.py").write_text(
        "from paios_reliability import HealthRegistry\n"
        "registry = HealthRegistry()\n"
        "registry.add('ok', lambda: 'fine')\n"
        "def failing():\n"
        "    r = HealthRegistry()\n"
        "    r.add('db', lambda: False)\n"
        "    return r\n"
        "not_a_registry = 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    text, status = health_command("ops_health_app:registry")
    assert status == 0
    assert "OK" in text
    out, status = health_command("ops_health_app:failing", as_json=True)
    assert status == 1
    assert json.loads(out)["status"] == "failing"
    for bad in (
        "ops_health_app",
        "ops_health_app:missing",
        "nope_mod:x",
        "ops_health_app:not_a_registry",
    ):
        with pytest.raises(ConfigError):
            health_command(bad)


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(
        st.none(),
        st.booleans(),
        st.text(max_size=20),
        st.tuples(
            st.sampled_from(["ok", "degraded", "failing", "warning", "bogus"]),
            st.text(max_size=10),
        ),
        st.integers(),
        st.lists(st.integers(), max_size=3),
    )
)
def test_any_check_return_value_maps_to_a_valid_status(value: object) -> None:
    registry = HealthRegistry()
    registry.add("v", lambda: value)  # type: ignore[arg-type,return-value]
    result = registry.run()["v"]
    assert result.status in ("ok", "degraded", "failing")
    if isinstance(value, tuple) and value[0] == "bogus":
        assert result.status == "failing"
    if value is None or value is True or isinstance(value, str):
        assert result.status == "ok"
