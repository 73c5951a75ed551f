"""``report daily``: the last 24 hours from real stores, as Markdown and HTML."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

from paios_reliability import (
    AlertDispatcher,
    CircuitBreaker,
    EventStore,
    EventStoreChannel,
    SQLiteStore,
    StatusSources,
)
from paios_reliability._observe.daily import build_daily_report

CLI = "import sys; from paios_reliability.cli import main; sys.exit(main())"


def _fill(directory: Path) -> StatusSources:
    now = time.time()
    path = directory / "obs.sqlite"
    with EventStore(path, service="agent") as events:
        dispatcher = AlertDispatcher(channels=[EventStoreChannel(events)])
        dispatcher.alert("warning", "queue is backing up")
        dispatcher.alert("critical", "disk almost full")
        dispatcher.flush()
        restore = events.record_library_events()
        try:
            CircuitBreaker("llm", store=SQLiteStore(directory / "state.sqlite")).trip()
        finally:
            restore()
        events.emit("tool", "called", duration=12.5, ts=now - 7200)
        events.emit("tool", "called", duration=0.2)
        events.emit(
            "tool", "failed", level="error", code="TOOL_TIMEOUT", ts=now - 3 * 3600 - 5
        )
        events.emit("tool", "failed", level="error", code="<script>alert(1)</script>")
        events.emit("tool", "failed", level="error", code="OLD", ts=now - 30 * 3600)
        events.emit(
            "leak_monitor",
            "leak_detected",
            level="warning",
            subject="rss",
            slope_mb_per_hour=40.0,
        )
        events.emit("crash", "unclean_exit", level="critical", reason="SIGKILL", pid=9)
    return StatusSources(
        event_stores=(str(path),), state_stores=(str(directory / "state.sqlite"),)
    )


def test_sections_hold_the_day(tmp_path: Path) -> None:
    report = build_daily_report(_fill(tmp_path))
    assert sorted((lvl, n) for lvl, n, _ in report.alerts) == [
        ("critical", 1),
        ("warning", 1),
    ]
    assert [(name, n) for name, n, _ in report.breaker_openings] == [("llm", 1)]
    assert [(op, d) for op, d, _, _ in report.slowest][:2] == [
        ("tool.called", 12.5),
        ("tool.called", 0.2),
    ]
    # Two errors, the crash and the critical alert; not OLD (30 h ago).
    assert sum(report.hourly_errors) == 4
    assert report.hourly_errors[-4] == 1  # three hours ago
    assert [(m, n) for m, _, n, _ in report.leak_warnings] == [("rss", 1)]
    markdown = report.to_markdown()
    for heading in (
        "## Alerts by level",
        "## Errors by code",
        "## Breaker openings",
        "## Slowest operations",
        "## Heartbeats missed",
        "## Credentials expiring",
        "## Leak warnings",
    ):
        assert heading in markdown
    assert "| TOOL_TIMEOUT | 1 |" in markdown
    assert "SIGKILL" in markdown
    assert "OLD" not in markdown


def test_html_is_self_contained_and_escaped(tmp_path: Path) -> None:
    page = build_daily_report(_fill(tmp_path)).to_html()
    assert page.startswith("<!doctype html>")
    assert "<svg" in page
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "https://" not in page
    assert page.count("http://") == 1  # the SVG namespace only


def test_command_writes_files_and_delivers(tmp_path: Path) -> None:
    _fill(tmp_path)
    (tmp_path / "reliability.toml").write_text(
        '[status]\nevent_stores = ["obs.sqlite"]\nstate_stores = ["state.sqlite"]\n'
    )
    (tmp_path / "report_dispatch_mod.py").write_text(
        textwrap.dedent(
            """
            from paios_reliability import AlertDispatcher, EventStore, EventStoreChannel
            def dispatcher():
                return AlertDispatcher(
                    channels=[EventStoreChannel(EventStore("delivered.sqlite"))]
                )
            """
        )
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            CLI,
            "report",
            "daily",
            "--html",
            "out.html",
            "--markdown",
            "out.md",
            "--deliver",
            "report_dispatch_mod:dispatcher",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr  # degraded: open breaker, crash, leak
    assert proc.stdout.startswith("# Daily reliability report")
    assert (tmp_path / "out.md").read_text().strip() == proc.stdout.strip()
    assert "<svg" in (tmp_path / "out.html").read_text()
    with EventStore(tmp_path / "delivered.sqlite") as delivered:
        [alert] = delivered.query(category="alert")
    assert alert.level == "warning"
    assert alert.metadata["title"] == "Daily reliability report: DEGRADED"


def test_bad_hours_is_a_usage_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CLI, "report", "daily", "--hours", "0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 10
    assert "must be between 1 and 744" in proc.stderr
