"""How a command is shown: argv with its secrets redacted, and output tails.

Errors, events and log lines name the command a child ran; these helpers make
sure that what they show carries no password, token or key, whether it sat
after a secret option, in ``NAME=value``, or in the shape of a known token.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

__all__ = ["redact_argv"]

StrOrBytesPath = str | bytes | os.PathLike[str] | os.PathLike[bytes]
Command = StrOrBytesPath | Sequence[StrOrBytesPath]

_TAIL = 2000
_SHOWN = 200


# -- secrets in argv ------------------------------------------------------------------

# ``--password X`` / ``-token X``: the option names a secret, the next argument is it.
_OPTION = re.compile(r"^-{1,2}([A-Za-z][A-Za-z0-9_.-]*)$")
# ``--password=X`` in one argument, or ``--password X`` inside a shell script.
_OPTION_VALUE = re.compile(
    r"(?<![\w-])(-{1,2}([A-Za-z][A-Za-z0-9_.-]*))(=|[ \t]+)(\"[^\"]*\"|'[^']*'|[^\s\"']+)"
)
# ``GITHUB_TOKEN=X`` (``env``, ``docker run -e``, ``make VAR=...``).
_ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_.-]*)=(.+)$", re.DOTALL)
# Names that *mention* a secret but whose value is not one.
_NOT_SECRET_TAIL = frozenset(
    {
        "file",
        "files",
        "path",
        "dir",
        "fd",
        "stdin",
        "env",
        "var",
        "cmd",
        "command",
        "name",
        "id",
        "type",
        "length",
        "ttl",
        "prompt",
        "url",
    }
)
_WORDS = re.compile(r"[^A-Za-z0-9]+")
# Token shapes that are secrets whatever option or name carries them.
_USERINFO = re.compile(r"(?<=://)([^/\s:@]+):([^/\s@]+)@")
_TOKEN_SHAPES = re.compile(
    r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{16,}"
    r"|\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,}"
    r"|\bgithub_pat_[A-Za-z0-9_]{20,}"
    r"|\bxox[abprs]-[A-Za-z0-9-]{10,}"
    r"|\bAKIA[0-9A-Z]{16}\b"
    r"|\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"
)


def _secret_name(name: str) -> bool:
    from .._core.redaction import is_secret_key

    words = [w.lower() for w in _WORDS.split(name) if w]
    return bool(words) and words[-1] not in _NOT_SECRET_TAIL and is_secret_key(name)


def _redact_arg(text: str) -> str:
    from .._core.redaction import REDACTED, redact_text

    def option(match: re.Match[str]) -> str:
        if _secret_name(match.group(2)):
            return f"{match.group(1)}{match.group(3)}{REDACTED}"
        return match.group(0)

    text = _OPTION_VALUE.sub(option, text)
    assignment = _ASSIGNMENT.match(text)
    if assignment and _secret_name(assignment.group(1)):
        text = f"{assignment.group(1)}={REDACTED}"
    text = _USERINFO.sub(lambda m: f"{m.group(1)}:{REDACTED}@", text)
    text = _TOKEN_SHAPES.sub(REDACTED, text)
    return redact_text(text)


def redact_argv(argv: Command) -> list[str]:
    """The command as text, with the secrets it carries replaced by ``[REDACTED]``.

    Masks the value after an option that names a secret (``--password X``,
    ``--token=X``, ``--api-key X``, also inside a ``sh -c`` script),
    ``NAME=value`` assignments whose name is secret-looking
    (``GITHUB_TOKEN=...``), passwords in URLs (``https://user:pass@host``),
    well-known token shapes (``sk-...``, ``ghp_...``...) and whatever
    :func:`redact_text` finds. Single-letter options (``-p X``) are too
    ambiguous to mask. Pure function, safe from any thread.

    Args:
        argv: A program name or a sequence of arguments (str, bytes or paths).

    Returns:
        One string per argument, safe for logs, events and error messages.
    """
    from .._core.redaction import REDACTED

    items = [argv] if isinstance(argv, (str, bytes, os.PathLike)) else list(argv)
    shown: list[str] = []
    value_follows = False
    for item in items:
        text = _text_of(item)
        if value_follows and not text.startswith("-"):
            shown.append(REDACTED)
            value_follows = False
            continue
        option = _OPTION.match(text)
        value_follows = bool(option and _secret_name(option.group(1)))
        shown.append(text if value_follows else _redact_arg(text))
    return shown


def _text_of(item: object) -> str:
    if isinstance(item, (str, bytes, os.PathLike)):
        return os.fsdecode(item)
    return repr(item)


def _show(cmd: object) -> str:
    import shlex

    try:
        text = shlex.join(redact_argv(cmd))  # type: ignore[arg-type]
    except TypeError:
        text = "<unprintable command>"
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _program(cmd: object) -> str:
    try:
        shown = redact_argv(cmd)  # type: ignore[arg-type]
    except TypeError:
        return "?"
    return shown[0] if shown else "?"


def _tail(data: str | bytes | None, limit: int = _TAIL) -> str:
    from .._core.redaction import redact_text

    if not data:
        return ""
    text = data[-limit:]
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return redact_text(text.strip())
