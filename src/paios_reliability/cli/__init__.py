"""The ``paios-reliability`` command.

Errors print one line on stderr and exit with :func:`exit_code_for` of the
error (0 on success; 10-49 by family, see ``paios-reliability catalog``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

__all__ = ["main"]

Handler = Callable[[argparse.Namespace], int]


def _cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import render_table, run_checks

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
    from .._core.taxonomy import exit_code_for

    return exit_code_for(failed[0].error) or 1


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(sys.stdout, fast=args.fast)


def _cmd_catalog(args: argparse.Namespace) -> int:
    from .._core.exceptions import ConfigError
    from .._core.taxonomy import CATALOG

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


def _emit(result: tuple[str, int]) -> int:
    text, status = result
    if text:
        print(text.rstrip("\n"))
    return status


def _cmd_db_check(args: argparse.Namespace) -> int:
    from .._data.database import check_database

    reports = [check_database(path, full=args.full) for path in args.paths]
    if args.fix:
        return _fix_databases(args, reports)
    if args.json:
        print(json.dumps([r.to_dict() for r in reports], indent=2, default=str))
    else:
        print("\n\n".join(r.to_text().rstrip("\n") for r in reports))
    return 0 if all(r.ok for r in reports) else 43  # DB_CORRUPT family


def _fix_databases(args: argparse.Namespace, reports: list[Any]) -> int:
    from .._data.quarantine import quarantine_placeholder

    fixes = [
        quarantine_placeholder(path, quarantine=args.quarantine)
        for path, report in zip(args.paths, reports, strict=True)
        if not report.ok
    ]
    moved = {f.path for f in fixes if f.action == "moved"}
    if args.json:
        print(
            json.dumps(
                {
                    "reports": [r.to_dict() for r in reports],
                    "fixes": [f.to_dict() for f in fixes],
                },
                indent=2,
                default=str,
            )
        )
    else:
        print("\n\n".join(r.to_text().rstrip("\n") for r in reports))
        print("\nfix:" if fixes else "\nfix: nothing to do")
        for f in fixes:
            print(f"  {f.to_text()}")
    left = [
        r
        for path, r in zip(args.paths, reports, strict=True)
        if not r.ok and path not in moved
    ]
    return 43 if left else 0  # DB_CORRUPT family


def _cmd_credentials_status(args: argparse.Namespace) -> int:
    from .._data.credentials import credential_status

    report = credential_status(args.path)
    print(
        json.dumps(report.to_dict(), indent=2, default=str)
        if args.json
        else report.to_text().rstrip("\n")
    )
    return 0 if report.ok else 33  # CREDENTIAL_EXPIRED family


def _cmd_config_validate(args: argparse.Namespace) -> int:
    from .._data.config_file import config_validate

    report = config_validate(args.path, args.model, dry_run=args.dry_run)
    print(report.to_text().rstrip("\n"))
    return 0 if report.ok else 12  # CONFIG_INVALID


def _cmd_events_query(args: argparse.Namespace) -> int:
    from .._observe.eventstore import query_command

    return _emit(
        query_command(
            args.db,
            trace=args.trace,
            category=args.category,
            action=args.action,
            since=args.since,
            until=args.until,
            level=args.level,
            service=args.service,
            limit=args.limit or None,
            as_json=args.json,
        )
    )


def _cmd_health(args: argparse.Namespace) -> int:
    from .._observe.health import health_command

    return _emit(health_command(args.registry, as_json=args.json))


def _cmd_service_render(args: argparse.Namespace) -> int:
    from .._ops.service import render_command

    program = list(args.program)
    if program and program[0] == "--":
        program = program[1:]
    return _emit(
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


class _Parser(argparse.ArgumentParser):
    """Usage errors: one line on stderr and exit code 10 (``USAGE_ERROR``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(10, f"{self.prog}: error: USAGE_ERROR: {message} (see --help)\n")


def _add_data_commands(sub: argparse._SubParsersAction[_Parser]) -> None:
    db = sub.add_parser("db", help="SQLite database checks")
    db_sub = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    check = db_sub.add_parser(
        "check", help="inspect databases (changes nothing unless --fix)"
    )
    check.add_argument("paths", nargs="+", metavar="PATH")
    check.add_argument(
        "--full", action="store_true", help="integrity_check instead of quick_check"
    )
    check.add_argument("--json", action="store_true", help="print JSON")
    check.add_argument(
        "--fix",
        action="store_true",
        help="move 0-byte placeholder databases to a quarantine folder "
        "(never deletes, never touches a file with content)",
    )
    check.add_argument(
        "--quarantine",
        metavar="DIR",
        help="with --fix: where to (default .paios-quarantine next to each file)",
    )
    check.set_defaults(handler=_cmd_db_check)

    creds = sub.add_parser(
        "credentials", help="credential store status (never prints secrets)"
    )
    creds_sub = creds.add_subparsers(
        dest="credentials_command", metavar="COMMAND", required=True
    )
    status = creds_sub.add_parser("status", help="expiry and usage of every credential")
    status.add_argument("path")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=_cmd_credentials_status)

    config = sub.add_parser("config", help="configuration files")
    config_sub = config.add_subparsers(
        dest="config_command", metavar="COMMAND", required=True
    )
    validate = config_sub.add_parser(
        "validate", help="validate a config file against a model"
    )
    validate.add_argument("path")
    validate.add_argument("--model", required=True, metavar="MODULE:CLASS")
    validate.add_argument(
        "--dry-run", action="store_true", help="also show the diff save would write"
    )
    validate.set_defaults(handler=_cmd_config_validate)


