"""trace() context propagation and configure_logging()."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import re
import subprocess
import sys
import textwrap
import threading
from collections.abc import Mapping

import pytest

import paios_reliability as pr
from paios_reliability._core.logging import _HANDLER_MARK

HEX16, HEX32 = re.compile(r"[0-9a-f]{16}"), re.compile(r"[0-9a-f]{32}")


def run_python(
    script: str, *, env_tty: bool = False
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result


# -- trace() -----------------------------------------------------------------------------


def test_outside_any_trace_the_context_is_empty() -> None:
    assert dict(pr.current_trace()) == {}


def test_a_top_level_trace_starts_a_new_trace() -> None:
    with pr.trace(run_id="r-1", attempt=2) as span:
        assert HEX32.fullmatch(span["trace_id"])
        assert HEX16.fullmatch(span["span_id"])
        assert "parent_span_id" not in span
        assert (span["run_id"], span["attempt"]) == (
            "r-1",
            "2",
        )  # values become strings
        assert pr.current_trace() == span
    assert dict(pr.current_trace()) == {}


def test_nesting_keeps_the_trace_and_chains_spans() -> None:
    with pr.trace(run_id="r-1") as outer:
        with pr.trace(step="fetch") as inner:
            with pr.trace() as innermost:
                assert innermost["trace_id"] == inner["trace_id"] == outer["trace_id"]
                assert innermost["parent_span_id"] == inner["span_id"]
                assert innermost["step"] == "fetch"
            assert inner["parent_span_id"] == outer["span_id"]
            assert (inner["run_id"], inner["step"]) == ("r-1", "fetch")
            assert len({outer["span_id"], inner["span_id"], innermost["span_id"]}) == 3
            assert pr.current_trace() == inner
        assert pr.current_trace() == outer
        assert "step" not in pr.current_trace()


def test_an_explicit_trace_id_joins_that_trace() -> None:
    incoming = "0af7651916cd43dd8448eb211c80319c"
    with pr.trace(trace_id=incoming) as span:
        assert span["trace_id"] == incoming
        with pr.trace() as child:
            assert child["trace_id"] == incoming
            assert child["parent_span_id"] == span["span_id"]


def test_the_context_is_read_only() -> None:
    with pr.trace() as span, pytest.raises(TypeError):
        span["trace_id"] = "x"  # type: ignore[index]


def test_reserved_keys_are_rejected() -> None:
    with pytest.raises(ValueError, match="trace_id"):
        pr.trace(span_id="x")
    with pytest.raises(ValueError, match="parent_span_id"):
        pr.trace(parent_span_id="x")


def test_the_context_is_restored_when_the_block_raises() -> None:
    with pytest.raises(KeyError), pr.trace():
        raise KeyError("k")
    assert dict(pr.current_trace()) == {}


def test_decorator_on_a_sync_function_gives_a_new_span_per_call() -> None:
    @pr.trace(tool="search")
    def handler(query: str) -> Mapping[str, str]:
        """Docstring kept."""
        return dict(pr.current_trace())

    with pr.trace(run_id="r-1") as outer:
        first, second = handler("a"), handler(query="b")

    assert handler.__name__ == "handler"
    assert handler.__doc__ == "Docstring kept."
    assert str(inspect.signature(handler)) == "(query: 'str') -> 'Mapping[str, str]'"
    assert first["span_id"] != second["span_id"]
    for ctx in (first, second):
        assert (ctx["trace_id"], ctx["parent_span_id"]) == (
            outer["trace_id"],
            outer["span_id"],
        )
        assert (ctx["tool"], ctx["run_id"]) == ("search", "r-1")
    # Top-level calls each start their own trace.
    assert handler("c")["trace_id"] != handler("d")["trace_id"]


async def test_decorator_on_an_async_function_gives_a_new_span_per_call() -> None:
    @pr.trace(tool="fetch")
    async def handler(n: int) -> Mapping[str, str]:
        await asyncio.sleep(0)
        return dict(pr.current_trace())

    assert inspect.iscoroutinefunction(handler)
    async with pr.trace() as outer:
        first, second = await handler(1), await handler(2)
        assert pr.current_trace() == outer
    assert first["span_id"] != second["span_id"]
    assert first["parent_span_id"] == second["parent_span_id"] == outer["span_id"]
    assert first["tool"] == "fetch"


async def test_concurrent_tasks_never_see_each_other() -> None:
    async def task(i: int) -> list[tuple[str, str]]:
        seen = []
        async with pr.trace(task=str(i)) as mine:
            for _ in range(5):
                await asyncio.sleep(0)  # let every other task run in between
                ctx = pr.current_trace()
                seen.append((ctx["task"], ctx["trace_id"]))
                assert ctx == mine
        assert dict(pr.current_trace()) == {}
        return seen

    results = await asyncio.gather(*(task(i) for i in range(50)))

    trace_ids = {seen[0][1] for seen in results}
    assert len(trace_ids) == 50
    for i, seen in enumerate(results):
        assert {s for s, _ in seen} == {str(i)}
        assert len({t for _, t in seen}) == 1


async def test_tasks_inherit_the_creating_context_but_not_later_changes() -> None:
    async with pr.trace(run_id="parent") as parent:
        child = asyncio.ensure_future(_read_after_yield())
        async with pr.trace(step="later"):
            ctx = await child
    assert ctx == parent


async def _read_after_yield() -> Mapping[str, str]:
    await asyncio.sleep(0)
    return pr.current_trace()


async def test_one_trace_object_entered_by_many_tasks_at_once() -> None:
    shared = pr.trace(component="worker")

    async def task() -> tuple[str, str]:
        async with shared as mine:
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            assert pr.current_trace() == mine
        assert dict(pr.current_trace()) == {}
        return mine["trace_id"], mine["span_id"]

    results = await asyncio.gather(*(task() for _ in range(20)))
    assert len(set(results)) == 20


def test_threads_never_see_each_other() -> None:
    barrier = threading.Barrier(8)
    results: dict[int, list[str]] = {}
    shared = pr.trace(component="thread")

    def worker(i: int) -> None:
        seen = []
        with pr.trace(thread=str(i)), shared:
            barrier.wait(timeout=10)
            for _ in range(100):
                seen.append(pr.current_trace()["thread"])  # noqa: PERF401 - read it each time
        seen.append(str(dict(pr.current_trace())))
        results[i] = seen

    with pr.trace(run_id="main"):
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)

    for i in range(8):
        assert results[i] == [str(i)] * 100 + [
            "{}"
        ]  # threads start with an empty context


def test_events_and_audit_records_carry_the_trace() -> None:
    from paios_reliability._core.events import emit
    from paios_reliability.testing import capture_events

    with pr.trace(run_id="r-5") as span, capture_events() as captured:
        emit("x", "y")
        record = pr.audit_event(TimeoutError())
    assert captured[0].trace == span
    assert (record["trace_id"], record["span_id"], record["run_id"]) == (
        span["trace_id"],
        span["span_id"],
        "r-5",
    )


# -- configure_logging() ------------------------------------------------------------------


def test_json_lines_on_stderr_with_trace_ids() -> None:
    result = run_python(
        """
        import logging, structlog
        import paios_reliability as pr
        pr.configure_logging(json=True, level="INFO")
        log = structlog.get_logger("app")
        with pr.trace(run_id="r-1") as span:
            log.info("tool_called", tool="search", hits=3)
            logging.getLogger("stdlib.module").warning("plain %s message", "stdlib")
            try:
                1 / 0
            except ZeroDivisionError:
                log.exception("failed")
        log.debug("hidden")
        print(span["trace_id"])
        """
    )
    trace_id = result.stdout.strip()
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert [line["event"] for line in lines] == [
        "tool_called",
        "plain stdlib message",
        "failed",
    ]
    first, second, third = lines
    assert (
        first["tool"],
        first["hits"],
        first["run_id"],
        first["level"],
        first["logger"],
    ) == ("search", 3, "r-1", "info", "app")
    assert (second["level"], second["logger"]) == ("warning", "stdlib.module")
    for line in lines:
        assert line["trace_id"] == trace_id
        assert HEX16.fullmatch(line["span_id"])
        assert line["timestamp"].endswith("Z")
    assert third["exception"][0]["exc_type"] == "ZeroDivisionError"


def test_text_output_is_readable() -> None:
    result = run_python(
        """
        import structlog
        import paios_reliability as pr
        pr.configure_logging(json=False)
        with pr.trace(run_id="r-1"):
            structlog.get_logger().warning("disk_low", free_mb=12)
        """
    )
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert "disk_low" in line
    assert "free_mb=12" in line
    assert "run_id=r-1" in line
    assert "warning" in line
    assert not line.lstrip().startswith("{")
    assert "\x1b[" not in line  # stderr is a pipe: no colours


def test_json_is_the_default_when_stderr_is_not_a_terminal() -> None:
    result = run_python(
        """
        import structlog
        import paios_reliability as pr
        pr.configure_logging()
        structlog.get_logger().info("hello")
        """
    )
    assert json.loads(result.stderr)["event"] == "hello"


def test_configuring_twice_does_not_duplicate_lines() -> None:
    result = run_python(
        """
        import logging
        import paios_reliability as pr
        pr.configure_logging(json=True)
        pr.configure_logging(json=True, level="DEBUG")
        logging.getLogger("x").debug("once")
        """
    )
    assert [json.loads(line)["event"] for line in result.stderr.splitlines()] == [
        "once"
    ]


def test_other_handlers_are_left_alone_and_the_restorer_puts_everything_back() -> None:
    import structlog

    root = logging.getLogger()
    before = (list(root.handlers), root.level, structlog.get_config())
    restore = pr.configure_logging(json=True, level="ERROR")
    ours = [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]
    assert len(ours) == 1
    assert root.level == logging.ERROR
    assert set(before[0]) <= set(root.handlers)  # pytest's own handlers are kept
    again = pr.configure_logging(json=False, level=15)
    assert len([h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]) == 1
    assert root.level == 15
    again()
    assert [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)] == ours
    restore()
    assert (list(root.handlers), root.level, structlog.get_config()) == before


@pytest.mark.parametrize("level", ["LOUD", "", "info-ish"])
def test_unknown_level_is_a_value_error(level: str) -> None:
    with pytest.raises(ValueError, match="unknown level"):
        pr.configure_logging(level=level)


def test_level_names_are_case_insensitive() -> None:
    root = logging.getLogger()
    with pr.configure_logging(json=True, level="warning"):
        assert root.level == logging.WARNING


def test_stdout_stays_clean_for_stdio_servers() -> None:
    result = run_python(
        """
        import logging
        import paios_reliability as pr
        from paios_reliability._core.events import emit
        pr.configure_logging(json=True, level="DEBUG")
        emit("server", "started", subject="mcp")
        logging.getLogger("mcp").error("boom")
        """
    )
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 2


def test_exception_leaving_a_span_remembers_that_span() -> None:
    from paios_reliability import trace

    with (
        pytest.raises(RuntimeError) as info,
        trace(run_id="outer"),
        trace(step="inner") as inner,
    ):
        raise RuntimeError("boom")
    remembered = info.value._paios_trace  # type: ignore[attr-defined]
    assert remembered["span_id"] == inner["span_id"]
    assert remembered["step"] == "inner"
