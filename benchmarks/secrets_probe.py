"""Count secrets that leave the process: a fixed set of scenarios, one number.

Run: ``python benchmarks/secrets_probe.py [--verbose] [--json]``

Each scenario plants known secrets (one of every common token shape, and
shapeless values under secret key names) in function arguments and locals,
env-like mappings, argv lists, URLs, metadata and exception text, drives one
part of the library, and captures everything that part writes: log lines of
the default event hook (message, traceback, notes), ``configure_logging()``
output in text and JSON, ``Event.to_dict()`` and ``repr(event)``,
``audit_event()``, retry notes, the crash handler's records and stderr (in a
subprocess) and the CLI's final error line.

A leak is one planted secret found in one output channel of one scenario.
The goal is zero; ``tests/test_secrets.py`` runs this script and asserts it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import subprocess
import sys
import tempfile
import textwrap
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paios_reliability as pr
from paios_reliability.testing import capture_events, set_testing

# One of every family; none is a real credential.
SECRETS: dict[str, str] = {
    "openai": "sk-proj-Q7pXv2LmN8rT4wZ6yB1cD3eF",
    "anthropic": "sk-ant-api03-Hk5Jm7Np9Qr2St4Uv6Wx8Yz0",
    "github": "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
    "github_pat": "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNO",
    "slack": "xoxb-2048-4096-Zq8Wn3Lk5Pj7",
    "aws": "AKIAQ3EGRZ7PLEXAMPLE",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwcm9iZSJ9.c2lnbmF0dXJlLXByb2Jl",
    "url_password": "Url-Pa55word-7",
    "bearer": "opaque-bearer-91x7",
    "cli_password": "Cli-Pa55-eq",
    "cli_token": "Cli-T0ken-sp",
    "query": "QryKey-5150",
    "client_secret": "Shapeless-Client-Value",
    "env_password": "Shapeless-Env-Value",
    "local": "sk-LOCAL-SECRET-4242",
}
S = SECRETS
URL = f"https://alice:{S['url_password']}@db.internal/app?api_key={S['query']}&page=2"
ARGV = ["deploy", f"--password={S['cli_password']}", "--token", S["cli_token"]]
ENV = {"PATH": "/usr/bin", "DB_PASSWORD": S["env_password"], "GH": S["github"]}
METADATA = {
    "client_secret": S["client_secret"],
    "headers": {"Authorization": f"Bearer {S['bearer']}"},
    "url": URL,
    "argv": ARGV,
    "env": ENV,
    "max_tokens": 123,
}
MESSAGE = (
    f"backend reset: key={S['openai']} anthropic {S['anthropic']} via {URL} "
    f"argv={ARGV!r} slack {S['slack']} aws {S['aws']} jwt {S['jwt']} "
    f"pat {S['github_pat']} Authorization: Bearer {S['bearer']}"
)


class BackendError(ConnectionResetError):
    """A transient error whose text carries every shape of secret."""


def failing_call(api_key: str, env: dict[str, str], argv: list[str]) -> None:
    """Fails with secrets in its arguments, its locals and its message."""
    local_token = S["local"]  # noqa: F841 - a frame local that must not be shown
    raise BackendError(MESSAGE)


@contextlib.contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """Every record of any logger, formatted by a plain stdlib Formatter."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(
        logging.Formatter("%(levelname)s %(name)s %(message)s %(paios_event)s")
    )

    class Fill(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            if not hasattr(record, "paios_event"):
                record.paios_event = ""
            return True

    handler.addFilter(Fill())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


@contextlib.contextmanager
def stderr_to(buffer: io.StringIO) -> Iterator[None]:
    old = sys.stderr
    sys.stderr = buffer
    try:
        yield
    finally:
        sys.stderr = old


def events_text(events: Any) -> str:
    parts = []
    for event in events:
        parts.append(json.dumps(event.to_dict(), default=str))
        parts.append(repr(event))
    return "\n".join(parts)


# -- scenarios: each returns {channel: captured text} ----------------------------


def scenario_retry() -> dict[str, str]:
    @pr.retry(attempts=3)
    def call(api_key: str, env: dict[str, str], argv: list[str]) -> None:
        failing_call(api_key, env, argv)

    notes = ""
    with captured_logs() as logs, capture_events() as events, set_testing(True):
        try:
            call(S["local"], ENV, ARGV)
        except BackendError as exc:
            notes = "\n".join(getattr(exc, "__notes__", []))
    return {"log": logs.getvalue(), "notes": notes, "events": events_text(events)}


def scenario_error_boundary() -> dict[str, str]:
    @pr.error_boundary(fallback=None)
    def handler(api_key: str, env: dict[str, str], argv: list[str]) -> None:
        failing_call(api_key, env, argv)

    with captured_logs() as logs, capture_events() as events:
        handler(S["local"], ENV, ARGV)
    return {"log": logs.getvalue(), "events": events_text(events)}


def scenario_resilient() -> dict[str, str]:
    @pr.resilient(name="tool", retry={"attempts": 2}, fallback="fallback")
    def tool(api_key: str, env: dict[str, str], argv: list[str]) -> str:
        failing_call(api_key, env, argv)
        return "ok"

    with captured_logs() as logs, capture_events() as events, set_testing(True):
        tool(S["local"], ENV, ARGV)
    return {"log": logs.getvalue(), "events": events_text(events)}


def scenario_last_resort() -> dict[str, str]:
    """No logging configured at all: stdlib's last-resort handler prints."""
    root = logging.getLogger()
    saved = root.handlers[:]
    for handler in saved:
        root.removeHandler(handler)
    buffer = io.StringIO()
    try:

        @pr.error_boundary(fallback=None)
        def handler(api_key: str) -> None:
            failing_call(api_key, ENV, ARGV)

        with stderr_to(buffer):
            handler(S["local"])
    finally:
        for handler in saved:
            root.addHandler(handler)
    return {"stderr": buffer.getvalue()}


def _configured(json_mode: bool) -> dict[str, str]:
    import structlog

    buffer = io.StringIO()
    with stderr_to(buffer):
        restore = pr.configure_logging(json=json_mode, level="DEBUG")
    try:

        @pr.error_boundary(fallback=None)
        def handler(api_key: str) -> None:
            failing_call(api_key, ENV, ARGV)

        handler(S["local"])
        log = structlog.get_logger("agent")
        try:
            failing_call(S["local"], ENV, ARGV)
        except BackendError:
            log.exception("tool_failed", url=URL, env=ENV, argv=ARGV)
        logging.getLogger("thirdparty").warning("connecting to %s", URL)
    finally:
        restore()
    return {"stderr": buffer.getvalue()}


def scenario_configure_logging_json() -> dict[str, str]:
    return _configured(json_mode=True)


def scenario_configure_logging_text() -> dict[str, str]:
    return _configured(json_mode=False)


def scenario_audit_event() -> dict[str, str]:
    try:
        failing_call(S["local"], ENV, ARGV)
    except BackendError as exc:
        record = pr.audit_event(exc, **METADATA)
    return {"audit": json.dumps(record)}


def scenario_event() -> dict[str, str]:
    from paios_reliability._core.events import emit

    with captured_logs() as logs, capture_events() as events:
        try:
            failing_call(S["local"], ENV, ARGV)
        except BackendError as exc:
            emit("probe", "failed", level="error", subject=URL, exc=exc, **METADATA)
    return {"log": logs.getvalue(), "events": events_text(events)}


CRASH_SCRIPT = """
import sys
import paios_reliability as pr
sys.path.insert(0, {probe_dir!r})
from secrets_probe import ARGV, ENV, S, failing_call

store = pr.EventStore({db!r})
pr.install_crash_handler(store, service="probe")
failing_call(S["local"], ENV, ARGV)
"""


def scenario_crash_handler() -> dict[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "observability.sqlite")
        script = CRASH_SCRIPT.format(probe_dir=str(Path(__file__).parent), db=db)
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(script)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        store = pr.EventStore(db)
        try:
            records = store.query(category="crash", limit=50)
            stored = json.dumps([dict(r.metadata) for r in records], default=str)
        finally:
            store.close()
    if not records:
        raise RuntimeError(f"the crash was not recorded: {proc.stderr[-2000:]}")
    return {"store": stored, "stderr": proc.stderr, "stdout": proc.stdout}


CLI_MODULE = """
import sys
sys.path.insert(0, {probe_dir!r})
from secrets_probe import ARGV, ENV, S, failing_call


def registry():
    failing_call(S["local"], ENV, ARGV)
"""


def scenario_cli() -> dict[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "probe_registry.py").write_text(
            CLI_MODULE.format(probe_dir=str(Path(__file__).parent)), encoding="utf-8"
        )
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "paios_reliability",
                "health",
                "--registry",
                "probe_registry:registry",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=tmp,
        )
    if proc.returncode == 0:
        raise RuntimeError("the CLI scenario did not fail")
    return {"stderr": proc.stderr, "stdout": proc.stdout}


