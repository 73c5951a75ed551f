"""Redaction: find secrets in text, keys and values, and replace them.

Everything the library writes (log lines, tracebacks, events, audit records,
retry notes, crash records, the CLI's error line) goes through these
functions first.
"""

from __future__ import annotations

import datetime as _dt
import functools
import itertools
import math
import re
from collections.abc import Mapping
from types import TracebackType
from typing import Any

__all__ = [
    "REDACTED",
    "is_secret_key",
    "json_safe",
    "redact_clip",
    "redact_text",
    "redacted_traceback",
]

# -- redaction ------------------------------------------------------------------
#
# Everything the library writes (log lines, tracebacks, events, audit records,
# retry notes, crash records, the CLI's error line) goes through these
# functions first. Two independent signals find a secret: the *name* it sits
# under (a mapping key, ``key=value``, ``--flag value``, a header) and the
# *shape* of the value itself (``sk-...``, ``ghp_...``, ``AKIA...``, JWTs, URL
# passwords, PEM private keys). A secret with neither cannot be found.

REDACTED = "[REDACTED]"
# A word of a key that *contains* one of these is secret: authToken, db_passwords.
_SECRET_WORDS = frozenset(
    {
        "token",
        "secret",
        "password",
        "passwd",
        "passphrase",
        "authorization",
        "cookie",
        "apikey",
        "credential",
        "privatekey",
        "accesskey",
        "sessionid",  # Django's cookie; also JSESSIONID
        "sessid",  # PHPSESSID
    }
)
# Secret only as a whole word: as substrings they hit "author", "passenger", "signal".
_SECRET_EXACT = frozenset(
    {"auth", "pass", "creds", "jwt", "bearer", "sig", "signature", "dsn"}
)
_SECRET_PAIRS = frozenset(
    {
        ("api", "key"),
        ("private", "key"),
        ("access", "key"),
        ("session", "key"),
        ("signing", "key"),
        ("encryption", "key"),
        ("master", "key"),
        ("account", "key"),
        ("ssh", "key"),
    }
)
# In LLM systems "tokens" are mostly counts (max_tokens, input_tokens): those
# words stay readable unless a credential word qualifies them (access_tokens).
_TOKEN_COUNT_WORDS = frozenset(
    {"tokens", "tokenize", "tokenized", "tokenizer", "tokenizers", "tokenization"}
)
_TOKEN_QUALIFIERS = frozenset(
    {
        "access",
        "refresh",
        "auth",
        "api",
        "bearer",
        "id",
        "session",
        "oauth",
        "csrf",
        "xsrf",
    }
)
# "max_token", "prompt_token" count tokens; "token_count", "token_type",
# "access_token_expires_in" describe a token without being one.
_TOKEN_COUNT_PREFIXES = frozenset(
    {
        "max",
        "min",
        "num",
        "n",
        "total",
        "input",
        "output",
        "prompt",
        "completion",
        "cached",
        "reasoning",
        "context",
        "remaining",
        "fencing",  # a lock's fencing token is an ordering number
    }
)
_TOKEN_METADATA = frozenset(
    {
        "count",
        "counts",
        "usage",
        "used",
        "limit",
        "limits",
        "budget",
        "total",
        "len",
        "length",
        "estimate",
        "type",
        "url",
        "uri",
        "endpoint",
        "expiry",
        "expires",
        "expiration",
        "ttl",
        "lifetime",
    }
)
_SPLIT = re.compile(r"[^a-zA-Z0-9]+|(?<=[a-z0-9])(?=[A-Z])")


