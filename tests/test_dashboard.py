"""The status HTTP app: every endpoint over real HTTP on real sockets.

A real uvicorn server (in a thread, or ``paios-reliability serve`` as a real
subprocess) in front of real SQLite stores; httpx as the client.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

import uvicorn

from paios_reliability import (
    CircuitBreaker,
    ConfigError,
    EventStore,
    HealthRegistry,
    SQLiteStore,
    StatusSources,
    create_status_app,
)
from paios_reliability._web.app import is_loopback, serve

Served = Callable[..., str]


@pytest.fixture
def served() -> Iterator[Served]:
    """Start the app on a free loopback port; returns its base URL."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(sources: StatusSources, **options: Any) -> str:
        app = create_status_app(sources, **options)
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        for _ in range(600):
            if server.started:
                break
            threading.Event().wait(0.05)
        assert server.started, "server did not start within 30 s"
        port = server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def stores(tmp_path: Path) -> StatusSources:
    state = SQLiteStore(tmp_path / "state.sqlite")
    CircuitBreaker("search", store=state).trip()
    with EventStore(tmp_path / "obs.sqlite", service="agent") as events:
        for i in range(5):
            events.emit("tool", "called", seq=i)
        events.emit("tool", "failed", level="error", code="TOOL_TIMEOUT")
    return StatusSources(
        event_stores=(str(tmp_path / "obs.sqlite"),),
        state_stores=(str(tmp_path / "state.sqlite"),),
    )


def test_healthz_readyz_and_status(served: Served, stores: StatusSources) -> None:
    registry = HealthRegistry()
    flag = {"ok": True}
    registry.add("db", lambda: flag["ok"])
    base = served(stores, health=registry)
    with httpx.Client(base_url=base, timeout=30) as http:
        assert http.get("/healthz").json()["status"] == "alive"
        ready = http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["failing"] == []
        flag["ok"] = False
        down = http.get("/readyz")
        assert down.status_code == 503
        assert down.json()["failing"] == ["db"]
        status = http.get("/api/status").json()
        assert status["status"] == "failing"  # the registry's failing check
        assert status["health"]["checks"][0]["name"] == "db"
        assert [(b["name"], b["state"]) for b in status["breakers"]] == [
            ("search", "open")
        ]


def test_metrics_are_prometheus_text(served: Served, stores: StatusSources) -> None:
    base = served(stores)
    response = httpx.get(base + "/metrics", timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert "paios_status 1" in text
    assert 'paios_circuit_breaker_state{name="search"} 2' in text
    assert 'paios_errors_window{code="TOOL_TIMEOUT"} 1' in text


def test_events_filter_and_page(served: Served, stores: StatusSources) -> None:
    base = served(stores)
    with httpx.Client(base_url=base, timeout=30) as http:
        first = http.get("/api/events", params={"limit": 4}).json()
        assert len(first["events"]) == 4
        assert first["events"][0]["action"] == "failed"  # newest first
        second = http.get(
            "/api/events", params={"limit": 4, "before": first["next"]["before"]}
        ).json()
        ids = [e["id"] for e in first["events"] + second["events"]]
        assert ids == sorted(ids, reverse=True)
        assert len(set(ids)) == 6
        assert second["next"] is None
        errors = http.get("/api/events", params={"level": "error"}).json()
        assert [e["metadata"]["code"] for e in errors["events"]] == ["TOOL_TIMEOUT"]
        after = http.get("/api/events", params={"after": ids[-1], "limit": 2}).json()
        assert [e["id"] for e in after["events"]] == sorted(ids)[1:3]
        assert http.get("/api/events", params={"since": "1h"}).status_code == 200


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"limit": "x"}, "limit must be an integer"),
        ({"limit": "0"}, "limit must be between 1 and 1000"),
        ({"limit": "5000"}, "limit must be between 1 and 1000"),
        ({"level": "loud"}, "level must be one of"),
        ({"since": "yesterday-ish"}, "since must be an age"),
        ({"store": "3"}, "store must be between 0 and 0"),
        ({"before": "5", "after": "1"}, "not both"),
        ({"colour": "red"}, "unknown parameter(s): colour"),
    ],
)
def test_bad_event_parameters_get_400_with_the_reason(
    served: Served, stores: StatusSources, params: dict[str, str], needle: str
) -> None:
    base = served(stores)
    for path in ("/api/events", "/api/events/stream"):
        response = httpx.get(base + path, params=params, timeout=30)
        assert response.status_code == 400, (path, response.text)
        assert response.json()["error"] == "bad_request"
        assert needle in response.json()["detail"]


