"""The live dashboard in a real headless browser (the system's chromium).

Runs in the default test run wherever chromium and Playwright are installed
(``.ci/run`` installs the distribution's chromium; Playwright drives it
through ``executable_path``, no browser download). Set
``PAIOS_UPDATE_SCREENSHOTS=1`` to refresh the screenshots in docs/_static.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
playwright = pytest.importorskip("playwright.sync_api")

import uvicorn  # noqa: E402

from paios_reliability import (  # noqa: E402
    CircuitBreaker,
    EventStore,
    HealthRegistry,
    SQLiteStore,
    StatusSources,
    create_status_app,
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
STATIC = Path(__file__).resolve().parent.parent / "docs" / "_static"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="needs the chromium package"),
]


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    state = SQLiteStore(tmp_path / "state.sqlite")
    with pytest.raises(ConnectionError):
        CircuitBreaker("search", store=state).call(_refused)
    with EventStore(tmp_path / "obs.sqlite", service="agent") as events:
        events.emit("agent", "started")
        events.emit("tool", "failed", level="error", code="TOOL_TIMEOUT")
        events.emit(
            "leak_monitor", "leak_cleared", subject="rss", slope_mb_per_hour=0.4
        )
    health = HealthRegistry()
    health.add("database", lambda: "3 tables")
    sources = StatusSources(
        event_stores=(str(tmp_path / "obs.sqlite"),),
        state_stores=(str(tmp_path / "state.sqlite"),),
    )
    app = create_status_app(sources, health=health)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(600):
        if server.started:
            break
        threading.Event().wait(0.05)
    assert server.started
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/", tmp_path
    server.should_exit = True
    thread.join(timeout=30)


def _refused() -> None:
    raise ConnectionRefusedError("backend down")


def test_chip_turns_open_and_event_joins_timeline(
    dashboard: tuple[str, Path],
) -> None:
    url, directory = dashboard
    problems: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on(
                "console",
                lambda m: problems.append(m.text) if m.type == "error" else None,
            )
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(url)
            page.wait_for_selector('[data-breaker="search"][data-state="closed"]')
            page.wait_for_selector('li[data-event="tool.failed"]')
            assert page.inner_text("#verdict") == "OK"
            if os.environ.get("PAIOS_UPDATE_SCREENSHOTS"):
                page.screenshot(path=str(STATIC / "dashboard-ok.png"), full_page=True)

            # Trip a breaker in the backing store, from outside the server,
            # with its event recorded as a service would record it.
            with EventStore(directory / "obs.sqlite", service="agent") as events:
                restore = events.record_library_events()
                try:
                    CircuitBreaker(
                        "llm", store=SQLiteStore(directory / "state.sqlite")
                    ).trip()
                finally:
                    restore()

            page.wait_for_selector(
                '[data-breaker="llm"][data-state="open"]', timeout=2000
            )
            page.wait_for_selector(
                'li[data-event="circuit_breaker.opened"]', timeout=2000
            )
            # One synchronous page-side call: the page redraws its chips
            # every second, so a handle taken earlier may already be detached.
            color = page.evaluate(
                "getComputedStyle(document.querySelector("
                "'[data-breaker=\"llm\"]')).backgroundColor"
            )
            assert color == "rgb(207, 34, 46)"  # --bad
            page.wait_for_function(
                "document.getElementById('verdict').textContent === 'DEGRADED'"
            )
            shot = directory / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            if os.environ.get("PAIOS_UPDATE_SCREENSHOTS"):
                shutil.copy(shot, STATIC / "dashboard-breaker-open.png")
        finally:
            browser.close()
    assert problems == []