def is_secret_key(key: object) -> bool:
    """Whether a mapping key (or ``key=``, ``--flag``, header name) names a secret.

    Keys are split into words (``_``, ``-``, ``.``, camelCase). A key is secret
    when a word *contains* ``token``, ``secret``, ``password``, ``passwd``,
    ``passphrase``, ``authorization``, ``cookie``, ``apikey``, ``credential``,
    ``privatekey``, ``accesskey``, ``sessionid`` or ``sessid``; when a word *is*
    ``auth``, ``pass``, ``creds``, ``jwt``, ``bearer``, ``sig``, ``signature``
    or ``dsn``; when it ends in ``session``; for ``pwd`` anywhere but alone
    (``PWD`` is the working directory); and for pairs such as ``api_key``,
    ``private_key``, ``access_key``, ``session_key``, ``signing_key``.

    Token *counts* and token metadata are not secrets: ``max_tokens``,
    ``input_tokens``, ``tokenizer``, ``token_count``, ``token_type``,
    ``access_token_expires_in``. ``session_id`` is a correlation id (agent
    hosts hand one to every hook), not a credential.

    Never raises: a key that cannot be turned into text counts as secret.
    """
    try:
        text = key if isinstance(key, str) else str(key)
    except Exception:  # noqa: BLE001 - an unprintable key cannot be shown anyway
        return True
    if len(text) > 256:
        return _secret_name_uncached(text)
    return _secret_name(text)


def _secret_name_uncached(text: str) -> bool:
    words = [w.lower() for w in _SPLIT.split(text) if w]
    last = len(words) - 1
    for i, word in enumerate(words):
        previous = words[i - 1] if i else ""
        following = words[i + 1] if i < last else ""
        if word == "token":
            if following in _TOKEN_METADATA:
                continue
            if previous in _TOKEN_COUNT_PREFIXES and previous not in _TOKEN_QUALIFIERS:
                continue
            return True
        if word in _TOKEN_COUNT_WORDS:
            if previous in _TOKEN_QUALIFIERS and following not in _TOKEN_METADATA:
                return True
            continue
        if word in _SECRET_EXACT or (word == "session" and i == last):
            return True
        if word == "pwd" and last > 0:
            return True
        if any(secret in word for secret in _SECRET_WORDS):
            return True
    return any(
        first.endswith(a) and second in (b, b + "s")  # xapi_key, private_keys
        for first, second in itertools.pairwise(words)
        for a, b in _SECRET_PAIRS
    )


_secret_name = functools.lru_cache(maxsize=4096)(_secret_name_uncached)

_KEY_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"
)
_MAX_KEY = 130
# Token shapes of the common providers, found inside long runs of token
# characters (a cheap scan) rather than by trying every position of the text.
_LONG_TOKEN = re.compile(r"[A-Za-z0-9][\w.\-]{10,}")
_SHAPE = re.compile(
    r"\bsk-[A-Za-z0-9][A-Za-z0-9_-]{7,}"  # OpenAI, Anthropic (sk-ant-), sk-proj-
    r"|\b[sr]k_(?:live|test)_[A-Za-z0-9]{8,}"  # Stripe
    r"|\bwhsec_[A-Za-z0-9]{16,}"
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}"  # GitHub
    r"|\bgithub_pat_[A-Za-z0-9_]{20,}"
    r"|\bglpat-[A-Za-z0-9_-]{20,}"  # GitLab
    r"|\bxox[abposre]-[A-Za-z0-9-]{8,}"  # Slack
    r"|\bxapp-[A-Za-z0-9-]{8,}"
    r"|\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA|ASCA)[A-Z0-9]{16}\b"
    r"|\bAIza[0-9A-Za-z_-]{35}"  # Google API key
    r"|\bya29\.[0-9A-Za-z_-]{20,}"  # Google OAuth access token
    r"|\bhf_[A-Za-z0-9]{30,}"  # Hugging Face
    r"|\bnpm_[A-Za-z0-9]{36}"
    r"|\bpypi-[A-Za-z0-9_-]{50,}"
    r"|\beyJ[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]*){0,2}"  # JWT
)
_USERINFO = re.compile(r"[^\s/:@?#]{0,256}:(?P<pw>[^\s/?#]{1,512})@")
_FLAG = re.compile(r"--(?P<name>[A-Za-z][\w.-]{0,128})(?:[\"'],[ \t]*|[ \t]+)")
_SCHEME = re.compile(
    r"\b(?P<scheme>(?i:bearer|basic))[ \t]+(?P<cred>[A-Za-z0-9._~+/=-]{4,})"
)
_BASE64 = re.compile(r"[A-Za-z0-9+/]{8,}={0,2}")
_HOOK = re.compile(
    r"(?:hooks\.slack\.com/services/|discord(?:app)?\.com/api/webhooks/)"
    r"(?P<path>[A-Za-z0-9/_-]+)"
)
_PEM = re.compile(r"-----BEGIN[A-Z ]{0,40}PRIVATE KEY-----")
_PEM_END = re.compile(r"-----END[A-Z ]{0,40}PRIVATE KEY-----")
_PEM_BODY = re.compile(r"[A-Za-z0-9+/=\s]*")
_SCHEME_PREFIX = re.compile(r"(?i:bearer|basic|digest|token|negotiate)[ \t]+")
_BARE_VALUE = re.compile(r"[^\s,;&'\"]+")
_FLAG_VALUE = re.compile(r"[^\s'\"-][^\s'\"]*")
_LINE_END = re.compile(r"[^\r\n]*")
_OPEN = {"{": "}", "[": "]", "(": ")"}
_MAX_CONTAINER = 4096


