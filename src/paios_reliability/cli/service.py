"""``paios-reliability service``: service unit files."""

from __future__ import annotations

import argparse
import os
import shutil
from typing import Any

from ._common import add_command, add_group, emit

__all__ = ["register"]


def _cmd_service_render(args: argparse.Namespace) -> int:
    from .._ops.service import render_command

    program = list(args.program)
    if program and program[0] == "--":
        program = program[1:]
    if program and not os.path.isabs(program[0]):
        # Operators type `python`; a unit needs the absolute path it resolves to.
        found = shutil.which(program[0])
        if found is not None:
            program[0] = found
    return emit(
        render_command(
            args.kind,
            program,
            label=args.label,
            description=args.description,
            working_directory=args.workdir,
            environment=args.env or (),
            stdout_path=args.stdout,
            stderr_path=args.stderr,
            restart=args.restart,
            user=args.user,
        )
    )


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the ``service`` command group (``service render``)."""
    service_sub = add_group(
        sub,
        "service",
        help="service unit files",
        description="Write the files that make a program a supervised service.",
        examples=[
            "paios-reliability service render systemd --label myapp -- /usr/bin/python3 -m myapp"
        ],
    )
    render = add_command(
        service_sub,
        "render",
        help="print a launchd plist or systemd unit",
        description=(
            "Print a launchd plist or a systemd unit that runs PROGRAM with a "
            "restart policy, a working directory, environment and log paths. "
            "A PROGRAM that is not an absolute path is looked up on PATH."
        ),
        examples=[
            "paios-reliability service render systemd --label myapp -- /usr/bin/python3 -m myapp",
            "paios-reliability service render launchd --label com.example.myapp --stdout /tmp/myapp.log -- /usr/bin/python3 -m myapp",
        ],
        handler=_cmd_service_render,
    )
    render.add_argument("kind", choices=["launchd", "systemd"], help="the format")
    render.add_argument("--label", required=True, help="service label / unit name")
    render.add_argument("--description", help="one line shown by the supervisor")
    render.add_argument("--workdir", help="working directory")
    render.add_argument(
        "--env", action="append", metavar="KEY=VALUE", help="environment (repeatable)"
    )
    render.add_argument("--stdout", help="stdout log path")
    render.add_argument("--stderr", help="stderr log path")
    render.add_argument(
        "--restart",
        default="on-failure",
        choices=["on-failure", "always", "no"],
        help="when the supervisor restarts it (default: on-failure)",
    )
    render.add_argument("--user", help="run as this user")
    render.add_argument("program", nargs="+", help="-- PROGRAM ARGS...")
