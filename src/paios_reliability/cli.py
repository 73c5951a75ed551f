"""The ``paios-reliability`` command.

Errors print one line on stderr and exit with :func:`exit_code_for` of the
error (0 on success; 10-49 by family, see ``paios-reliability catalog``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

__all__ = ["main"]

Handler = Callable[[argparse.Namespace], int]


def _cmd_doctor(args: argparse.Namespace) -> int:
    from ._doctor import render_table, run_checks

    only = frozenset(args.check) if args.check else None
    results = run_checks(only)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "check": r.name,
                        "ok": r.ok,
                        "detail": r.detail,
                        "seconds": round(r.seconds, 4),
                    }
                    for r in results
                ],
                indent=2,
            )
        )
    else:
        print(render_table(results))
    failed = [r for r in results if not r.ok]
    if not failed:
        return 0
    from ._taxonomy import exit_code_for

    return exit_code_for(failed[0].error) or 1


def _cmd_catalog(args: argparse.Namespace) -> int:
    from ._exceptions import ConfigError
    from ._taxonomy import CATALOG

    entries = list(CATALOG)
    if args.code:
        wanted = {c.upper() for c in args.code}
        unknown = sorted(wanted - {e.code for e in entries})
        if unknown:
            raise ConfigError(
                f"unknown error code(s): {', '.join(unknown)}", code="USAGE_ERROR"
            )
        entries = [e for e in entries if e.code in wanted]
    if args.markdown:
        print(CATALOG.to_markdown(), end="")
    elif args.json:
        print(
            json.dumps(
                [
                    {
                        "code": e.code,
                        "kind": e.kind,
                        "exit_code": e.exit_code,
                        "recovery": e.recovery,
                        "summary": e.summary,
                    }
                    for e in entries
                ],
                indent=2,
            )
        )
    else:
        width = max(len(e.code) for e in entries)
        for e in sorted(entries, key=lambda e: (e.exit_code, e.code)):
            print(
                f"{e.exit_code:>3}  {e.code.ljust(width)}  {e.kind:<9}  {e.recovery:<19}  {e.summary}"
            )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paios-reliability",
        description="Reliability toolkit for the Python parts of an AI-agent system.",
    )
    parser.add_argument(
        "--version", action="store_true", help="print the version and exit"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    doctor = sub.add_parser(
        "doctor", help="self-check every primitive on embedded defaults"
    )
    doctor.add_argument("--json", action="store_true", help="print results as JSON")
    doctor.add_argument(
        "--check",
        action="append",
        metavar="NAME",
        help="run only this check (repeatable)",
    )
    doctor.set_defaults(handler=_cmd_doctor)

    catalog = sub.add_parser(
        "catalog", help="list the stable error codes and exit codes"
    )
    fmt = catalog.add_mutually_exclusive_group()
    fmt.add_argument(
        "--markdown", action="store_true", help="the full table as Markdown"
    )
    fmt.add_argument("--json", action="store_true", help="as JSON")
    catalog.add_argument("code", nargs="*", help="only these codes")
    catalog.set_defaults(handler=_cmd_catalog)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.version:
        import paios_reliability

        print(paios_reliability.__version__)
        return 0
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 10  # USAGE_ERROR
    try:
        return handler(args)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - one clear line, stable exit code
        from ._taxonomy import classify, exit_code_for

        code = getattr(exc, "code", None)
        label = code if isinstance(code, str) else classify(exc).code
        print(f"paios-reliability: error: {label}: {exc}", file=sys.stderr)
        return exit_code_for(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