SCENARIOS: dict[str, Callable[[], dict[str, str]]] = {
    "retry": scenario_retry,
    "error_boundary": scenario_error_boundary,
    "resilient": scenario_resilient,
    "last_resort_stderr": scenario_last_resort,
    "configure_logging_json": scenario_configure_logging_json,
    "configure_logging_text": scenario_configure_logging_text,
    "audit_event": scenario_audit_event,
    "event": scenario_event,
    "crash_handler": scenario_crash_handler,
    "cli": scenario_cli,
}


def find_leaks() -> list[tuple[str, str, str]]:
    """``(scenario, channel, secret family)`` for every secret found."""
    # Every scenario must really write its lines: a log line summarised away
    # as a repeat would hide a leak instead of proving there is none.
    set_log_summary = getattr(pr, "set_log_summary", None)
    if set_log_summary is not None:
        set_log_summary(None)
    leaks: list[tuple[str, str, str]] = []
    for name, scenario in SCENARIOS.items():
        try:
            channels = scenario()
        except Exception:
            # A scenario that cannot run proves nothing: say so loudly.
            raise RuntimeError(
                f"scenario {name} failed:\n{traceback.format_exc()}"
            ) from None
        for channel, text in channels.items():
            leaks.extend(
                (name, channel, family)
                for family, secret in SECRETS.items()
                if secret in text
            )
    return leaks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="list every leak")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    leaks = find_leaks()
    if args.json:
        print(json.dumps({"leaks": len(leaks), "found": leaks}))
        return 0
    by_scenario: dict[str, int] = dict.fromkeys(SCENARIOS, 0)
    for scenario, channel, family in leaks:
        by_scenario[scenario] += 1
        if args.verbose:
            print(f"LEAK {scenario:<24} {channel:<8} {family}")
    for scenario, count in by_scenario.items():
        print(f"{scenario:<24} {count:>3}")
    print(f"{'total leaks':<24} {len(leaks):>3}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