def redact_text(text: str) -> str:
    """Mask every secret in free text that has a recognisable name or shape.

    By name: the value after ``key=``, ``key:``, ``"key": "..."``, a header
    (``Authorization: Bearer ...``; ``Cookie: ...`` to the end of the line),
    ``--flag=value``, ``--flag value`` and argv reprs (``'--token', 'x'``),
    query strings (``?api_key=...``) - for every name :func:`is_secret_key`
    calls secret; a ``{...}``/``[...]`` value under such a name goes whole.
    By shape: ``sk-...`` (OpenAI, Anthropic), Stripe keys,
    ``ghp_``/``gho_``/``github_pat_``, ``glpat-``, Slack ``xox?-``, AWS
    ``AKIA...``, Google ``AIza...``/``ya29.``, Hugging Face ``hf_``, ``npm_``,
    JWTs (``eyJ...``), PEM private keys, URL passwords
    (``https://user:password@host``), ``Bearer``/``Basic`` credentials and
    Slack/Discord webhook URLs.

    Idempotent (``redact_text(redact_text(t)) == redact_text(t)``); text with
    nothing secret comes back unchanged. A secret with no recognisable shape
    under a name that says nothing ("the password is hunter2") cannot be
    found. Linear in the length of ``text``; never raises on a string.
    """
    if not text:
        return text
    spans: list[tuple[int, int]] = []
    _name_spans(text, spans)
    _flag_spans(text, spans)
    _shape_spans(text, spans)
    if not spans:
        return text
    spans.sort()
    out: list[str] = []
    last = 0
    current_start, current_end = spans[0]
    for start, end in spans[1:]:
        if start <= current_end:  # overlapping finds become one mask
            current_end = max(current_end, end)
            continue
        out.append(text[last:current_start])
        out.append(REDACTED)
        last = current_end
        current_start, current_end = start, end
    out.append(text[last:current_start])
    out.append(REDACTED)
    out.append(text[current_end:])
    return "".join(out)


def _name_spans(text: str, spans: list[tuple[int, int]]) -> None:
    """Values after ``key=`` / ``key:`` whose key names a secret."""
    key_chars, n = _KEY_CHARS, len(text)
    for sep in "=:":
        i = text.find(sep)
        while i != -1:
            k = i - 1
            while k >= 0 and text[k] in " \t":
                k -= 1
            if k >= 0 and text[k] in "\"'":
                k -= 1
            key_end = k + 1
            while k >= 0 and text[k] in key_chars and key_end - k <= _MAX_KEY:
                k -= 1
            if (k < 0 or text[k] not in key_chars) and key_end > k + 1:
                key = text[k + 1 : key_end]
                if is_secret_key(key):
                    v = i + 1
                    while v < n and text[v] in " \t":
                        v += 1
                    header = sep == ":" and "cookie" in key.lower()
                    end = _value_end(text, v, header=header)
                    if end > v:
                        spans.append((v, end))
            i = text.find(sep, i + 1)


