"""The ``paios-reliability`` command.

One module per command group (``cli/<group>.py``), each with
``register(sub)`` adding its parsers with ``set_defaults(handler=...)``;
handlers return the exit code. Errors print one line on stderr, with a hint,
and exit with the catalog exit code of the error (0 on success; 10-49 by
family, see ``paios-reliability catalog``): the same kind of failure gives
the same code in every command.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Sequence
from typing import NoReturn

from ._common import EXIT_CODES_HELP, Handler

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """Usage errors: one line on stderr and exit code 10 (``USAGE_ERROR``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(
            10,
            f"{self.prog}: error: USAGE_ERROR: {message}"
            f" (hint: see {self.prog} --help)\n",
        )


def _version() -> str:
    import paios_reliability

    return str(paios_reliability.__version__)


class _VersionAction(argparse.Action):
    # argparse's own "version" action formats the text eagerly; this one
    # imports the package only when --version is actually given.
    def __init__(
        self, option_strings: Sequence[str], dest: str, **kwargs: object
    ) -> None:
        super().__init__(
            option_strings, dest, nargs=0, help="print the version and exit"
        )

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> NoReturn:
        print(_version())
        parser.exit(0)


def _parser() -> argparse.ArgumentParser:
    from . import (
        catalog,
        config,
        credentials,
        db,
        demo,
        doctor,
        events,
        health,
        heartbeat,
        locks,
        mcp,
        replay,
        report,
        runs,
        serve,
        service,
        status,
    )

    parser = _Parser(
        prog="paios-reliability",
        description="Reliability toolkit for the Python parts of an AI-agent system.",
        epilog="start with:\n  paios-reliability doctor\n  paios-reliability demo\n\n"
        + textwrap.fill(EXIT_CODES_HELP, width=78),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    doctor.register(sub)
    demo.register(sub)
    catalog.register(sub)
    db.register(sub)
    credentials.register(sub)
    config.register(sub)
    events.register(sub)
    health.register(sub)
    service.register(sub)
    heartbeat.register(sub)
    mcp.register(sub)
    status.register(sub)
    serve.register(sub)
    report.register(sub)
    locks.register(sub)
    runs.register(sub)
    replay.register(sub)
    from ._help import apply_help

    apply_help(parser)
    return parser


def _report(exc: BaseException) -> int:
    from .._core.taxonomy import classify, exit_code_for, redact_text
    from ._common import hint_for

    code = getattr(exc, "code", None)
    label = code if isinstance(code, str) else classify(exc).code
    try:
        text = redact_text(str(exc))
    except Exception:  # noqa: BLE001 - a broken __str__ still gets its line
        text = f"<unprintable {type(exc).__name__}>"
    # One line: a multi-line message would be cut apart by log collectors.
    text = " ".join(text.split())
    print(
        f"paios-reliability: error: {label}: {text} (hint: {hint_for(label)})",
        file=sys.stderr,
    )
    return exit_code_for(exc)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 10  # USAGE_ERROR
    try:
        status = handler(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: not an error of ours.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - one clear line, stable exit code
        return _report(exc)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
