"""Descriptions and examples of the command groups that build bare parsers.

Every command's ``--help`` has a description, examples and the exit codes
(tests/test_cli.py checks it); these groups declare their parsers with
``add_parser`` and get that text here, applied once the parser is built.
"""

from __future__ import annotations

import argparse

from ._common import document

__all__ = ["apply_help"]

_HELP: dict[tuple[str, ...], tuple[str, tuple[str, ...]]] = {
    ("heartbeat",): (
        "A dead man's switch for scheduled jobs: a job beats when it ran, a "
        "check reports a missed beat once, across processes.",
        ("paios-reliability heartbeat beat nightly --db state.sqlite --every 86400",),
    ),
    ("heartbeat", "beat"): (
        "Record that the job NAME ran now.",
        ("paios-reliability heartbeat beat nightly --db state.sqlite --every 86400",),
    ),
    ("heartbeat", "check"): (
        "Exit 1 when NAME missed its beat; the first check to see a miss "
        "reports it (event and a line on stderr), later checks do not.",
        ("paios-reliability heartbeat check nightly --db state.sqlite --every 86400",),
    ),
    ("mcp",): (
        "Stdio MCP servers started with run_stdio register themselves; find "
        "and end the ones whose client is gone.",
        ("paios-reliability mcp sweep", "paios-reliability mcp sweep --kill"),
    ),
    ("mcp", "sweep"): (
        "List registered servers whose client has died; with --kill, end them "
        "(SIGTERM, then SIGKILL after the grace). A process that did not "
        "register is never touched.",
        ("paios-reliability mcp sweep --json", "paios-reliability mcp sweep --kill"),
    ),
    ("serve",): (
        "Serve the health probes, the status API, an event stream and the live "
        "dashboard over HTTP. Binds 127.0.0.1 unless told otherwise; any other "
        "bind needs a token. Read-only.",
        (
            "paios-reliability serve",
            "paios-reliability serve --event-store events.sqlite --port 8765",
        ),
    ),
    ("report",): (
        "Reports over the event stores.",
        ("paios-reliability report daily --event-store events.sqlite",),
    ),
    ("report", "daily"): (
        "The last 24 hours as Markdown (and a self-contained HTML page): alerts, "
        "errors by code, breaker openings, slowest operations, heartbeats, "
        "credentials and leaks.",
        (
            "paios-reliability report daily --event-store events.sqlite",
            "paios-reliability report daily --html report.html",
        ),
    ),
    ("locks",): (
        "Leases held in a state store.",
        ("paios-reliability locks list --store state.sqlite",),
    ),
    ("locks", "list"): (
        "List the live leases: key, holder, fencing token and expiry.",
        ("paios-reliability locks list --store state.sqlite",),
    ),
    ("locks", "release"): (
        "Free a lease held by a dead holder. Needs --force; prints the holder "
        "and token it freed; fencing tokens keep growing.",
        ("paios-reliability locks release jobs:nightly --force --store state.sqlite",),
    ),
    ("runs",): (
        "Checkpointed runs: list them, show one, prepare a resume.",
        ("paios-reliability runs list --store runs.sqlite",),
    ),
    ("runs", "list"): (
        "List the runs in a checkpoint store.",
        ("paios-reliability runs list --store runs.sqlite",),
    ),
    ("runs", "show"): (
        "Show one run's steps and verify their checksums.",
        ("paios-reliability runs show RUN_ID --store runs.sqlite",),
    ),
    ("runs", "resume"): (
        "Prepare a run to resume (optionally from a step or from scratch) and "
        "print its plan; the worker that owns the steps follows it.",
        ("paios-reliability runs resume RUN_ID --store runs.sqlite --skip-to fetch",),
    ),
    ("replay",): (
        "Golden runs: replay a recorded run and compare stable hashes.",
        ("paios-reliability replay check nightly.golden --target myapp.jobs:nightly",),
    ),
    ("replay", "check"): (
        "Replay the function --target against the recorded GOLDEN file and "
        "exit non-zero when a stable hash differs (--record writes GOLDEN).",
        (
            "paios-reliability replay check nightly.golden --target myapp.jobs:nightly",
            "paios-reliability replay check nightly.golden --target myapp.jobs:nightly "
            "--processes 2",
        ),
    ),
}


def _children(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def apply_help(parser: argparse.ArgumentParser) -> None:
    """Document every command listed above in the built ``parser``."""
    for path, (description, examples) in _HELP.items():
        target = parser
        for name in path:
            target = _children(target)[name]
        document(target, description, examples)