def _flag_spans(text: str, spans: list[tuple[int, int]]) -> None:
    """``--token value``, ``'--token', 'value'`` and scheme://user:password@."""
    i = text.find("--")
    while i != -1:
        if i == 0 or not (text[i - 1].isalnum() or text[i - 1] in "_-"):
            m = _FLAG.match(text, i)
            if m is not None and is_secret_key(m.group("name")):
                v = m.end()
                end = _quoted_end(text, v)
                if end is None:
                    if text.startswith(REDACTED, v):
                        end = v + len(REDACTED)
                    else:
                        value = _FLAG_VALUE.match(text, v)
                        end = value.end() if value is not None else v
                if end > v:
                    spans.append((v, end))
        i = text.find("--", i + 2)
    i = text.find("://")
    while i != -1:
        m = _USERINFO.match(text, i + 3)
        if m is not None:
            spans.append(m.span("pw"))
        i = text.find("://", i + 3)


def _shape_spans(text: str, spans: list[tuple[int, int]]) -> None:
    """Token shapes, ``Bearer``/``Basic`` credentials, webhooks, PEM keys."""
    search = _SHAPE.search
    for token in _LONG_TOKEN.finditer(text):
        pos, end = token.span()
        while (m := search(text, pos, end)) is not None:
            found = m.group()
            # "sk-learn-based" is a word; every real key mixes in digits or capitals
            if not found.startswith("sk-") or any(
                c.isdigit() or c.isupper() for c in found
            ):
                spans.append(m.span())
            pos = m.end()
    lowered = text.lower()
    if "bearer" in lowered or "basic" in lowered:
        for m in _SCHEME.finditer(text):
            cred = m.group("cred")
            if m.group("scheme").lower() == "basic" and not (
                _BASE64.fullmatch(cred) is not None
                and (
                    any(c.isdigit() or c in "+/=" for c in cred)
                    or any(c.isupper() for c in cred[1:])
                )
            ):
                continue  # "basic checks": prose, not base64
            spans.append(m.span("cred"))
    if "hooks.slack.com/" in text or "/api/webhooks/" in text:
        spans.extend(m.span("path") for m in _HOOK.finditer(text))
    i = text.find("-----BEGIN")
    while i != -1:
        m = _PEM.match(text, i)
        if m is not None:
            body = m.end()
            if text.startswith(REDACTED, body):
                spans.append((body, body + len(REDACTED)))
            elif (end_marker := _PEM_END.search(text, body)) is not None:
                spans.append((body, end_marker.end()))
            elif (
                rest := _PEM_BODY.match(text, body)
            ) is not None and rest.end() > body:
                spans.append((body, rest.end()))
        i = text.find("-----BEGIN", i + 10)


def _value_end(text: str, i: int, *, header: bool) -> int:
    """Where the value that starts at ``i`` ends (``i`` when there is none)."""
    if i >= len(text):
        return i
    if text.startswith(REDACTED, i):  # already masked: keep what follows
        return i + len(REDACTED)
    quoted = _quoted_end(text, i)
    if quoted is not None:
        return quoted
    if header:
        line = _LINE_END.match(text, i)
        return line.end() if line is not None else i
    if text[i] in _OPEN:
        return _container_end(text, i)
    scheme = _SCHEME_PREFIX.match(text, i)
    start = scheme.end() if scheme is not None else i
    value = _BARE_VALUE.match(text, start)
    return value.end() if value is not None else i


def _quoted_end(text: str, i: int) -> int | None:
    """End of a quoted string starting at ``i`` (to the line's end if unclosed)."""
    if i >= len(text) or text[i] not in "\"'":
        return None
    quote, j, n = text[i], i + 1, len(text)
    while j < n:
        c = text[j]
        if c == "\\":
            j += 2
            continue
        if c == quote:
            return j + 1
        if c in "\r\n":
            return j
        j += 1
    return n


