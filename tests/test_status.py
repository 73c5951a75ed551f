"""``paios-reliability status``: the system picture from real stores.

Real SQLite files, the real redis-server, real subprocesses for the command.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paios_reliability import (
    Bulkhead,
    CircuitBreaker,
    ConfigError,
    Credential,
    CredentialStore,
    EventStore,
    RedisStore,
    SQLiteStore,
)
from paios_reliability._observe.status import collect_status
from paios_reliability._observe.status_sources import (
    StatusSources,
    load_status_sources,
)
from paios_reliability.cli import main

NOW = dt.datetime.now(dt.timezone.utc)


def _events(path: Path) -> None:
    with EventStore(path, service="agent") as store:
        store.emit("tool", "failed", level="error", code="TOOL_TIMEOUT")
        store.emit("tool", "failed", level="error", code="TOOL_TIMEOUT")
        store.emit("tool", "failed", level="error", error_type="ValueError")
        store.emit("tool", "called")
        # Older than the window: not counted.
        store.emit("tool", "failed", level="error", code="OLD", ts=1.0)


def _refused() -> None:
    raise ConnectionRefusedError("search backend down")


def _run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from paios_reliability.cli import main; sys.exit(main())",
            *args,
        ],
        cwd=cwd,
        check=False,
        env={**os.environ, "PAIOS_HOME": "", **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_status_is_ok_with_healthy_sources(tmp_path: Path) -> None:
    state = SQLiteStore(tmp_path / "state.sqlite")
    CircuitBreaker("search", store=state).call(lambda: None)
    with EventStore(tmp_path / "obs.sqlite", service="agent") as store:
        store.emit("tool", "called")
    status = collect_status(
        StatusSources(
            event_stores=(str(tmp_path / "obs.sqlite"),),
            state_stores=(str(tmp_path / "state.sqlite"),),
        )
    )
    assert (status.status, status.exit_code, status.reasons) == ("ok", 0, ())
    assert [s["events"] for s in status.event_stores] == [1]


def test_open_breaker_degrades_and_is_shown_with_since(tmp_path: Path) -> None:
    state = SQLiteStore(tmp_path / "state.sqlite")
    tripped = time.time()
    CircuitBreaker("llm", store=state).trip()
    # A breaker that never failed has no stored state; one failure gives it some.
    with pytest.raises(ConnectionError):
        CircuitBreaker("search", store=state).call(_refused)
    status = collect_status(
        StatusSources(state_stores=(str(tmp_path / "state.sqlite"),))
    )
    assert status.status == "degraded"
    assert [(b.name, b.state) for b in status.breakers] == [
        ("llm", "open"),
        ("search", "closed"),
    ]
    llm = status.breakers[0]
    assert llm.since is not None
    assert tripped - 1 <= llm.since <= time.time()
    assert llm.retry_after is not None
    assert llm.retry_after > 0
    assert status.breakers[1].failures == 1
    assert any("breaker llm is open since" in r for r in status.reasons)


def test_errors_are_grouped_by_code_in_the_window(tmp_path: Path) -> None:
    _events(tmp_path / "obs.sqlite")
    status = collect_status(StatusSources(event_stores=(str(tmp_path / "obs.sqlite"),)))
    assert [(e.code, e.count) for e in status.errors] == [
        ("TOOL_TIMEOUT", 2),
        ("ValueError", 1),
    ]
    assert status.status == "ok"  # errors alone are shown, not judged
    assert status.event_stores[0]["events"] == 5


def test_crashes_leaks_and_dead_running_markers_degrade(tmp_path: Path) -> None:
    path = tmp_path / "obs.sqlite"
    with EventStore(path, service="agent") as store:
        store.emit("crash", "unclean_exit", level="critical", reason="SIGKILL", pid=7)
        store.emit(
            "leak_monitor",
            "leak_detected",
            level="warning",
            subject="rss",
            slope_mb_per_hour=12.5,
        )
        store.emit("leak_monitor", "leak_detected", level="warning", subject="heap")
        store.emit("leak_monitor", "leak_cleared", subject="heap")
    # A child that exits leaves a "running" marker whose pid is gone.
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    import socket
    import sqlite3

    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "INSERT INTO runs (service, host, pid, started, status) "
            "VALUES ('worker', ?, ?, ?, 'running')",
            (socket.gethostname(), child.pid, NOW.timestamp()),
        )
    conn.close()
    status = collect_status(StatusSources(event_stores=(str(path),)))
    assert status.status == "degraded"
    assert [c["reason"] for c in status.crashes] == ["SIGKILL"]
    leaks = {x["monitor"]: x for x in status.leaks}
    assert leaks["rss"]["leaking"] is True
    assert leaks["rss"]["slope_mb_per_hour"] == 12.5
    assert leaks["heap"]["leaking"] is False
    assert [(p["service"], p["alive"]) for p in status.processes] == [("worker", False)]
    text = "\n".join(status.reasons)
    assert "crash" in text
    assert "leak monitor rss" in text
    assert "worker pid" in text
    assert "heap" not in text


def test_credentials_expiring_degrade_and_expired_fail_without_secrets(
    tmp_path: Path,
) -> None:
    soon = CredentialStore(tmp_path / "soon.json", create=True)
    soon.set(
        "gh",
        Credential(
            provider="github",
            token="t0k3n-secret",
            expires_at=NOW + dt.timedelta(days=2),
        ),
    )
    gone = CredentialStore(tmp_path / "gone.json", create=True)
    gone.set(
        "sl",
        Credential(
            provider="slack",
            token="t0k3n-secret",
            expires_at=NOW - dt.timedelta(hours=1),
        ),
    )
    degraded = collect_status(StatusSources(credentials=(str(tmp_path / "soon.json"),)))
    assert degraded.status == "degraded"
    failing = collect_status(
        StatusSources(
            credentials=(str(tmp_path / "soon.json"), str(tmp_path / "gone.json"))
        )
    )
    assert failing.status == "failing"
    assert failing.exit_code == 2
    dumped = failing.to_json() + failing.to_text()
    assert "t0k3n" not in dumped
    assert "sl" in dumped
    assert "expired" in dumped


def test_health_registry_failing_check_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "status_health_mod.py").write_text(
        textwrap.dedent(
            """
            from paios_reliability import HealthRegistry
            registry = HealthRegistry()
            registry.add("db", lambda: False)
            registry.add("cache", lambda: ("degraded", "slow"), critical=False)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    status = collect_status(StatusSources(health="status_health_mod:registry"))
    assert status.status == "failing"
    assert status.health is not None
    assert [c["status"] for c in status.health["checks"]] == ["failing", "degraded"]
    broken = collect_status(StatusSources(health="no_such_module_here:registry"))
    assert broken.status == "failing"
    assert "no_such_module_here" in broken.reasons[0]