def test_stream_sends_new_events_as_server_sent_events(
    served: Served, stores: StatusSources
) -> None:
    base = served(stores)
    with (
        httpx.Client(base_url=base, timeout=30) as http,
        http.stream("GET", "/api/events/stream") as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        assert next(lines).startswith(": stream of obs.sqlite")
        # Written by another connection after the stream started.
        with EventStore(stores.event_stores[0], service="agent") as events:
            events.emit("circuit_breaker", "opened", level="warning", subject="llm")
        frame = []
        for line in lines:
            if line == "" and frame:
                break
            if line:
                frame.append(line)
    assert frame[0].startswith("id: ")
    assert frame[1] == "event: event"
    assert '"action": "opened"' in frame[2]


def test_stream_resumes_after_last_event_id(
    served: Served, stores: StatusSources
) -> None:
    base = served(stores)
    with (
        httpx.Client(base_url=base, timeout=30) as http,
        http.stream(
            "GET", "/api/events/stream", headers={"Last-Event-ID": "4"}
        ) as response,
    ):
        ids = []
        for line in response.iter_lines():
            if line.startswith("id: "):
                ids.append(int(line[4:]))
            if len(ids) == 2:
                break
    assert ids == [5, 6]


def test_every_route_is_read_only(served: Served, stores: StatusSources) -> None:
    base = served(stores)
    for path in ("/", "/healthz", "/readyz", "/metrics", "/api/status", "/api/events"):
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            response = httpx.request(method, base + path, timeout=30)
            assert response.status_code == 405, (method, path)


def test_token_guards_everything_but_liveness(
    served: Served, stores: StatusSources
) -> None:
    base = served(stores, token="s3cret-token-value")
    with httpx.Client(base_url=base, timeout=30) as http:
        assert http.get("/healthz").status_code == 200
        for path in ("/", "/readyz", "/metrics", "/api/status", "/api/events"):
            assert http.get(path).status_code == 401, path
            wrong = http.get(path, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401, path
            good = http.get(
                path, headers={"Authorization": "Bearer s3cret-token-value"}
            )
            assert good.status_code == 200, path
        # Browsers cannot set headers on the page or an EventSource.
        assert http.get("/", params={"token": "s3cret-token-value"}).status_code == 200
        assert (
            http.get("/api/status", params={"token": "s3cret-token-value"}).status_code
            == 401
        )


def test_page_is_self_contained(served: Served, stores: StatusSources) -> None:
    page = httpx.get(served(stores) + "/", timeout=30).text
    assert "<script>" in page
    assert "api/status" in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page


def test_loopback_detection() -> None:
    assert all(
        map(is_loopback, ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"])
    )
    assert not any(map(is_loopback, ["0.0.0.0", "::", "10.0.0.1", "example.org"]))


def test_public_bind_without_token_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        serve(StatusSources(), host="0.0.0.0")
    assert info.value.code == "USAGE_ERROR"
    assert "token" in str(info.value)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_command_in_a_real_process(tmp_path: Path, stores: StatusSources) -> None:
    cli = "import sys; from paios_reliability.cli import main; sys.exit(main())"
    refused = subprocess.run(
        [sys.executable, "-c", cli, "serve", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "PAIOS_DASHBOARD_TOKEN"},
    )
    assert refused.returncode == 10
    assert "needs" not in refused.stdout
    assert "give a token" in refused.stderr
    (tmp_path / "token").write_text("file-token-1234\n")
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            cli,
            "serve",
            "--port",
            str(port),
            "--token-file",
            str(tmp_path / "token"),
            "--event-store",
            stores.event_stores[0],
            "--state-store",
            stores.state_stores[0],
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(f"serving on http://127.0.0.1:{port}/")
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(base + "/api/status", timeout=30).status_code == 401
        status = httpx.get(
            base + "/api/status",
            headers={"Authorization": "Bearer file-token-1234"},
            timeout=30,
        ).json()
        assert status["breakers"][0]["name"] == "search"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    assert "file-token-1234" not in err


def test_mountable_in_an_existing_app(tmp_path: Path, stores: StatusSources) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.testclient import TestClient

    outer = Starlette(routes=[Mount("/ops", app=create_status_app(stores))])
    with TestClient(outer) as client:
        assert client.get("/ops/healthz").status_code == 200
        assert client.get("/ops/api/status").json()["status"] == "degraded"


def test_registry_named_in_sources_drives_readyz(
    served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dash_health_mod.py").write_text(
        textwrap.dedent(
            """
            from paios_reliability import HealthRegistry
            registry = HealthRegistry()
            registry.add("queue", lambda: False)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    base = served(StatusSources(health="dash_health_mod:registry"))
    response = httpx.get(base + "/readyz", timeout=30)
    assert response.status_code == 503
    assert response.json()["failing"] == ["queue"]
