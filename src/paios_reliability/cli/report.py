"""``paios-reliability report daily``: the last 24 hours as Markdown and HTML."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import add_group, add_source_arguments, sources_from

__all__ = ["register"]

_EPILOG = """\
Prints the Markdown report; --html/--markdown also write it to files
(the HTML page is self-contained: inline CSS and SVG, no script).
--deliver MODULE:ATTR sends it through an AlertDispatcher (or a function
returning one): level info when ok, warning when degraded, critical when
failing. Sources as for `status`.

exit codes: 0 ok, 1 degraded, 2 failing (the status at the end of the period).

examples:
  paios-reliability report daily
  paios-reliability report daily --html report.html --markdown report.md
  paios-reliability report daily --deliver myapp.alerts:dispatcher
"""

_ALERT_LEVEL = {"ok": "info", "degraded": "warning", "failing": "critical"}


def _hours(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= 24 * 31:
        raise argparse.ArgumentTypeError(f"must be between 1 and 744, got {value}")
    return value


def _dispatcher(spec: str) -> Any:
    from .._core.imports import import_instance
    from .._observe.alerts import AlertDispatcher

    return import_instance(
        spec,
        AlertDispatcher,
        form="--deliver needs module:attribute",
        what="dispatcher",
    )


def _cmd_daily(args: argparse.Namespace) -> int:
    from .._data.atomic import atomic_write
    from .._observe.daily import build_daily_report

    sources = sources_from(args)
    dispatcher = _dispatcher(args.deliver) if args.deliver else None
    report = build_daily_report(sources, hours=args.hours)
    markdown = report.to_markdown()
    if args.markdown:
        atomic_write(args.markdown, markdown + "\n")
    if args.html:
        atomic_write(args.html, report.to_html() + "\n")
    print(markdown)
    if dispatcher is not None:
        status = report.status.status
        dispatcher.alert(
            _ALERT_LEVEL[status],
            f"Daily reliability report: {status.upper()}",
            markdown,
        )
        dispatcher.flush()
    return report.status.exit_code


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the ``report`` command group."""
    report_sub = add_group(sub, "report", help="reports over the event stores")
    daily = report_sub.add_parser(
        "daily",
        help="the last 24 h as Markdown (and a self-contained HTML page)",
        description="Alerts, errors by code, breaker openings, slowest operations, "
        "missed heartbeats, expiring credentials and leak warnings.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    daily.add_argument("--hours", type=_hours, default=24, help="period (default 24)")
    daily.add_argument(
        "--markdown", metavar="PATH", help="also write the Markdown here"
    )
    daily.add_argument("--html", metavar="PATH", help="write the HTML page here")
    daily.add_argument(
        "--deliver", metavar="MODULE:ATTR", help="send through this AlertDispatcher"
    )
    add_source_arguments(daily)
    daily.set_defaults(handler=_cmd_daily)
