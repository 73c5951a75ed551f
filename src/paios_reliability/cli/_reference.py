"""The CLI reference page, generated from the parser itself.

``python -m paios_reliability.cli._reference > docs/cli.md`` rewrites the
page; a test fails when the page and the parser disagree, so the page can
never describe options that no longer exist.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator

__all__ = ["commands", "render_reference"]

_INTRO = """\
# Command line reference

Generated from the parser by `python -m paios_reliability.cli._reference`;
do not edit by hand (a test keeps this page in sync).

Every command prints errors as one line on stderr,
`paios-reliability: error: CODE: message (hint: ...)`, and exits with the
exit code of that catalog code, the same number in every command: a missing
file is 15 (`FILE_NOT_FOUND`) whichever command was given it, a usage error
is 10. `paios-reliability catalog` lists every code.

| exit code | meaning |
|---|---|
| 0 | success |
| 10-19 | input, validation, configuration (10 usage, 12 invalid config, 15 file not found, 16 a directory) |
| 20-29 | transient: network, timeouts, contention, overload (27 a health check failing) |
| 30-39 | policy, authentication, credentials (33 an expired credential) |
| 40-49 | internal, integrity, resources (43 a corrupt database) |
"""


def commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser under ``parser`` (itself first), with its command words."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from commands(child, (*path, name))


def render_reference() -> str:
    """The Markdown page: the intro, then every command's ``--help``."""
    from . import _parser

    # Help text wraps at $COLUMNS; a fixed width keeps the page stable.
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "80"
    try:
        parts = [_INTRO]
        for path, parser in commands(_parser()):
            title = " ".join(("paios-reliability", *path))
            parts.append(
                f"## `{title}`\n\n```text\n{parser.format_help().rstrip()}\n```\n"
            )
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved
    return "\n".join(parts)


if __name__ == "__main__":  # pragma: no cover
    print(render_reference(), end="")
