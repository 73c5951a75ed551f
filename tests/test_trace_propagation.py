"""One trace across processes: W3C traceparent, run_process, MCP _meta."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import paios_reliability as pr
from paios_reliability._core.events import emit

HELPER = str(Path(__file__).with_name("_proc_liveness.py"))


def test_inject_and_extract_round_trip() -> None:
    assert pr.inject({}) == {}
    with pr.trace() as ctx:
        carrier = pr.inject({})
        assert carrier == {"traceparent": f"00-{ctx['trace_id']}-{ctx['span_id']}-01"}
    assert pr.extract(carrier) == {
        "trace_id": ctx["trace_id"],
        "parent_span_id": ctx["span_id"],
    }
    assert (
        pr.extract({"TraceParent": carrier["traceparent"]})["trace_id"]
        == ctx["trace_id"]
    )
    with pr.trace(**pr.extract(carrier)) as joined:
        assert joined["trace_id"] == ctx["trace_id"]
        assert joined["parent_span_id"] == ctx["span_id"]
        assert joined["span_id"] != ctx["span_id"]


@pytest.mark.parametrize(
    "value",
    [
        "",
        "00-" + "0" * 32 + "-" + "1" * 16 + "-01",  # all-zero trace id
        "00-" + "a" * 32 + "-" + "0" * 16 + "-01",  # all-zero span id
        "ff-" + "a" * 32 + "-" + "b" * 16 + "-01",  # forbidden version
        "00-" + "a" * 31 + "-" + "b" * 16 + "-01",
        "00-" + "g" * 32 + "-" + "b" * 16 + "-01",
        "00-" + "a" * 32 + "-" + "b" * 16 + "-01-extra",  # v00 has four fields
        "00-" + "a" * 32 + "-" + "b" * 16 + "-01" + " " * 600,
        None,
        42,
    ],
)
def test_extract_ignores_malformed_traceparent(value: object) -> None:
    assert pr.extract({"traceparent": value}) == {}


@given(st.text(max_size=80))
def test_extract_never_raises_on_arbitrary_text(value: str) -> None:
    found = pr.extract({"traceparent": value})
    if found:
        assert len(found["trace_id"]) == 32
        assert len(found["parent_span_id"]) == 16


def test_trace_joins_traceparent_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parent = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
    monkeypatch.setenv("TRACEPARENT", parent)
    with pr.trace() as ctx:
        assert (ctx["trace_id"], ctx["parent_span_id"]) == ("ab" * 16, "cd" * 8)


def test_run_process_children_get_traceparent() -> None:
    code = "import os; print(os.environ.get('TRACEPARENT', 'none'))"
    outside = pr.run_process(
        [sys.executable, "-c", code], capture_output=True, text=True
    )
    with pr.trace() as ctx:
        inside = pr.run_process(
            [sys.executable, "-c", code], capture_output=True, text=True, env={"X": "1"}
        )
    assert outside.stdout.strip() == os.environ.get("TRACEPARENT", "none")
    assert inside.stdout.strip() == f"00-{ctx['trace_id']}-{ctx['span_id']}-01"


def test_parent_span_id_needs_a_trace_id() -> None:
    with pytest.raises(ValueError, match="parent_span_id"):
        pr.trace(parent_span_id="cd" * 8)


def test_one_trace_id_in_the_events_of_three_processes(tmp_path: Path) -> None:
    pytest.importorskip("mcp")
    from mcp.client import Client
    from mcp.client.stdio import StdioServerParameters, stdio_client

    db = str(tmp_path / "events.sqlite")
    params = StdioServerParameters(command=sys.executable, args=[HELPER, "traced", db])

    async def call() -> str:
        async with Client(stdio_client(params), read_timeout_seconds=60) as client:
            with pr.trace(step="client") as ctx:
                emit("test", "client_called", level="info")
                result = await client.call_tool("spawn", {})
            assert not result.is_error, result
            return ctx["trace_id"]

    events = pr.EventStore(db, service="client")
    restore = events.record_library_events(min_level="info")
    try:
        trace_id = asyncio.run(call())
    finally:
        restore()
        events.close()
    store = pr.EventStore(db)
    try:
        found = store.query(trace_id=trace_id)
    finally:
        store.close()
    by_service = {(e.service, e.action) for e in found}
    assert {
        ("client", "client_called"),
        ("server", "server_tool_ran"),
        ("child", "child_ran"),
    } <= by_service
