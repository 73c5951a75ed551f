"""AlertDispatcher and its channels: real local HTTP servers (healthy, failing,
slow, absent), the real event store, the real (absent) desktop notifier."""

from __future__ import annotations

import http.server
import json
import logging
import shlex
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paios_reliability import (
    Alert,
    AlertChannel,
    AlertDispatcher,
    AlertLevel,
    CircuitBreaker,
    ConfigError,
    DesktopChannel,
    EventStore,
    EventStoreChannel,
    HealthRegistry,
    LogChannel,
    OccurrenceThreshold,
    WebhookChannel,
    daily_report,
)
from paios_reliability._core.events import emit
from paios_reliability.testing import FakeClock, capture_events


class Hook:
    """A real local webhook receiver whose behaviour a test chooses."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.status = 200
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.hold = False
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                hook.bodies.append(json.loads(self.rfile.read(length)))
                hook.arrived.set()
                if hook.hold:
                    hook.release.wait(10)
                self.send_response(hook.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def hook() -> Iterator[Hook]:
    made = Hook()
    yield made
    made.close()


@pytest.fixture
def log_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    caplog.set_level(logging.INFO, logger="paios_reliability.alerts")
    return [r for r in caplog.records if r.name == "paios_reliability.alerts"]


def alert_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("ALERT ")
    ]


def dead_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/hook"


def test_500_failures_within_an_hour_alert_once(
    tmp_path: Path, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="paios_reliability.alerts")
    store = EventStore(tmp_path / "observability.sqlite")
    dispatcher = AlertDispatcher([LogChannel(), EventStoreChannel(store)], service="gw")
    sent = []
    for i in range(500):
        sent.append(
            dispatcher.warning(
                "github failing", f"attempt {i}", key="integration:github"
            )
        )
        fake_clock.advance(7.0)  # 500 x 7 s = 58 min
    assert sent.count(True) == 1
    assert sent.index(True) == 4  # the 5th occurrence: the default noise floor
    assert len(alert_lines(caplog)) == 1
    rows = store.query(category="alert")
    store.close()
    assert len(rows) == 1
    assert rows[0].metadata["key"] == "integration:github"
    assert rows[0].metadata["occurrences"] == 5
    assert dispatcher.suppressed["integration:github"] == 499


def test_after_the_window_a_still_failing_integration_alerts_again(
    fake_clock: FakeClock,
) -> None:
    dispatcher = AlertDispatcher([LogChannel()])
    first = [dispatcher.warning("x", key="k") for _ in range(10)]
    fake_clock.advance(3601)
    second = [dispatcher.warning("x", key="k") for _ in range(10)]
    assert first.count(True) == 1
    assert second.count(True) == 1


def test_critical_bypasses_the_threshold_and_unkeyed_alerts_are_not_throttled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="paios_reliability.alerts")
    dispatcher = AlertDispatcher([LogChannel()])
    assert all(dispatcher.critical("db corrupt", key="db") for _ in range(3))
    assert all(dispatcher.info("backup done") for _ in range(2))
    assert len(alert_lines(caplog)) == 5
    assert [
        r.levelno for r in caplog.records if r.getMessage().startswith("ALERT")
    ] == [
        50,
        50,
        50,
        20,
        20,
    ]


def test_a_custom_threshold_object_is_used() -> None:
    dispatcher = AlertDispatcher([LogChannel()], threshold=OccurrenceThreshold(2, 60))
    assert [dispatcher.warning("x", key="k") for _ in range(3)] == [False, True, False]
    with pytest.raises(ConfigError):
        dispatcher.alert("loud", "x")


def test_webhook_receives_the_alert_as_json(hook: Hook) -> None:
    dispatcher = AlertDispatcher([WebhookChannel(hook.url)], service="gw")
    dispatcher.critical(
        "disk full", "0 bytes left", key="disk", path="/var", api_token="s3cret"
    )
    assert dispatcher.flush(10)
    [body] = hook.bodies
    assert body["level"] == "critical"
    assert body["title"] == "disk full"
    assert body["service"] == "gw"
    assert body["text"] == "[CRITICAL] disk full: 0 bytes left"
    assert body["fields"]["path"] == "/var"
    assert "s3cret" not in json.dumps(body)
    assert dispatcher.stats()["webhook"].sent == 1


def test_a_500_webhook_is_retried_then_counted_and_the_log_still_gets_it(
    hook: Hook, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="paios_reliability.alerts")
    hook.status = 500
    clock = FakeClock()
    dispatcher = AlertDispatcher(
        [WebhookChannel(hook.url, attempts=3, clock=clock), LogChannel()]
    )
    with capture_events() as events:
        dispatcher.critical("x")
        assert dispatcher.flush(10)
    assert len(hook.bodies) == 3
    assert clock.sleeps == [0.5, 1.0]
    stats = dispatcher.stats()
    assert (stats["webhook"].failed, stats["log"].sent) == (1, 1)
    assert len(alert_lines(caplog)) == 1
    assert len(events.of("alerts.channel_failed")) == 1


def test_a_4xx_webhook_fails_fast(hook: Hook) -> None:
    hook.status = 404
    dispatcher = AlertDispatcher(
        [WebhookChannel(hook.url, attempts=3, clock=FakeClock())]
    )
    dispatcher.critical("x")
    assert dispatcher.flush(10)
    assert len(hook.bodies) == 1
    assert dispatcher.stats()["webhook"].failed == 1


def test_a_refused_webhook_never_stops_the_log_channel(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="paios_reliability.alerts")
    webhook = WebhookChannel(dead_url(), attempts=2, clock=FakeClock())
    dispatcher = AlertDispatcher([webhook, LogChannel()])
    assert dispatcher.critical("db down")
    assert dispatcher.flush(10)
    assert len(alert_lines(caplog)) == 1
    assert dispatcher.stats()["webhook"].failed == 1


def test_a_slow_webhook_does_not_block_the_log_channel_and_times_out(
    hook: Hook, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="paios_reliability.alerts")
    hook.hold = True
    dispatcher = AlertDispatcher(
        [WebhookChannel(hook.url, timeout=0.3, attempts=1), LogChannel()]
    )
    dispatcher.critical("first")
    assert hook.arrived.wait(10)
    # The webhook request is in flight right now; the log line is already out.
    assert len(alert_lines(caplog)) == 1
    assert dispatcher.flush(10)
    hook.release.set()
    assert dispatcher.stats()["webhook"].failed == 1  # timed out


def test_a_full_queue_drops_and_counts(hook: Hook) -> None:
    hook.hold = True
    dispatcher = AlertDispatcher(
        [WebhookChannel(hook.url, timeout=10, attempts=1)], queue_size=1
    )
    dispatcher.critical("in flight")
    assert hook.arrived.wait(10)
    dispatcher.critical("queued")
    with capture_events() as events:
        dispatcher.critical("dropped")
    hook.release.set()
    assert dispatcher.flush(10)
    assert dispatcher.stats()["webhook"].dropped == 1
    assert len(events.of("alerts.dropped")) == 1
    assert [b["title"] for b in hook.bodies] == ["in flight", "queued"]
    dispatcher.close()


class Exploding:
    """A channel that always fails."""

    name = "exploding"
    blocking = False

    def send(self, alert: Alert, /) -> None:
        raise RuntimeError("channel bug")


def test_a_failing_channel_never_stops_the_others(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "o.sqlite")
    exploding = Exploding()
    assert isinstance(exploding, AlertChannel)
    dispatcher = AlertDispatcher([exploding, EventStoreChannel(store)])
    assert dispatcher.critical("x")
    assert len(store.query(category="alert")) == 1
    store.close()
    assert dispatcher.stats()["exploding"].failed == 1
    with pytest.raises(ConfigError):
        AlertDispatcher([LogChannel(), LogChannel()])


# -- desktop ---------------------------------------------------------------------


def test_desktop_is_unavailable_here_reports_once_and_never_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    channel = DesktopChannel()
    assert not channel.available  # no notify-send/osascript on this machine
    dispatcher = AlertDispatcher([channel])
    with capture_events() as events:
        for _ in range(3):
            dispatcher.critical("x")
        assert dispatcher.flush(10)
    assert len(events.of("alerts.channel_unavailable")) == 1
    assert (
        sum(
            "desktop notifications unavailable" in r.getMessage()
            for r in caplog.records
        )
        == 1
    )
    assert dispatcher.stats()["desktop"].failed == 0


def test_desktop_command_lines() -> None:
    alert = Alert(AlertLevel.CRITICAL, 'Disk "full"', "only 3 MB\\left")
    linux = DesktopChannel(platform="linux", app_name="paios")
    assert linux.command(alert)[1:] == [  # type: ignore[index]
        "--app-name",
        "paios",
        "--urgency",
        "critical",
        "--expire-time",
        "0",
        "--hint",
        "string:sound-name:dialog-error",
        "--",
        'Disk "full"',
        "only 3 MB\\left",
    ]
    mac = DesktopChannel(platform="darwin")
    argv = mac.command(alert)
    assert argv is not None
    assert argv[0].endswith("osascript")
    assert argv[1:] == [
        "-e",
        "beep",
        "-e",
        'display alert "Disk \\"full\\"" message "only 3 MB\\\\left" as critical',
    ]
    assert DesktopChannel(platform="win32").command(alert) is None


@pytest.mark.parametrize(
    ("level", "urgency", "expire", "sound"),
    [
        (AlertLevel.INFO, "low", "5000", None),
        (AlertLevel.WARNING, "normal", "10000", "string:sound-name:dialog-warning"),
        (AlertLevel.CRITICAL, "critical", "0", "string:sound-name:dialog-error"),
    ],
)
def test_desktop_linux_levels_set_expiry_sound_and_url(
    level: AlertLevel, urgency: str, expire: str, sound: str | None
) -> None:
    channel = DesktopChannel(
        platform="linux", action_url="https://runbooks.example/disk"
    )
    argv = channel.command(Alert(level, "Disk", "almost full"))
    assert argv is not None
    assert argv[argv.index("--urgency") + 1] == urgency
    assert argv[argv.index("--expire-time") + 1] == expire
    assert (argv[argv.index("--hint") + 1] if "--hint" in argv else None) == sound
    assert argv[-1] == "almost full\nhttps://runbooks.example/disk"


def test_desktop_macos_levels() -> None:
    mac = DesktopChannel(platform="darwin")
    mac.terminal_notifier = None
    info = mac.command(Alert(AlertLevel.INFO, "T", "B"))
    warning = mac.command(Alert(AlertLevel.WARNING, "T", "B"))
    assert info is not None
    assert warning is not None
    assert info[1:] == ["-e", 'display notification "B" with title "T"']
    assert warning[1:] == [
        "-e",
        'display notification "B" with title "T" sound name "Funk"',
    ]
    critical = mac.command(
        Alert(AlertLevel.CRITICAL, "T", "B", fields={"url": "https://dash.example/x"})
    )
    assert critical is not None
    assert critical[-1] == (
        'set answer to display alert "T" message "B" as critical buttons '
        '{"Dismiss", "Open"} default button "Open"\n'
        'if button returned of answer is "Open" then open location "https://dash.example/x"'
    )
    mac.terminal_notifier = "/usr/local/bin/terminal-notifier"
    clicked = mac.command(
        Alert(AlertLevel.WARNING, "-T", "B", fields={"url": "https://dash.example/x"})
    )
    assert clicked == [
        "/usr/local/bin/terminal-notifier",
        "-title",
        "\u2013T",
        "-message",
        "B",
        "-open",
        "https://dash.example/x",
        "-sound",
        "default",
    ]


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "javascript:alert(1)", "https://x.example/a b", 42]
)
def test_desktop_ignores_unsafe_urls(url: object) -> None:
    channel = DesktopChannel(platform="linux")
    argv = channel.command(Alert(AlertLevel.CRITICAL, "T", "B", fields={"url": url}))
    assert argv is not None
    assert argv[-1] == "B"
    if isinstance(url, str):
        with pytest.raises(ConfigError, match="action_url"):
            DesktopChannel(platform="linux", action_url=url)


@pytest.mark.skipif(shutil.which("notify-send") is None, reason="no notify-send here")
def test_desktop_linux_command_is_accepted_by_notify_send() -> None:
    argv = DesktopChannel(platform="linux").command(Alert(AlertLevel.INFO, "T", "B"))
    assert argv is not None
    done = subprocess.run(
        [argv[0], "--help"], capture_output=True, text=True, check=False
    )
    for option in ("--urgency", "--expire-time", "--hint", "--app-name"):
        assert option in done.stdout


def _parse_applescript_string(literal: str) -> str:
    assert literal.startswith('"')
    assert literal.endswith('"')
    out, i = [], 1
    while i < len(literal) - 1:
        if literal[i] == "\\":
            out.append(literal[i + 1])
            i += 2
        else:
            assert literal[i] != '"', "unescaped quote ends the string early"
            out.append(literal[i])
            i += 1
    return "".join(out)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=60))
def test_any_title_is_one_safe_applescript_string(title: str) -> None:
    argv = DesktopChannel(platform="darwin").command(Alert(AlertLevel.INFO, title, ""))
    assert argv is not None
    script = argv[2]
    literal = script[script.index("with title ") + len("with title ") :]
    expected = "".join(" " if ord(c) < 32 or ord(c) == 127 else c for c in title[:200])
    assert _parse_applescript_string(literal) == expected
    assert shlex.split(shlex.join(argv)) == argv


# -- daily report ------------------------------------------------------------------------


def test_daily_report_summarises_health_errors_trips_leaks_and_crashes(
    tmp_path: Path,
) -> None:
    store = EventStore(tmp_path / "observability.sqlite", service="gw")
    breaker = CircuitBreaker("github-report-test", failure_threshold=1)
    with store.record_library_events():
        breaker.trip()
        emit(
            "leak_monitor",
            "leak_detected",
            level="warning",
            subject="gw",
            slope_mb_per_hour=14.2,
        )
    store.emit("tool", "failed", level="error", tool="search")
    store.emit("tool", "failed", level="error", tool="search")
    store.emit("crash", "unclean_exit", level="critical", reason="SIGKILL")
    registry = HealthRegistry()
    registry.add("database", lambda: "ok")
    registry.add("breakers", lambda: ("failing", "github: open"), critical=False)
    text = daily_report(registry, store)
    plain = daily_report(registry.run(), store, markdown=False)
    store.close()
    assert text.startswith("# Daily reliability report")
    assert "## Health: DEGRADED" in text
    assert "| breakers | failing | github: open |" in text
    assert "| tool | 2 | 0 | failed x2 |" in text
    assert "| crash | 1 | 1 | unclean_exit x1 |" in text
    assert "| github-report-test | 1 |" in text
    assert "| gw | 14.2 |" in text
    assert "| gw | unclean_exit | SIGKILL |" in text
    assert "Health: DEGRADED\n----------------" in plain
    assert "|" not in plain


def test_daily_report_when_all_is_quiet(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "o.sqlite")
    text = daily_report(None, store)
    store.close()
    for line in ("No errors.", "No breaker opened.", "No leak detected.", "No crash."):
        assert line in text


def test_send_daily_report_is_one_info_alert(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="paios_reliability.alerts")
    store = EventStore(tmp_path / "o.sqlite")
    registry = HealthRegistry()
    registry.add("x", lambda: None)
    text = AlertDispatcher([LogChannel()]).send_daily_report(registry, store)
    store.close()
    assert "Health: OK" in text
    [line] = alert_lines(caplog)
    assert line.startswith("ALERT Daily report: OK")
