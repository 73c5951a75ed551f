"""Events: emission, hooks, the default structlog hook, thread safety."""

from __future__ import annotations

import ast
import dataclasses
import json
import logging
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import paios_reliability as pr
from paios_reliability._core import events as _events
from paios_reliability._core.events import (
    emit,
    emit_event,
    hook_errors,
    valid_name_part,
)
from paios_reliability.testing import capture_events


@pytest.fixture
def events_logged(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="paios_reliability")
    return caplog


def records_of(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == name]


# -- the event record ------------------------------------------------------------------------


def test_emit_builds_a_named_frozen_event() -> None:
    with pr.trace(run_id="r-1") as span, capture_events() as captured:
        event = emit_event(
            "retry", "scheduled", level="warning", subject="fetch", attempt=2, wait=0.5
        )

    assert list(captured) == [event]
    assert (event.name, event.primitive, event.action) == (
        "paios_reliability.retry.scheduled",
        "retry",
        "scheduled",
    )
    assert (event.level, event.subject, dict(event.fields)) == (
        "warning",
        "fetch",
        {"attempt": 2, "wait": 0.5},
    )
    assert dict(event.trace) == dict(span)
    assert event.timestamp > 1_600_000_000
    assert event.exc is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        event.fields["attempt"] = 3  # type: ignore[index]
    assert not hasattr(event, "__dict__")  # slotted


def test_to_dict_is_flat_and_its_own_keys_win() -> None:
    exc = ValueError("bad input")
    with pr.trace() as span, capture_events() as captured:
        emit(
            "boundary",
            "caught",
            level="error",
            subject="tool",
            exc=exc,
            event="fake",
            level_field=1,
            timestamp="fake",
            trace_id="fake",
        )

    data = captured[0].to_dict()
    assert data["event"] == "paios_reliability.boundary.caught"
    assert (data["level"], data["subject"], data["level_field"]) == ("error", "tool", 1)
    assert data["trace_id"] == span["trace_id"]
    assert isinstance(data["timestamp"], float)
    assert (data["error_type"], data["error"]) == ("ValueError", "bad input")


def test_name_parts() -> None:
    assert valid_name_part("half_open")
    assert not valid_name_part("Half-Open")
    assert not valid_name_part("")


# -- hooks ---------------------------------------------------------------------------------


def test_hooks_run_in_the_order_they_were_added() -> None:
    calls: list[tuple[str, str]] = []
    with (
        pr.add_event_hook(lambda e: calls.append(("first", e.action))),
        pr.add_event_hook(lambda e: calls.append(("second", e.action))),
    ):
        emit("breaker", "opened")
        emit("breaker", "closed")
    emit("breaker", "ignored")
    assert calls == [
        ("first", "opened"),
        ("second", "opened"),
        ("first", "closed"),
        ("second", "closed"),
    ]


def test_a_raising_hook_is_logged_and_breaks_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="paios_reliability.events")
    after: list[str] = []

    def broken(event: pr.Event) -> None:
        raise RuntimeError("hook bug")

    before = hook_errors()
    with pr.add_event_hook(broken), pr.add_event_hook(lambda e: after.append(e.name)):
        event = emit_event("limiter", "rejected", subject="api")

    assert event.name == "paios_reliability.limiter.rejected"
    assert after == ["paios_reliability.limiter.rejected"]
    assert hook_errors() == before + 1
    (record,) = records_of(caplog, "paios_reliability.events")
    assert record.levelno == logging.ERROR
    assert "paios_reliability.limiter.rejected" in record.getMessage()
    assert "broken" in record.getMessage()
    # The traceback travels already formatted and redacted, never as exc_info.
    assert record.exc_info is None
    assert record.exc_text is not None
    assert record.exc_text.endswith("RuntimeError: hook bug")
    assert "RuntimeError: hook bug" in caplog.text


def test_restorer_removes_exactly_that_hook() -> None:
    calls: list[str] = []

    def hook(event: pr.Event) -> None:
        calls.append(event.action)

    first = pr.add_event_hook(hook)
    second = pr.add_event_hook(hook)  # the same callable twice: two deliveries
    emit("x", "one")
    first()
    emit("x", "two")
    first()  # a second call is harmless and removes nothing else
    emit("x", "three")
    second()
    emit("x", "four")
    assert calls == ["one", "one", "two", "three"]


def test_add_event_hook_needs_a_callable() -> None:
    with pytest.raises(TypeError, match="callable"):
        pr.add_event_hook("print")  # type: ignore[arg-type]


