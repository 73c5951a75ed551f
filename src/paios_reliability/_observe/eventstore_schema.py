"""The event store's SQLite schema (tables, indexes, version, insert) and its event levels."""

from __future__ import annotations

from typing import Literal

__all__ = ["LEVELS", "Level"]


Level = Literal["debug", "info", "warning", "error", "critical"]
LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error", "critical")
_LEVELNO = {name: 10 * (i + 1) for i, name in enumerate(LEVELS)}
_SCHEMA_VERSION = 1

# events_errors is partial: only error rows pay for it, and the status
# command groups the errors of a window without scanning every row.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    trace_id TEXT,
    span_id TEXT,
    service TEXT,
    category TEXT NOT NULL,
    action TEXT NOT NULL,
    level TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
CREATE INDEX IF NOT EXISTS events_trace ON events (trace_id, ts)
    WHERE trace_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_category ON events (category, action, ts);
CREATE INDEX IF NOT EXISTS events_errors ON events (ts)
    WHERE level IN ('error', 'critical');
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    service TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    boot_id TEXT,
    proc_start TEXT,
    started REAL NOT NULL,
    ended REAL,
    status TEXT NOT NULL,
    fault_path TEXT,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS runs_service ON runs (service, status);
"""

_INSERT = (
    "INSERT INTO events (ts, trace_id, span_id, service, category, action, level, "
    "metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