def test_redis_state_store_breakers_and_no_password_in_output(redis_url: str) -> None:
    store = RedisStore(redis_url, prefix="statustest")
    CircuitBreaker("remote-llm", store=store).trip()
    status = collect_status(StatusSources(state_stores=(f"{redis_url}#statustest",)))
    assert [(b.name, b.state) for b in status.breakers] == [("remote-llm", "open")]
    hidden = redis_url.replace("redis://", "redis://:hunter2pass@", 1)
    unreachable = collect_status(
        StatusSources(state_stores=("redis://:hunter2pass@127.0.0.1:1/0",))
    )
    assert unreachable.status == "failing"
    assert "hunter2pass" not in unreachable.to_json() + unreachable.to_text()
    assert hidden  # the URL form with a password is what a user would write


def test_bulkhead_usage_against_configured_capacity(tmp_path: Path) -> None:
    state = SQLiteStore(tmp_path / "state.sqlite")
    bulkhead = Bulkhead("llm", max_concurrent=2, store=state)
    with bulkhead, bulkhead:
        status = collect_status(
            StatusSources(
                state_stores=(str(tmp_path / "state.sqlite"),), capacity={"llm": 2}
            )
        )
    [usage] = status.usage
    assert (usage.kind, usage.name, usage.in_use, usage.capacity) == (
        "bulkhead",
        "llm",
        2,
        2,
    )
    assert status.status == "degraded"
    assert "bulkhead llm is full (2/2)" in status.reasons[0]