def test_capture_events_from_many_threads() -> None:
    threads, per_thread = 8, 200
    barrier = threading.Barrier(threads)

    def worker(i: int) -> None:
        barrier.wait(timeout=10)
        for n in range(per_thread):
            emit("stress", "tick", subject=f"t{i}", n=n)

    with capture_events() as captured:
        workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for t in workers:
            t.start()
        for t in workers:
            t.join(timeout=60)

    assert len(captured) == threads * per_thread
    for i in range(threads):  # each thread's events arrive in its own order
        assert [e.fields["n"] for e in captured if e.subject == f"t{i}"] == list(
            range(per_thread)
        )
    assert captured.names() == ["paios_reliability.stress.tick"] * (
        threads * per_thread
    )
    assert len(captured.of("stress.tick")) == threads * per_thread


def test_capture_events_stops_at_the_end_of_the_block() -> None:
    with capture_events() as captured:
        emit("a", "inside")
    emit("a", "outside")
    assert captured.names() == ["paios_reliability.a.inside"]
    captured.clear()
    assert len(captured) == 0


# -- the default hook ---------------------------------------------------------------------


def test_default_hook_logs_through_structlog_with_trace_ids(
    events_logged: pytest.LogCaptureFixture,
) -> None:
    with pr.trace(run_id="r-9") as span:
        emit("breaker", "opened", level="warning", subject="github", failures=5)

    (record,) = records_of(events_logged, "paios_reliability")
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith("paios_reliability.breaker.opened ")
    payload = record.paios_event  # type: ignore[attr-defined]
    assert payload["event"] == "paios_reliability.breaker.opened"
    assert (payload["subject"], payload["failures"], payload["run_id"]) == (
        "github",
        5,
        "r-9",
    )
    assert (payload["trace_id"], payload["span_id"]) == (
        span["trace_id"],
        span["span_id"],
    )
    assert f"trace_id='{span['trace_id']}'" in record.getMessage()


@pytest.mark.parametrize(
    ("level", "levelno"),
    [("debug", 10), ("info", 20), ("warning", 30), ("error", 40), ("critical", 50)],
)
def test_levels_map_to_stdlib(
    events_logged: pytest.LogCaptureFixture, level: Any, levelno: int
) -> None:
    emit("x", "y", level=level)
    assert [r.levelno for r in records_of(events_logged, "paios_reliability")] == [
        levelno
    ]


def test_tracebacks_only_at_error_level(
    events_logged: pytest.LogCaptureFixture,
) -> None:
    try:
        raise ConnectionResetError("peer reset")
    except ConnectionResetError as exc:
        emit("retry", "scheduled", level="warning", exc=exc)
        emit("retry", "gave_up", level="error", exc=exc)

    warning, error = records_of(events_logged, "paios_reliability")
    assert (warning.exc_info, warning.exc_text) == (None, None)
    assert "error_type='ConnectionResetError'" in warning.getMessage()
    assert error.exc_info is None  # no raw exception for handlers to print
    assert error.exc_text is not None
    assert error.exc_text.startswith("Traceback (most recent call last):")
    assert error.exc_text.endswith("ConnectionResetError: peer reset")
    assert error.paios_event["exception"] == error.exc_text  # type: ignore[attr-defined]


def test_nothing_is_logged_below_the_logger_level(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="paios_reliability")
    emit("x", "quiet", level="info")
    emit("x", "loud", level="warning")
    assert [
        r.paios_event["event"] for r in records_of(caplog, "paios_reliability")
    ] == [  # type: ignore[attr-defined]
        "paios_reliability.x.loud"
    ]


@settings(max_examples=100, deadline=None)
@given(
    fields=st.dictionaries(
        st.from_regex(r"\A[a-z_][a-z0-9_]{0,12}\Z").filter(
            lambda k: k not in {"level", "subject", "exc"}
        ),
        st.one_of(
            st.none(),
            st.integers(),
            st.floats(),
            st.text(max_size=10),
            st.lists(st.integers(), max_size=3),
        ),
        max_size=5,
    )
)
def test_default_hook_never_fails_whatever_the_field_names(
    fields: dict[str, Any],
) -> None:
    logger = logging.getLogger("paios_reliability")
    old_level, old_propagate = logger.level, logger.propagate
    logger.setLevel(logging.DEBUG)
    logger.propagate = False  # keep the example quiet; the logger still runs
    before = hook_errors()
    try:
        event = emit_event("prop", "check", **fields)
    finally:
        logger.setLevel(old_level)
        logger.propagate = old_propagate
    assert hook_errors() == before
    assert dict(event.fields) == fields