def _add_ops_commands(sub: argparse._SubParsersAction[_Parser]) -> None:
    events = sub.add_parser(
        "events", help="query an event store (observability.sqlite)"
    )
    events_sub = events.add_subparsers(
        dest="events_command", metavar="COMMAND", required=True
    )
    query = events_sub.add_parser("query", help="list stored events, oldest first")
    query.add_argument("db", help="path of the event store database")
    query.add_argument("--trace", help="only this trace id")
    query.add_argument("--category", help="only this category (primitive)")
    query.add_argument("--action", help="only this action")
    query.add_argument("--since", help="age (30m, 1h, 2d) or ISO time")
    query.add_argument("--until", help="age or ISO time")
    query.add_argument("--level", help="this level or worse")
    query.add_argument("--service", help="only this service")
    query.add_argument(
        "--limit", type=int, default=100, help="at most N events (0: all)"
    )
    query.add_argument("--json", action="store_true", help="print JSON")
    query.set_defaults(handler=_cmd_events_query)

    health = sub.add_parser("health", help="run a HealthRegistry and print its report")
    health.add_argument(
        "--registry", required=True, metavar="MODULE:ATTR", help="registry to run"
    )
    health.add_argument("--json", action="store_true", help="print JSON")
    health.set_defaults(handler=_cmd_health)

    service = sub.add_parser("service", help="service unit files")
    service_sub = service.add_subparsers(
        dest="service_command", metavar="COMMAND", required=True
    )
    render = service_sub.add_parser(
        "render", help="print a launchd plist or systemd unit"
    )
    render.add_argument("kind", choices=["launchd", "systemd"])
    render.add_argument("--label", required=True, help="service label / unit name")
    render.add_argument("--description")
    render.add_argument("--workdir")
    render.add_argument("--env", action="append", metavar="KEY=VALUE")
    render.add_argument("--stdout", help="stdout log path")
    render.add_argument("--stderr", help="stderr log path")
    render.add_argument(
        "--restart", default="on-failure", choices=["on-failure", "always", "no"]
    )
    render.add_argument("--user")
    render.add_argument("program", nargs="+", help="-- PROGRAM ARGS...")
    render.set_defaults(handler=_cmd_service_render)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
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

    demo = sub.add_parser(
        "demo", help="guided run on embedded defaults (temp dir, no Redis)"
    )
    demo.add_argument("--fast", action="store_true", help="skip the real waits")
    demo.set_defaults(handler=_cmd_demo)

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

    _add_data_commands(sub)
    _add_ops_commands(sub)
    from . import status as _status

    _status.register(sub)
    from . import serve as _serve

    _serve.register(sub)
    from . import report as _report

    _report.register(sub)
    from . import locks as _locks

    _locks.register(sub)
    from . import runs as _runs

    _runs.register(sub)
    from . import replay as _replay

    _replay.register(sub)
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
        status = handler(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: not an error of ours.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - one clear line, stable exit code
        from .._core.taxonomy import classify, exit_code_for, redact_text

        code = getattr(exc, "code", None)
        label = code if isinstance(code, str) else classify(exc).code
        try:
            text = redact_text(str(exc))
        except Exception:  # noqa: BLE001 - a broken __str__ still gets its line
            text = f"<unprintable {type(exc).__name__}>"
        print(f"paios-reliability: error: {label}: {text}", file=sys.stderr)
        return exit_code_for(exc)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