def test_status_reads_without_writing(tmp_path: Path) -> None:
    _events(tmp_path / "obs.sqlite")
    state = SQLiteStore(tmp_path / "state.sqlite")
    CircuitBreaker("llm", store=state).trip()
    state.close()

    def digest() -> dict[str, str]:
        return {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(tmp_path.iterdir())
            # Every reader of a WAL database may create the -wal/-shm companions.
            if not p.name.endswith(("-wal", "-shm"))
        }

    before = digest()
    status = collect_status(
        StatusSources(
            event_stores=(
                str(tmp_path / "obs.sqlite"),
                str(tmp_path / "missing.sqlite"),
            ),
            state_stores=(str(tmp_path / "state.sqlite"),),
        )
    )
    assert digest() == before  # nothing written
    assert not (tmp_path / "missing.sqlite").exists()
    assert any("missing.sqlite" in r for r in status.reasons)


# -- sources -----------------------------------------------------------------------


def test_config_found_in_cwd_then_paios_home_and_flags_override(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "reliability.toml").write_text(
        '[status]\nevent_stores = ["home.sqlite"]\nstate_stores = ["s.sqlite"]\n'
    )
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    from_home = load_status_sources(cwd=str(cwd), environ={"PAIOS_HOME": str(home)})
    assert from_home.event_stores == (str(home / "home.sqlite"),)
    assert from_home.config_path == str(home / "reliability.toml")
    (cwd / "reliability.toml").write_text(
        '[status]\nevent_stores = ["here.sqlite"]\nwindow = "1h"\n'
    )
    here = load_status_sources(cwd=str(cwd), environ={"PAIOS_HOME": str(home)})
    assert here.event_stores == (str(cwd / "here.sqlite"),)
    assert here.window == 3600.0
    flagged = load_status_sources(
        cwd=str(cwd), environ={}, event_stores=["other.sqlite"], health="m:r"
    )
    assert flagged.event_stores == (str(cwd / "other.sqlite"),)
    assert flagged.health == "m:r"
    assert load_status_sources(cwd=str(tmp_path), environ={}) == StatusSources()


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("[status]\nevent_stores = 3\n", "event_stores must be a list"),
        ("[status]\nbogus = 1\n", "unknown key(s) in [status]: bogus"),
        ('[status]\nwindow = "soon"\n', "window"),
        ("[status]\nwindow = -5\n", "window must be"),
        ('[status]\nhealth = "nocolon"\n', "health must be 'module:attr'"),
        ("[status.capacity]\nllm = 0\n", "capacity"),
        ("status = [", "not valid TOML"),
        ("status = 1\n", "[status] must be a table"),
    ],
)
def test_bad_config_is_a_clear_error_naming_the_file(
    tmp_path: Path, body: str, needle: str
) -> None:
    (tmp_path / "reliability.toml").write_text(body)
    with pytest.raises(ConfigError) as info:
        load_status_sources(cwd=str(tmp_path), environ={})
    assert needle in str(info.value)
    assert str(tmp_path / "reliability.toml") in str(info.value)


def _toml(value: object) -> str:
    if isinstance(value, dict):
        inner = ", ".join(
            f"{json.dumps(k, ensure_ascii=False)} = {_toml(v)}"
            for k, v in value.items()
        )
        return "{" + inner + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value) if "e" in repr(value) or "." in repr(value) else f"{value}.0"
    return json.dumps(value, ensure_ascii=False)


