"""``paios-reliability demo``: a short guided run on embedded defaults.

Everything lives in a temporary directory (SQLite for the event store, JSON
files for config and credentials); no Redis, no network. The output is plain
ASCII with no colour, so it reads the same in a terminal, a log file or a CI
transcript. ``fast=True`` replaces every real wait with fake time
(:class:`~paios_reliability.testing.FakeClock` plus ``set_testing``) so the
whole run takes a second or two - that is what the test suite uses.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from .._observe.eventstore import EventStore
    from ..testing import FakeClock

__all__ = ["register", "run_demo"]

#: Seconds the demo breaker stays open before it lets a probe through.
RESET_TIMEOUT = 2.0
#: Consecutive failures that open the demo breaker.
FAILURE_THRESHOLD = 3
#: Uses of a credential recorded in the throttle section.
USES = 1000

SECTIONS = (
    "Retries absorb transient faults",
    "The breaker opens; the fallback answers",
    "The breaker recovers through a half-open probe",
    "Atomic config save with rollback",
    "Credential usage throttle",
    "What the event store recorded",
)


class _Demo:
    """Output helpers and the pass/fail tally of one run."""

    def __init__(self, out: TextIO, clock: FakeClock | None) -> None:
        self.out = out
        self.clock = clock
        self.failures: list[str] = []
        self.section = 0

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def heading(self) -> None:
        title = SECTIONS[self.section]
        self.section += 1
        self.say()
        self.say(f"[{self.section}/{len(SECTIONS)}] {title}")
        self.say("-" * (len(title) + 6))

    def expect(self, ok: bool, what: str) -> None:
        """Print one checked claim; remember it when it did not hold."""
        self.say(f"    {'ok  ' if ok else 'FAIL'}  {what}")
        if not ok:
            self.failures.append(what)

    def wait(self, seconds: float, until: Callable[[], bool], label: str) -> None:
        """Wait up to ``seconds`` (+1 s slack) until ``until()``, printing dots."""
        step = 0.25
        self.out.write(f"    {label} ")
        self.out.flush()
        waited = 0.0
        while waited < seconds + 1.0:
            if waited >= seconds and until():
                break
            if self.clock is not None:
                self.clock.advance(step)
            else:
                time.sleep(step)
            waited += step
            self.out.write(".")
            self.out.flush()
        self.out.write(f" {waited:.2f} s\n")
        self.out.flush()


def run_demo(out: TextIO, *, fast: bool = False, keep: str | Path | None = None) -> int:
    """Run the guided demo, writing a readable transcript to ``out``.

    Args:
        out: Where the transcript goes (``sys.stdout`` from the CLI).
        fast: Skip every real wait (fake time); used by the test suite.
        keep: Work in this directory (created; it must be empty) and leave
            the files there, so the event store can be queried afterwards.
            ``None``: a temporary directory, deleted at the end.

    Returns:
        0 when every step behaved as shown, 1 otherwise.

    Raises:
        ConfigError: ``USAGE_ERROR`` when ``keep`` is a file or a directory
            that is not empty (the demo's counts assume a fresh store).
    """
    if keep is not None:
        kept = _prepare_keep(Path(keep))
        return _run_quietly(out, fast, contextlib.nullcontext(str(kept)), kept=True)
    return _run_quietly(
        out, fast, tempfile.TemporaryDirectory(prefix="paios-demo-"), kept=False
    )


def _prepare_keep(path: Path) -> Path:
    from .._core.exceptions import ConfigError

    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ConfigError(
            f"--keep {str(path)!r} must be a new or empty directory", code="USAGE_ERROR"
        )
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def _run_quietly(
    out: TextIO,
    fast: bool,
    workdir: contextlib.AbstractContextManager[str],
    *,
    kept: bool,
) -> int:
    import logging

    from .._core.event_log import flush_log_summary
    from ..testing import FakeClock, set_testing

    # The failures below are staged: keep Python's last-resort handler from
    # printing their warnings and tracebacks over the transcript (the event
    # store records them). Logging the caller configured is left alone.
    logger = logging.getLogger("paios_reliability")
    quiet = logging.NullHandler()
    if not logging.getLogger().handlers and not logger.handlers:
        logger.addHandler(quiet)
    try:
        with workdir as tmp:
            if not fast:
                return _run(out, Path(tmp), None, kept)
            clock = FakeClock(wall=time.time())
            with clock.install(), set_testing(True):
                return _run(out, Path(tmp), clock, kept)
    finally:
        # Counts of staged failures are written now, while the quiet handler
        # is still in place, not at exit over the finished transcript.
        flush_log_summary()
        logger.removeHandler(quiet)


def _run(out: TextIO, tmp: Path, clock: FakeClock | None, kept: bool) -> int:
    from .. import EventStore

    demo = _Demo(out, clock)
    demo.say("paios-reliability demo")
    demo.say(
        f"working directory: {tmp}  "
        + ("(kept)" if kept else "(deleted at the end; --keep DIR keeps it)")
    )
    demo.say("mode: " + ("fast (fake time, no real waits)" if clock else "real time"))

    store = EventStore(tmp / "observability.sqlite", service="demo")
    restore_hook = store.record_library_events(min_level="debug")
    try:
        _breaker_sections(demo)

        demo.heading()
        _config_section(demo, tmp)

        demo.heading()
        _credentials_section(demo, tmp)

        demo.heading()
        _events_section(demo, store, tmp if kept else None)
    finally:
        restore_hook()
        store.close()

    demo.say()
    if demo.failures:
        demo.say(f"demo FAILED: {len(demo.failures)} step(s) did not behave as shown:")
        for what in demo.failures:
            demo.say(f"  - {what}")
        return 1
    demo.say("demo finished: every step behaved as shown.")
    return 0


def _breaker_sections(demo: _Demo) -> None:
    from .. import CircuitBreaker, resilient

    # -- a flaky downstream behind an MCP-style tool handler ------------
    downstream: dict[str, Any] = {"calls": 0, "failures_left": 0, "down": False}

    def call_downstream(query: str) -> str:
        downstream["calls"] += 1
        if downstream["down"]:
            raise ConnectionRefusedError("search backend down")
        if downstream["failures_left"] > 0:
            downstream["failures_left"] -= 1
            raise ConnectionResetError("connection reset by peer")
        return f"3 results for {query!r}"

    breaker = CircuitBreaker(
        "search-backend",
        failure_threshold=FAILURE_THRESHOLD,
        reset_timeout=RESET_TIMEOUT,
    )

    @resilient(
        name="tools.search",
        timeout=0.5,
        retry={"attempts": 3, "deadline": 1.0, "wait_initial": 0.05},
        breaker=breaker,
        fallback=lambda exc: (
            f"(cached answer; live search unavailable: {type(exc).__name__})"
        ),
    )
    def search(query: str) -> str:
        """An MCP tool handler: search the notes."""
        return call_downstream(query)

    demo.heading()
    demo.say("    The backend resets the connection twice, then answers.")
    downstream["failures_left"] = 2
    answer = search("reliability")
    demo.say(f"    search('reliability') -> {answer}")
    demo.expect(answer.startswith("3 results"), "the caller got the real answer")
    demo.expect(
        downstream["calls"] == 3,
        f"3 attempts reached the backend ({downstream['calls']})",
    )
    demo.expect(breaker.state == "closed", f"breaker is {breaker.state}")

    demo.heading()
    demo.say("    The backend goes down for good.")
    downstream.update(calls=0, down=True)
    answer = search("outage")
    demo.say(f"    search('outage') -> {answer}")
    demo.expect(answer.startswith("(cached answer"), "the fallback answered")
    demo.expect(
        breaker.state == "open",
        f"breaker is {breaker.state} after {FAILURE_THRESHOLD} failures in a row",
    )
    before = downstream["calls"]
    answer = search("while open")
    demo.say(f"    search('while open') -> {answer}")
    demo.expect(
        downstream["calls"] == before,
        "while open, no call reached the backend (failed fast)",
    )

    demo.heading()
    demo.say("    The backend comes back.")
    downstream["down"] = False
    demo.wait(
        RESET_TIMEOUT,
        lambda: breaker.state != "open",
        f"waiting for the reset timeout ({RESET_TIMEOUT:g} s)",
    )
    demo.expect(breaker.state == "half_open", f"breaker is {breaker.state}")
    answer = search("after recovery")
    demo.say(f"    search('after recovery') -> {answer}")
    demo.expect(answer.startswith("3 results"), "the probe call succeeded")
    demo.expect(breaker.state == "closed", f"breaker is {breaker.state} again")


def _config_section(demo: _Demo, tmp: Path) -> None:
    from pydantic import BaseModel, ConfigDict, Field

    from .. import ConfigError, ConfigFile

    class ToolSettings(BaseModel):
        model_config = ConfigDict(extra="forbid")
        endpoint: str
        max_results: int = Field(default=10, ge=1, le=100)

    path = tmp / "tool-settings.json"
    config = ConfigFile(path, ToolSettings, backups=5)
    config.save(ToolSettings(endpoint="http://127.0.0.1:8080"))
    result = config.save(ToolSettings(endpoint="http://127.0.0.1:8080", max_results=25))
    demo.say("    saved max_results=25; the diff:")
    for line in result.diff.splitlines():
        if line.startswith(("-  ", "+  ")):
            demo.say(f"      {line}")
    demo.expect(result.backup is not None, "the previous version was kept as a backup")
    demo.expect(
        not config.save(config.load()).changed, "saving the same value writes nothing"
    )

    before = path.read_bytes()
    try:
        config.save({"endpoint": "http://127.0.0.1:8080", "max_results": 0})
    except ConfigError as exc:
        field, message = exc.errors[0]
        demo.say(f"    an invalid save is refused: {field}: {message}")
        refused = True
    else:
        refused = False
    demo.expect(refused and path.read_bytes() == before, "the file was not touched")

    config.rollback()
    restored = config.load().max_results
    demo.say(f"    rollback() -> max_results={restored}")
    demo.expect(restored == 10, "rollback restored the previous version")


def _credentials_section(demo: _Demo, tmp: Path) -> None:
    from .. import Credential, CredentialStore

    path = tmp / "auth.json"
    creds = CredentialStore(path, create=True)
    creds.set(
        "search-backend",
        Credential.model_validate({"provider": "search", "token": "demo-secret-token"}),
    )
    writes = 0
    last = path.stat().st_ino, path.stat().st_mtime_ns
    for _ in range(USES):
        creds.record_usage("search-backend")
        now = path.stat().st_ino, path.stat().st_mtime_ns
        writes += now != last
        last = now
    demo.say(f"    {USES} uses recorded -> {writes} file write(s)")
    demo.expect(writes == 1, "usage is throttled to one write per 5 minutes")
    cred = creds.get("search-backend")
    demo.expect(cred.last_used is not None, "last_used is stored")
    demo.say(f"    the token prints as {cred.token}")
    demo.expect("demo-secret-token" not in repr(cred), "the secret never shows in repr")
    creds.close()


def _events_section(demo: _Demo, store: EventStore, kept: Path | None) -> None:
    events = store.query(limit=10_000)
    counts = Counter(f"{e.category}.{e.action}" for e in events)
    demo.say(f"    {len(events)} events in observability.sqlite; by kind:")
    for name, n in sorted(counts.items()):
        demo.say(f"      {n:5d}  {name}")
    demo.say(
        "    the breaker's story, query(category='circuit_breaker', level='info'):"
    )
    story = store.query(category="circuit_breaker", level="info")
    for event in story:
        reason = event.metadata.get("reason", "")
        demo.say(f"      {event.action:<12} {reason}".rstrip())
    actions = [e.action for e in story]
    demo.expect(
        actions == ["opened", "half_opened", "closed"],
        "opened -> half_opened -> closed",
    )
    demo.expect(counts["retry.scheduled"] >= 2, "the retries were recorded")
    demo.expect(counts["config_file.rolled_back"] == 1, "the rollback was recorded")
    if kept is not None:
        demo.say(
            "    from a shell: paios-reliability events query "
            f"{shlex.quote(str(kept / 'observability.sqlite'))} --since 1h"
        )
    else:
        demo.say(
            "    the store was in a temporary directory; to query it from a shell, run"
        )
        demo.say("      paios-reliability demo --keep paios-demo")
        demo.say(
            "      paios-reliability events query paios-demo/observability.sqlite --since 1h"
        )


def _cmd_demo(args: argparse.Namespace) -> int:
    import sys

    return run_demo(sys.stdout, fast=args.fast, keep=args.keep)


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the ``demo`` command."""
    from ._common import add_command

    demo = add_command(
        sub,
        "demo",
        help="guided run on embedded defaults (temp dir, no Redis)",
        description=(
            "A short guided tour: a circuit breaker opens and recovers, a bad "
            "config write rolls back, a credential is throttled, and the event "
            "store tells the story. Everything lives in a temporary directory "
            "(deleted at the end unless --keep is given); no Redis, no network. "
            "Takes about 3 seconds (one real 2-second wait; --fast skips it)."
        ),
        examples=[
            "paios-reliability demo",
            "paios-reliability demo --fast",
            "paios-reliability demo --keep paios-demo",
        ],
        handler=_cmd_demo,
    )
    demo.add_argument("--fast", action="store_true", help="skip the real waits")
    demo.add_argument(
        "--keep",
        metavar="DIR",
        help="work in DIR (new or empty) and keep its files for querying",
    )
