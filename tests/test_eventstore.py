"""EventStore: real SQLite files, real concurrent writer processes."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paios_reliability import (
    ConfigError,
    EventStore,
    ReliabilityError,
    StoredEvent,
    trace,
)
from paios_reliability._core.events import emit as library_emit
from paios_reliability._data import transactions as _transactions
from paios_reliability._observe.time_args import parse_duration, parse_time
from paios_reliability.cli.events import query_command

HELPERS = Path(__file__).parent / "_proc_ops_helpers.py"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    s = EventStore(tmp_path / "observability.sqlite", service="svc")
    yield s
    s.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_emit_then_query_round_trips_fields_and_trace(
    store: EventStore, mode: str
) -> None:
    if mode == "sync":
        with trace(run_id="r1") as ctx:
            store.emit("tool", "called", level="warning", tool="search", n=3)
    else:
        async with trace(run_id="r1") as ctx:
            store.emit("tool", "called", level="warning", tool="search", n=3)
    [event] = store.query()
    assert (event.category, event.action, event.level) == ("tool", "called", "warning")
    assert event.service == "svc"
    assert event.trace_id == ctx["trace_id"]
    assert event.span_id == ctx["span_id"]
    assert dict(event.metadata) == {"tool": "search", "n": 3}
    assert abs(event.ts - time.time()) < 60
    assert event.time.tzinfo == dt.timezone.utc


def test_schema_has_the_documented_columns_and_indexes(store: EventStore) -> None:
    store.emit("x", "y")
    store.flush()
    conn = sqlite3.connect(store.path)
    columns = [row[1] for row in conn.execute("PRAGMA table_info(events)")]
    indexes = {row[1] for row in conn.execute("PRAGMA index_list(events)")}
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    conn.close()
    assert columns == [
        "id",
        "ts",
        "trace_id",
        "span_id",
        "service",
        "category",
        "action",
        "level",
        "metadata",
    ]
    assert {"events_ts", "events_trace", "events_category"} <= indexes
    assert mode == "wal"


def test_query_filters(store: EventStore) -> None:
    base = 1_700_000_000.0
    store.emit("breaker", "opened", level="warning", ts=base, trace_id="t1")
    store.emit("breaker", "closed", level="info", ts=base + 10, trace_id="t1")
    store.emit("retry", "scheduled", level="info", ts=base + 20, trace_id="t2")
    store.emit("crash", "uncaught_exception", level="critical", ts=base + 30)
    store.emit("tool", "failed", level="error", ts=base + 40, service="other")

    def actions(**filters: object) -> list[str]:
        return [e.action for e in store.query(**filters)]  # type: ignore[arg-type]

    assert actions(trace_id="t1") == ["opened", "closed"]
    assert actions(category="breaker", action="closed") == ["closed"]
    assert actions(since=base + 15, until=base + 35) == [
        "scheduled",
        "uncaught_exception",
    ]
    assert actions(level="error") == ["uncaught_exception", "failed"]
    assert actions(level="warning") == ["opened", "uncaught_exception", "failed"]
    assert actions(service="other") == ["failed"]
    # limit keeps the most recent, still oldest first
    assert actions(limit=2) == ["uncaught_exception", "failed"]
    assert actions(since=dt.datetime.fromtimestamp(base + 35, dt.timezone.utc)) == [
        "failed"
    ]
    assert store.count(category="breaker") == 2
    with pytest.raises(ConfigError, match="unknown level"):
        store.query(level="loud")


def test_relative_since_uses_now(store: EventStore) -> None:
    now = time.time()
    store.emit("a", "old", ts=now - 7200)
    store.emit("a", "new", ts=now - 60)
    assert [e.action for e in store.query(since="1h")] == ["new"]
    assert [e.action for e in store.query(since=dt.timedelta(hours=3))] == [
        "old",
        "new",
    ]


def test_secrets_in_metadata_are_redacted(store: EventStore) -> None:
    store.emit(
        "http",
        "failed",
        api_key="sk-123456",
        error="401 for Authorization: Bearer abc.def.ghi",
        nested={"password": "pw", "user": "ann"},
    )
    [event] = store.query()
    text = json.dumps(dict(event.metadata))
    assert "sk-123456" not in text
    assert "abc.def.ghi" not in text
    assert '"pw"' not in text
    assert event.metadata["nested"]["user"] == "ann"


def test_unserialisable_metadata_is_stored_as_text(store: EventStore) -> None:
    class Thing:
        def __repr__(self) -> str:
            return "<Thing 7>"

    store.emit(
        "x", "y", thing=Thing(), when=dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc)
    )
    [event] = store.query()
    assert event.metadata["thing"] == "<Thing 7>"
    assert event.metadata["when"].startswith("2024-01-02")


@pytest.mark.parametrize("kind", ["missing_dir", "not_a_database"])
def test_a_failing_store_never_raises_into_emit(tmp_path: Path, kind: str) -> None:
    if kind == "missing_dir":
        path = tmp_path / "nope" / "obs.sqlite"
    else:
        path = tmp_path / "obs.sqlite"
        path.write_text("this is a text file, not a database\n" * 10)
    store = EventStore(path, max_buffer=50, batch_size=10)
    for i in range(80):
        store.emit("x", "y", i=i)  # must not raise
    assert store.flush(timeout=5) == 0
    stats = store.stats()
    assert stats.errors >= 1
    assert stats.pending == 50
    assert stats.dropped == 30
    with pytest.raises(ReliabilityError):
        store.query()
    store.close()
    if kind == "not_a_database":
        assert path.read_text().startswith("this is a text file")


def _interrupt_writes(
    monkeypatch: pytest.MonkeyPatch,
    interrupt: BaseException,
    during: Callable[[], None] = lambda: None,
) -> None:
    """Raise ``interrupt`` inside the store's next write transactions.

    After the inserts, before the commit: where a SIGTERM turned into
    ``SystemExit`` by the crash handler (or a Ctrl-C) lands in a main-thread
    flush. ``during`` runs there first (other threads emitting meanwhile).
    """
    real = _transactions.write_transaction

    @contextlib.contextmanager
    def interrupted(conn: sqlite3.Connection, *args: Any, **kwargs: Any) -> Any:
        with real(conn, *args, **kwargs) as inner:
            yield inner
            during()
            raise interrupt

    monkeypatch.setattr(_transactions, "write_transaction", interrupted)


def _accounted(store: EventStore) -> bool:
    stats = store.stats()
    return stats.emitted == stats.written + stats.dropped + stats.pending


@pytest.mark.parametrize(
    "interrupt", [SystemExit(143), KeyboardInterrupt()], ids=["SystemExit", "Ctrl-C"]
)
def test_finding_13_an_interrupted_flush_requeues_its_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, interrupt: BaseException
) -> None:
    store = EventStore(tmp_path / "o.sqlite", flush_interval=3600.0)
    assert store.query() == []  # connection and schema ready before the injection
    for i in range(100):
        store.emit("x", "y", i=i)
    _interrupt_writes(monkeypatch, interrupt)
    with pytest.raises(type(interrupt)) as info:
        store.flush()
    assert info.value is interrupt  # re-raised unchanged
    stats = store.stats()
    assert (stats.emitted, stats.written, stats.dropped, stats.pending) == (
        100,
        0,
        0,
        100,
    )
    monkeypatch.undo()
    assert store.flush() == 100
    assert [e.metadata["i"] for e in store.query(limit=None)] == list(range(100))
    assert _accounted(store)
    store.close()


def test_finding_13_requeue_into_a_full_buffer_counts_what_it_drops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = EventStore(
        tmp_path / "o.sqlite", flush_interval=3600.0, batch_size=10, max_buffer=100
    )
    assert store.query() == []
    for i in range(100):
        store.emit("x", "old", i=i)

    def more_events_meanwhile() -> None:
        for i in range(5):
            store.emit("x", "new", i=i)

    _interrupt_writes(monkeypatch, SystemExit(143), during=more_events_meanwhile)
    with pytest.raises(SystemExit):
        store.flush()
    stats = store.stats()
    assert (stats.emitted, stats.dropped, stats.pending) == (105, 5, 100)
    assert _accounted(store)
    monkeypatch.undo()
    store.flush()
    kept = [(e.action, e.metadata["i"]) for e in store.query(limit=None)]
    # The oldest were dropped (and counted); the order of the rest is kept.
    assert kept == [("old", i) for i in range(5, 100)] + [("new", i) for i in range(5)]
    store.close()


def test_events_after_close_are_dropped_and_counted(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "o.sqlite")
    store.emit("a", "b")
    store.close()
    store.close()  # idempotent
    store.emit("a", "c")
    assert store.stats().dropped == 1
    reader = EventStore(tmp_path / "o.sqlite")
    assert [e.action for e in reader.query()] == ["b"]
    reader.close()


def test_unknown_level_is_kept_as_info_with_the_given_level(store: EventStore) -> None:
    store.emit("x", "y", level="loud")
    [event] = store.query()
    assert event.level == "info"
    assert event.metadata["given_level"] == "loud"


def test_background_flush_writes_without_explicit_flush(tmp_path: Path) -> None:
    writer = EventStore(tmp_path / "o.sqlite", flush_interval=0.05)
    writer.emit("a", "b")
    deadline = time.monotonic() + 10
    while writer.stats().written == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer.stats().written == 1
    conn = sqlite3.connect(writer.path)
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 1
    conn.close()
    writer.close()


def test_library_events_flow_into_the_store(store: EventStore) -> None:
    with store.record_library_events():
        with trace() as ctx:
            library_emit(
                "circuit_breaker",
                "opened",
                level="warning",
                subject="github",
                failures=5,
            )
        library_emit("retry", "scheduled", level="debug", subject="fetch")  # below min
        store.emit("direct", "event")
        store.flush()
        store.query()
    library_emit("circuit_breaker", "closed", subject="github")  # after removal
    events = store.query()
    assert [(e.category, e.action) for e in events] == [
        ("circuit_breaker", "opened"),
        ("direct", "event"),
    ]
    opened = events[0]
    assert opened.level == "warning"
    assert opened.trace_id == ctx["trace_id"]
    assert opened.metadata["subject"] == "github"
    assert opened.metadata["failures"] == 5


def test_the_store_does_not_record_its_own_sqlite_events(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "o.sqlite")
    with store.record_library_events(min_level="debug"):
        store.emit("a", "b")
        store.flush()
        store.query()
        store.prune("30d")
    categories = {e.category for e in store.query()}
    store.close()
    assert categories == {"a", "event_store"}


def test_prune_deletes_only_old_events(store: EventStore) -> None:
    now = time.time()
    for i in range(30):
        store.emit("a", "old", ts=now - 40 * 86400 - i)
    store.emit("a", "new", ts=now - 86400)
    assert store.prune("30d") == 30
    assert [e.action for e in store.query()] == ["new"]
    assert store.prune(dt.timedelta(days=30)) == 0


def test_stored_event_views() -> None:
    event = StoredEvent(
        id=1,
        ts=0.5,
        trace_id="t",
        span_id=None,
        service="s",
        category="c",
        action="a",
        level="error",
        metadata={"k": 1},
    )
    assert event.to_dict()["ts"] == "1970-01-01T00:00:00.500000Z"
    assert event.to_line().startswith(
        "1970-01-01T00:00:00.500Z  ERROR     c.a  service=s"
    )


def test_query_command_text_and_json(tmp_path: Path) -> None:
    db = tmp_path / "o.sqlite"
    with EventStore(db, service="gw") as s:
        s.emit("breaker", "opened", level="warning", trace_id="abc")
        s.emit("tool", "called")
    text, status = query_command(db, category="breaker")
    assert status == 0
    assert "breaker.opened" in text
    assert "tool.called" not in text
    out, status = query_command(db, trace="abc", as_json=True)
    assert status == 0
    assert [e["action"] for e in json.loads(out)] == ["opened"]
    assert query_command(db, category="nothing") == ("no events matched", 0)
    assert query_command(db, since="1h")[0].count("\n") == 1


def test_query_command_on_a_database_that_is_not_an_event_store(tmp_path: Path) -> None:
    other = tmp_path / "app.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE users (id)")
    conn.close()
    with pytest.raises(ReliabilityError, match="not an event store") as info:
        query_command(other)
    assert info.value.code == "DB_ERROR"


def test_query_command_never_creates_a_missing_database(tmp_path: Path) -> None:
    missing = tmp_path / "missing.sqlite"
    with pytest.raises(ReliabilityError) as info:
        query_command(missing)
    assert info.value.code == "FILE_NOT_FOUND"
    assert not missing.exists()
    with pytest.raises(ConfigError):
        query_command(missing, since="yesterday-ish")


def test_four_processes_emitting_5000_events_each_lose_none(tmp_path: Path) -> None:
    db = tmp_path / "observability.sqlite"
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, str(HELPERS), "emit", str(db), f"w{i}", "5000", str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    time.sleep(0.2)
    go.write_text("go")
    summaries = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        summaries.append(json.loads(out.strip().splitlines()[-1]))
    assert all(s["written"] == 5000 and s["dropped"] == 0 for s in summaries)
    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT service, count(*), count(DISTINCT json_extract(metadata, '$.seq')) "
        "FROM events GROUP BY service ORDER BY service"
    ).fetchall()
    total = conn.execute("SELECT count(*), count(DISTINCT id) FROM events").fetchone()
    conn.close()
    assert rows == [(f"w{i}", 5000, 5000) for i in range(4)]
    assert total == (20000, 20000)


# -- time parsing (outside input: the CLI's --since) ---------------------------------

UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 500), st.sampled_from(sorted(UNITS))),
        min_size=1,
        max_size=4,
    )
)
def test_parse_duration_sums_its_parts(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{n}{unit}" for n, unit in parts)
    expected = sum(n * UNITS[unit] for n, unit in parts)
    assert parse_duration(text) == pytest.approx(expected)
    assert parse_time(text, now=1e9) == pytest.approx(1e9 - expected)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30))
def test_parse_time_accepts_or_rejects_cleanly(text: str) -> None:
    result: object
    try:
        result = parse_time(text, now=1e9)
    except ConfigError as exc:
        result = exc.code
    assert isinstance(result, float) or result == "USAGE_ERROR"


def test_parse_time_forms() -> None:
    assert (
        parse_time("2024-01-02T03:04:05Z")
        == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc).timestamp()
    )
    assert (
        parse_time(dt.datetime(2024, 1, 2))
        == dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc).timestamp()
    )
    assert parse_time(12.5) == 12.5
    assert parse_time("1h30m", now=10_000) == 10_000 - 5400
    for bad in ("", "1x", "h", "-1h", "9999999w"):
        with pytest.raises(ConfigError):
            parse_time(bad)
    with pytest.raises(ConfigError):
        parse_time(True)  # type: ignore[arg-type]


def test_constructor_validates(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        EventStore(tmp_path / "x", batch_size=0)
    with pytest.raises(ConfigError):
        EventStore(tmp_path / "x", batch_size=10, max_buffer=5)
    with pytest.raises(ConfigError):
        EventStore(tmp_path / "x", flush_interval=0)
    assert not (tmp_path / "x").exists()
    made = EventStore(tmp_path / "x")
    assert "x" in repr(made)
    made.close()


def test_a_closed_store_never_reopens_its_database(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "observability.sqlite")
    store.emit("unit", "before")
    store.close()
    store.emit("unit", "after")  # dropped and counted, never raises
    assert store.stats().dropped >= 1
    with pytest.raises(ReliabilityError, match="closed"):
        store.query()