def _container_end(text: str, i: int) -> int:
    """End of the bracketed value at ``i``: a whole dict or list under a secret name."""
    stack = [_OPEN[text[i]]]
    j, n = i + 1, min(len(text), i + _MAX_CONTAINER)
    while j < n:
        c = text[j]
        if c in "\"'":
            j = _quoted_end(text, j) or j + 1
            continue
        if c in _OPEN:
            stack.append(_OPEN[c])
        elif c == stack[-1]:
            stack.pop()
            if not stack:
                return j + 1
        j += 1
    line = _LINE_END.match(text, i)
    return max(line.end() if line is not None else i, j)


def redact_clip(text: str, limit: int) -> str:
    """``redact_text(text)`` cut to ``limit`` characters.

    Redacts *before* cutting, so a secret that straddles the cut is still
    found as a whole instead of leaving a recognisable half behind.
    """
    red = redact_text(text[: limit * 4 + 256])
    return red if len(red) <= limit else red[:limit]


def redacted_traceback(
    exc: BaseException, tb: TracebackType | None = None, *, limit: int = 20_000
) -> str:
    """The traceback of ``exc`` as :mod:`traceback` prints it, redacted.

    Includes the chained causes and the exception notes (retry history),
    never frame locals. Source lines are redacted too (a literal key in code
    is a secret as well). Longer than ``limit`` characters, the *end* is kept:
    it holds the innermost frames and the message. Never raises.
    """
    import traceback

    try:
        text = "".join(
            traceback.format_exception(
                type(exc), exc, tb if tb is not None else exc.__traceback__
            )
        )
    except Exception:  # noqa: BLE001 - a hostile exception still gets a line
        text = f"<traceback unavailable for {type(exc).__qualname__}>\n"
    if len(text) > limit * 4:
        text = text[-limit * 4 :]
    text = redact_text(text)
    if len(text) > limit:
        text = "...\n" + text[-limit:]
    return text


def json_safe(value: object, *, _depth: int = 0) -> Any:
    """A JSON-serialisable copy of ``value`` with every secret redacted.

    Values under secret-looking keys (:func:`is_secret_key`) become
    ``[REDACTED]`` at any depth; strings go through :func:`redact_text`; in a
    list that looks like an argv, the value after a secret flag
    (``["--token", "x"]``) is redacted; objects with ``get_secret_value``
    (pydantic ``SecretStr``) are redacted; other objects become their
    redacted ``repr`` (at most 500 characters). Containers are cut at 200
    items and 8 levels. Never raises.
    """
    if _depth > 8:
        return "<nested too deep>"
    if value is None or isinstance(value, (bool, int, str)):
        return redact_text(value) if isinstance(value, str) else value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    try:
        if isinstance(value, Mapping):
            return _json_safe_mapping(value, _depth)
        if isinstance(value, (list, tuple, set, frozenset)):
            items = list(itertools.islice(value, 200))
            out = [json_safe(v, _depth=_depth + 1) for v in items]
            for i, item in enumerate(items[:-1]):
                if (
                    isinstance(item, str)
                    and item.startswith("-")
                    and "=" not in item
                    and is_secret_key(item)
                ):
                    out[i + 1] = REDACTED
            return out
    except Exception:  # noqa: BLE001 - a hostile container becomes a placeholder
        return f"<unreadable {type(value).__name__}>"
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    try:
        if hasattr(value, "get_secret_value"):  # pydantic SecretStr and friends
            return REDACTED
    except Exception:  # noqa: BLE001
        return REDACTED
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001
        text = f"<unrepresentable {type(value).__name__}>"
    return redact_clip(text, 500)


def _json_safe_mapping(value: Mapping[Any, Any], depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, (k, v) in enumerate(value.items()):
        if i >= 200:
            out["<truncated>"] = len(value) - 200
            break
        try:
            key = redact_text(str(k))
        except Exception:  # noqa: BLE001
            key = f"<unprintable key {i}>"
        out[key] = REDACTED if is_secret_key(k) else json_safe(v, _depth=depth + 1)
    return out
