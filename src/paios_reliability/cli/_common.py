"""What every command group of the CLI shares.

One exit code per kind of failure, across all commands: a command never picks
a number itself, it names a catalog code (``FILE_NOT_FOUND``, ``DB_CORRUPT``,
...) and :func:`exit_for` turns it into that code's exit code. So a missing
file is the same number whichever command was given it.
"""

from __future__ import annotations

import argparse
import os
import textwrap
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .._core.exceptions import ReliabilityError

if TYPE_CHECKING:
    from typing import TypedDict

    from typing_extensions import Required, Unpack

    from .._observe.status_sources import StatusSources

    class CommandText(TypedDict, total=False):
        """The help texts of :func:`add_command` (and :func:`add_group`)."""

        help: Required[str]
        description: str | None
        examples: Sequence[str]
        epilog: str | None


__all__ = [
    "EXIT_CODES_HELP",
    "Handler",
    "add_command",
    "add_group",
    "add_source_arguments",
    "emit",
    "exit_for",
    "hint_for",
    "problem_exit",
    "require_file",
    "sources_from",
]

Handler = Callable[[argparse.Namespace], int]

#: The exit-code families, as every ``--help`` shows them.
EXIT_CODES_HELP = (
    "exit codes: 0 ok; 10-19 input or configuration (10 usage, 12 invalid config, "
    "15 file not found); 20-29 transient; 30-39 credentials or policy; "
    "40-49 integrity or internal (43 corrupt database). "
    "Every code: paios-reliability catalog"
)

# One next step per recovery mode, so that every error line says what to do.
_HINTS = {
    "fix_input": "check the arguments (--help)",
    "fix_config": "check the path and the file's contents",
    "fix_code": "this is a bug in the calling code; see the traceback with python -X dev",
    "restore_backup": "restore the file from a backup (docs/runbooks/)",
    "refresh_credentials": "refresh or re-enter the credential",
    "wait_for_lock": "another process holds it; try again later",
    "free_resources": "free disk space, memory or file descriptors, then retry",
    "escalate": "check permissions and the environment, then retry",
    "retry": "a transient failure; try again",
    "retry_after": "a transient failure; try again later",
    "reduce_load": "too much concurrent work; try again later",
    "fail_fast": "the request itself was refused; check its arguments",
    "request_approval": "the operation needs an approval first",
    "abort": "the command was interrupted",
}


def exit_for(code: str) -> int:
    """The exit code of the catalog ``code`` (unknown codes: 41)."""
    from .._core.taxonomy import CATALOG

    try:
        return CATALOG[code].exit_code
    except KeyError:
        return CATALOG["RELIABILITY_ERROR"].exit_code


def hint_for(code: str) -> str:
    """A short next step for the catalog ``code``, for the one-line error."""
    from .._core.taxonomy import CATALOG

    try:
        recovery = CATALOG[code].recovery
    except KeyError:
        return f"see: paios-reliability catalog {code}"
    return f"{_HINTS.get(recovery, 'see the catalog')}; see: paios-reliability catalog {code}"


def require_file(path: str | os.PathLike[str], *, what: str = "file") -> str:
    """Fail with the same code in every command when nothing is at ``path``.

    Anything that is there (a directory, a FIFO, a device) is left to the
    command's report, which says what it is; :func:`problem_exit` then gives
    its code.

    Returns:
        ``path`` as a string.

    Raises:
        ReliabilityError: ``FILE_NOT_FOUND`` (exit 15) when nothing is there,
            ``PERMISSION_DENIED`` (34) when it cannot be looked at.
    """
    name = os.fspath(path)
    try:
        os.stat(name)
    except FileNotFoundError:
        raise ReliabilityError(
            f"{what} {name!r} does not exist", code="FILE_NOT_FOUND"
        ) from None
    except PermissionError:
        raise ReliabilityError(
            f"{what} {name!r} cannot be read: permission denied",
            code="PERMISSION_DENIED",
        ) from None
    except OSError as exc:
        raise ReliabilityError(
            f"{what} {name!r} cannot be read: {exc.strerror or exc}",
            code="OS_ERROR",
        ) from None
    return name


def problem_exit(path: str, code: str) -> int:
    """The exit code of a report that found a problem with the file at ``path``.

    A directory is ``IS_A_DIRECTORY`` in every command; anything else is the
    command's own ``code``.
    """
    if os.path.isdir(path):
        return exit_for("IS_A_DIRECTORY")
    return exit_for(code)