def test_default_hook_never_writes_to_stdout() -> None:
    # No logging configured at all: stdout (an MCP stdio server's protocol
    # channel) stays empty, and so does stderr (issue 16: a host that did
    # not ask hears nothing; the NullHandler keeps the last-resort handler
    # from printing warnings).
    script = textwrap.dedent(
        """
        import paios_reliability._core.events as ev
        for level in ("debug", "info", "warning", "error", "critical"):
            try:
                raise RuntimeError("boom")
            except RuntimeError as exc:
                ev.emit("probe", "fired", level=level, subject="s", exc=exc, n=1)
        def broken(event):
            raise ValueError("hook bug")
        import paios_reliability as pr
        pr.add_event_hook(broken)
        ev.emit("probe", "after_hook", level="error")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == ""


def test_finding_16_a_host_logging_info_hears_no_routine_events(
    tmp_path: Path,
) -> None:
    script = textwrap.dedent(
        f"""
        import logging, sys
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
        import paios_reliability as pr
        from paios_reliability._core.events import emit
        cfg = pr.ConfigFile({str(tmp_path / "c.json")!r}, default={{}})
        for n in range(3):
            with cfg.edit() as data:
                data["n"] = n
        store = pr.CredentialStore({str(tmp_path / "auth.json")!r}, create=True)
        store.set("a", pr.Credential(provider="p", token="t"))
        emit("probe", "worth_hearing", level="warning")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "config_file" not in result.stderr
    assert "credentials" not in result.stderr
    assert "paios_reliability.probe.worth_hearing" in result.stderr


def test_default_hook_output_with_logging_configured_is_json_on_stderr() -> None:
    script = textwrap.dedent(
        """
        import paios_reliability as pr
        from paios_reliability._core.events import emit
        pr.configure_logging(json=True, level="DEBUG")
        with pr.trace(run_id="r-2"):
            emit("breaker", "opened", level="info", subject="github", failures=5)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    (line,) = [json.loads(line) for line in result.stderr.splitlines()]
    assert line["event"] == "paios_reliability.breaker.opened"
    assert (line["subject"], line["failures"], line["run_id"], line["level"]) == (
        "github",
        5,
        "r-2",
        "info",
    )
    assert len(line["trace_id"]) == 32
    assert line["logger"] == "paios_reliability"


def test_every_emit_in_the_library_uses_a_stable_name() -> None:
    """Event names are a contract: lower snake case, two literal parts."""
    src = Path(pr.__file__).parent
    names = []
    for path in sorted(src.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or len(node.args) < 2:
                continue
            func = node.func
            is_emit = (isinstance(func, ast.Name) and func.id == "emit") or (
                isinstance(func, ast.Attribute)
                and func.attr == "emit"
                and isinstance(func.value, ast.Name)
                and func.value.id in ("_events", "events")
            )
            if not is_emit:
                continue
            parts = node.args[:2]
            if all(
                isinstance(a, ast.Constant) and isinstance(a.value, str) for a in parts
            ):
                names.append((path.name, node.lineno, parts[0].value, parts[1].value))  # type: ignore[attr-defined]
    assert names, "no emit() calls found"
    bad = [n for n in names if not (valid_name_part(n[2]) and valid_name_part(n[3]))]
    assert bad == []


def test_fields_may_use_any_name() -> None:
    with capture_events() as captured:
        emit("crash_handler", "recorded", action="kill", primitive="p")
    assert captured[0].name == "paios_reliability.crash_handler.recorded"
    assert dict(captured[0].fields) == {"action": "kill", "primitive": "p"}


def test_emit_is_in_the_public_module_registry() -> None:
    assert _events.emit_event is pr.emit_event
    assert _events.add_event_hook is pr.add_event_hook


def test_to_dict_redacts_secret_fields_and_secrets_in_error_text() -> None:
    event = emit_event(
        "unit",
        "redaction",
        api_key="sk-live-123",
        nested={"password": "hunter2", "ok": 1},
        exc=RuntimeError("call failed: token=abc123xyz"),
    )
    data = event.to_dict()
    text = repr(data)
    assert "sk-live-123" not in text
    assert "hunter2" not in text
    assert "abc123xyz" not in text
    assert data["nested"]["ok"] == 1
    assert data["error_type"] == "RuntimeError"