_text = st.text(
    st.characters(
        min_codepoint=0x20, exclude_categories=("Cs", "Cc"), exclude_characters="\x7f"
    ),
    max_size=8,
)
_toml_values = st.recursive(
    st.none().map(lambda _: "x")
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(_text, children, max_size=3)
    ),
    max_leaves=6,
)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    section=st.dictionaries(
        st.sampled_from(
            [
                "event_stores",
                "state_stores",
                "health",
                "credentials",
                "window",
                "capacity",
                "x",
            ]
        ),
        _toml_values,
        max_size=4,
    )
)
def test_any_status_table_loads_or_is_a_config_error(
    tmp_path: Path, section: dict[str, object]
) -> None:
    pytest.importorskip("tomllib")
    import tomllib

    body = "\n".join(f"{k} = {_toml(v)}" for k, v in section.items())
    text = f"[status]\n{body}\n"
    tomllib.loads(text)  # the strategy writes valid TOML
    (tmp_path / "reliability.toml").write_text(text)
    try:
        sources = load_status_sources(cwd=str(tmp_path), environ={})
    except ConfigError as exc:
        message = str(exc)
    else:
        message = ""
        assert sources.window > 0
        assert all(isinstance(p, str) and p for p in sources.event_stores)
    assert not message or "reliability.toml" in message


# -- the command ---------------------------------------------------------------------


def test_command_exit_codes_0_1_2_in_real_processes(tmp_path: Path) -> None:
    assert _run("status", cwd=tmp_path)[0] == 0
    state = SQLiteStore(tmp_path / "state.sqlite")
    CircuitBreaker("llm", store=state).trip()
    (tmp_path / "reliability.toml").write_text(
        '[status]\nstate_stores = ["state.sqlite"]\n'
    )
    code, out = _run("status", cwd=tmp_path)
    assert code == 1, out
    assert "status: DEGRADED" in out
    assert "llm  open" in out
    gone = CredentialStore(tmp_path / "c.json", create=True)
    gone.set(
        "sl",
        Credential(
            provider="slack",
            token="t0k3n-secret",
            expires_at=NOW - dt.timedelta(hours=1),
        ),
    )
    code, out = _run("status", "--credentials", "c.json", cwd=tmp_path)
    assert code == 2, out
    assert "t0k3n" not in out
    (tmp_path / "reliability.toml").write_text("[status]\nnope = 1\n")
    code, out = _run("status", cwd=tmp_path)
    assert code == 12
    assert "unknown key(s) in [status]: nope" in out


def test_command_json_and_paios_home(tmp_path: Path) -> None:
    _events(tmp_path / "obs.sqlite")
    (tmp_path / "reliability.toml").write_text(
        '[status]\nevent_stores = ["obs.sqlite"]\n'
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code, out = _run(
        "status", "--json", cwd=elsewhere, env={"PAIOS_HOME": str(tmp_path)}
    )
    data = json.loads(out)
    assert code == 0
    assert data["status"] == "ok"
    assert data["errors"][0] == {
        "code": "TOOL_TIMEOUT",
        "count": 2,
        "first": data["errors"][0]["first"],
        "last": data["errors"][0]["last"],
        "service": "agent",
    }


def test_watch_redraws_and_colour_is_optional(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PAIOS_HOME", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert main(["status", "--watch", "0.01", "--iterations", "3"]) == 0
    assert capsys.readouterr().out.count("status: OK") == 3
    assert main(["status", "--color", "never"]) == 0
    assert "\x1b[" not in capsys.readouterr().out
    pytest.importorskip("rich")
    assert main(["status", "--color", "always"]) == 0
    assert "\x1b[1;32mOK" in capsys.readouterr().out


def test_bad_flags_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["status", "--watch", "0"])
    assert info.value.code == 10
    assert "must be > 0" in capsys.readouterr().err