def emit(result: tuple[str, int]) -> int:
    """Print a ``(text, status)`` pair of the library's command helpers."""
    text, status = result
    if text:
        print(text.rstrip("\n"))
    return status


def add_command(
    sub: argparse._SubParsersAction[Any],
    name: str,
    *,
    help: str,
    description: str | None = None,
    examples: Sequence[str] = (),
    epilog: str | None = None,
    handler: Handler | None = None,
) -> argparse.ArgumentParser:
    """Add a subcommand whose ``--help`` has a description, examples and exit codes.

    Args:
        sub: The subparsers of the group.
        name: The command's name.
        help: One line for the parent's command list.
        description: What the command does, a paragraph.
        examples: Command lines, shown under ``examples:``.
        epilog: The text after the options, instead of the examples and the
            table of exit codes (for a group that explains its own).
        handler: Called with the parsed arguments; returns the exit code.
    """
    if epilog is None:
        epilog = textwrap.fill(EXIT_CODES_HELP, width=78)
        if examples:
            lines = "\n".join(f"  {e}" for e in examples)
            epilog = f"examples:\n{lines}\n\n{epilog}"
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help,
        description=None
        if description is None
        else textwrap.fill(description, width=78),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if handler is not None:
        parser.set_defaults(handler=handler)
    return parser


def add_group(
    sub: argparse._SubParsersAction[Any], name: str, **text: Unpack[CommandText]
) -> argparse._SubParsersAction[Any]:
    """Add a command group (``NAME COMMAND ...``); returns the group's subparsers.

    The arguments are :func:`add_command`'s. The chosen command is stored as
    ``NAME_command``; one must be given.
    """
    group = add_command(sub, name, **text)
    return group.add_subparsers(
        dest=f"{name}_command", metavar="COMMAND", required=True
    )


# What the recurring options mean, for commands that declare them bare.
_OPTION_HELP = {
    "config": "this TOML file instead of reliability.toml",
    "event_store": "an event store file (repeatable)",
    "state_store": "a state store: SQLite path or redis:// URL (repeatable)",
    "health": "a HealthRegistry as MODULE:ATTR",
    "credentials": "a credential store file (repeatable)",
    "store": "the state store: SQLite path or redis:// URL",
    "run_id": "the run's id",
}


def document(
    parser: argparse.ArgumentParser,
    description: str,
    examples: Sequence[str],
) -> None:
    """Give a parser made with ``add_parser`` what ``add_command`` gives.

    A description, an ``examples:`` block and the exit codes in ``--help``;
    options declared without help get the shared wording above.
    """
    parser.description = textwrap.fill(description, width=78)
    parser.epilog = (
        "examples:\n"
        + "\n".join(f"  {e}" for e in examples)
        + "\n\n"
        + textwrap.fill(EXIT_CODES_HELP, width=78)
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    for action in parser._actions:
        if not action.help and action.dest in _OPTION_HELP:
            action.help = _OPTION_HELP[action.dest]


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that say where the status data is, as ``reliability.toml`` does.

    For every command that reads it (``status``, ``serve``, ``report daily``);
    :func:`sources_from` turns them into :class:`StatusSources`.
    """
    parser.add_argument(
        "--config", metavar="PATH", help="this TOML file instead of reliability.toml"
    )
    parser.add_argument(
        "--event-store",
        action="append",
        metavar="PATH",
        help="an event store file (repeatable)",
    )
    parser.add_argument(
        "--state-store",
        action="append",
        metavar="PATH|URL",
        help="a state store: SQLite path or redis:// URL (repeatable)",
    )
    parser.add_argument(
        "--health", metavar="MODULE:ATTR", help="a HealthRegistry as MODULE:ATTR"
    )
    parser.add_argument(
        "--credentials",
        action="append",
        metavar="PATH",
        help="a credential store file (repeatable)",
    )


def sources_from(args: argparse.Namespace) -> StatusSources:
    """The sources the options of :func:`add_source_arguments` name."""
    from .._observe.status_sources import load_status_sources

    return load_status_sources(
        args.config,
        event_stores=args.event_store or (),
        state_stores=args.state_store or (),
        health=args.health,
        credentials=args.credentials or (),
    )
