"""Failure taxonomy: is this exception worth retrying, and what does it mean?

:func:`classify` turns *any* exception into a :class:`Failure` without importing
the libraries that raised it: our own errors by their ``code``; ``OSError`` by
errno; timeouts; ``sqlite3`` busy/locked/corrupt; HTTP errors of httpx,
requests, urllib, aiohttp and the OpenAI, Anthropic and Google SDKs by status
(duck-typed), honouring ``retry-after-ms``, ``Retry-After`` and
``x-should-retry``; MCP/JSON-RPC errors by their JSON-RPC code; pydantic
validation errors; and built-in programming errors, which are permanent
because retrying a bug never helps. An exception with none of those signals
is classified by its message (``ECONNRESET``, ``status 404``, ``rate limit``,
``invalid params``...). Anything else is transient with code
``UNCLASSIFIED``: an unknown failure in an agent system is far more often a
flaky dependency than a bug, and retries are bounded anyway.

:data:`CATALOG` lists every stable code with its kind, exit code, recovery mode
and a one-line summary. Exit codes come in families::

    0       success
    10-19   input, validation, configuration
    20-29   transient: network, timeouts, contention, overload
    30-39   policy, authentication, credentials
    40-49   internal, integrity, resources, interruption
"""

from __future__ import annotations

import datetime as _dt
import errno as _errno
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .catalog import CATALOG, Catalog, CatalogEntry, Kind, Recovery

# The redaction helpers lived in this module before it was split; importing
# them from here keeps working for code written against the old layout.
from .redaction import REDACTED as REDACTED  # noqa: PLC0414
from .redaction import is_secret_key as is_secret_key  # noqa: PLC0414
from .redaction import json_safe as json_safe  # noqa: PLC0414
from .redaction import redact_clip as redact_clip  # noqa: PLC0414
from .redaction import redact_text as redact_text  # noqa: PLC0414
from .redaction import redacted_traceback as redacted_traceback  # noqa: PLC0414
from .signals import (
    _GRPC_HTTP,
    _header,
    _response_headers,
    _safe_attr,
    _safe_str,
    carries_own_code,
    http_status,
)
from .taxonomy_tables import (
    _CONNECTION_NAMES,
    _ERRNO_CODES,
    _HTTP_CODES,
    _JSONRPC_CODES,
    _JSONRPC_NAMES,
    _JSONRPC_RESERVED,
    _MAX_RETRY_AFTER,
    _OLD_PHRASES,
    _OSERROR_TYPES,
    _PROGRAMMING_ERRORS,
    _SQLITE_LOCKED_PHRASES,
    _TEXT_LIMIT,
    _TEXT_RULES,
    _TIMEOUT_NAMES,
    _TLS_NAMES,
    _TextRule,
)

__all__ = [
    "CATALOG",
    "Catalog",
    "CatalogEntry",
    "Failure",
    "Kind",
    "Recovery",
    "audit_event",
    "classify",
    "exit_code_for",
    "is_retryable",
    "parse_retry_after",
]


@dataclass(frozen=True, slots=True)
class Failure:
    """What :func:`classify` concluded about one exception.

    Attributes:
        kind: ``"transient"`` (trying again later may work) or ``"permanent"``.
        code: Stable code from :data:`CATALOG`.
        retryable: Whether a retry policy should try again.
        retry_after: Seconds the other side asked us to wait, if it said so.
        reason: Short human explanation of the decision.
    """

    kind: Kind
    code: str
    retryable: bool
    retry_after: float | None = None
    reason: str = ""


def _headers_retry_after(exc: BaseException) -> float | None:
    """``retry-after-ms`` (OpenAI, Anthropic) or ``Retry-After``, in seconds."""
    for headers in _response_headers(exc):
        millis = _parse_millis(_header(headers, "retry-after-ms"))
        if millis is not None:
            return millis
        value = _header(headers, "retry-after")
        if value is not None:
            return parse_retry_after(value)
    return None


def _parse_millis(value: Any) -> float | None:
    """A ``retry-after-ms`` value in seconds (at most a week), or ``None``."""
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("latin-1", "replace")
    if value is None or isinstance(value, bool):
        return None
    try:
        millis = float(value.strip() if isinstance(value, str) else value)
    except Exception:  # noqa: BLE001 - outside input
        return None
    if not math.isfinite(millis) or millis < 0:
        return None
    return min(millis / 1000.0, _MAX_RETRY_AFTER)


def _should_retry_header(exc: BaseException) -> bool | None:
    """The server's own verdict, ``x-should-retry: true|false`` (OpenAI, Anthropic)."""
    for headers in _response_headers(exc):
        value = _header(headers, "x-should-retry")
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value).decode("latin-1", "replace")
        if isinstance(value, str):
            verdict = value.strip().lower()
            if verdict in ("true", "false"):
                return verdict == "true"
    return None


def _int_value(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def jsonrpc_code(exc: BaseException) -> int | None:
    """The JSON-RPC error code an exception carries, or ``None``.

    ``mcp``'s ``McpError`` / ``MCPError`` keep it in ``.error.code``; other
    JSON-RPC clients in ``.code``. An integer in JSON-RPC's reserved range
    (-32768..-32000) counts wherever it is; any other integer only on a class
    named like a JSON-RPC error (``McpError``, ``JSONRPCError``...).
    """
    named = bool(_mro_names(exc) & _JSONRPC_NAMES)
    error = _safe_attr(exc, "error")
    if error is not None:
        code = (
            _safe_get(error, "code")
            if isinstance(error, Mapping)
            else _safe_attr(error, "code")
        )
        code = _int_value(code)
        if code is not None and (named or code in _JSONRPC_RESERVED):
            return code
    code = _int_value(_safe_attr(exc, "code"))
    if code is not None and (code in _JSONRPC_RESERVED or (named and error is None)):
        return code
    return None


def _safe_get(mapping: Mapping[Any, Any], key: str) -> Any:
    try:
        return mapping.get(key)
    except Exception:  # noqa: BLE001
        return None


def _jsonrpc_failure(code: int, reason: str) -> Failure:
    return _failure(_JSONRPC_CODES.get(code, "JSONRPC_SERVER_ERROR"), reason)


def _is_mcp_tool_error(exc: BaseException) -> bool:
    """``ToolError`` / ``ResourceError`` of the ``mcp`` SDK: failures a tool meant."""
    for cls in type(exc).__mro__:
        if cls.__name__ in ("ToolError", "ResourceError") and str(
            cls.__module__
        ).startswith(("mcp.", "fastmcp.")):
            return True
    return False


_compiled_text_rules: list[tuple[_TextRule, re.Pattern[str]]] = []


def _text_rules() -> list[tuple[_TextRule, re.Pattern[str]]]:
    """The rules, compiled on first use (most processes never need them)."""
    if not _compiled_text_rules:
        import http

        # Reason phrases of every 4xx/5xx status, longest first so the
        # alternation never stops at a prefix ("Request Timeout" vs "Request").
        phrases = sorted(
            {s.phrase for s in http.HTTPStatus if s.value >= 400} | _OLD_PHRASES,
            key=len,
            reverse=True,
        )
        status_phrase = (
            r"\b(?P<status>[45]\d\d)\s*(?:-\s*)?(?:client error|server error|"
            + "|".join(re.escape(p) for p in phrases)
            + r")\b"
        )
        compiled = [
            (rule, re.compile(rule.pattern or status_phrase, re.IGNORECASE))
            for rule in _TEXT_RULES
        ]
        _compiled_text_rules[:] = compiled  # one assignment: threads see all or none
    return _compiled_text_rules


def _classify_text(exc: BaseException) -> Failure | None:
    """Classify by the message alone: only for errors with no better signal."""
    text = _safe_str(exc)[:_TEXT_LIMIT]
    if not text:
        return None
    for rule, pattern in _text_rules():
        for match in pattern.finditer(text):
            groups = match.groupdict()
            if groups.get("status"):
                status = int(groups["status"])
                if status < 400:
                    continue  # "expected status 200, got 404": keep looking
                code = _HTTP_CODES.get(status) or (
                    "HTTP_SERVER_ERROR" if status >= 500 else "HTTP_CLIENT_ERROR"
                )
                return _failure(code, f"message says HTTP {status}")
            if groups.get("jsonrpc"):
                number = int(groups["jsonrpc"])
                return _jsonrpc_failure(number, f"message says JSON-RPC {number}")
            # The matched words are ours (the pattern's), never the rest of the text.
            return _failure(rule.code, f"message says {match.group(0).lower()!r}")
    return None


def reference_tables() -> dict[str, str]:
    """The built-in rules as Markdown tables, by name (the source of docs/taxonomy.md).

    ``http``: status -> code; ``grpc``: Google API gRPC status -> HTTP status;
    ``jsonrpc``: JSON-RPC/MCP error code -> code; ``text``: message patterns.
    """

    def row(*cells: object) -> str:
        return "| " + " | ".join(str(c) for c in cells) + " |"

    def kind(code: str) -> str:
        return CATALOG[code].kind

    http = [row("status", "code", "kind"), "|---|---|---|"]
    http += [row(n, f"`{c}`", kind(c)) for n, c in sorted(_HTTP_CODES.items())]
    http.append(row("other 4xx", "`HTTP_CLIENT_ERROR`", kind("HTTP_CLIENT_ERROR")))
    http.append(row("other 5xx", "`HTTP_SERVER_ERROR`", kind("HTTP_SERVER_ERROR")))
    grpc = [row("gRPC status", "as HTTP"), "|---|---|"]
    grpc += [row(f"`{name}`", status) for name, status in _GRPC_HTTP.items()]
    rpc = [row("JSON-RPC code", "code", "kind"), "|---|---|---|"]
    rpc += [row(n, f"`{c}`", kind(c)) for n, c in _JSONRPC_CODES.items()]
    rpc.append(row("any other", "`JSONRPC_SERVER_ERROR`", kind("JSONRPC_SERVER_ERROR")))
    text = [row("the message contains", "code", "kind"), "|---|---|---|"]
    text += [
        row(r.shows, f"`{r.code}`", kind(r.code))
        if r.code
        else row(r.shows, "by the number", "by the number")
        for r in _TEXT_RULES
    ]
    return {
        name: "\n".join(lines) + "\n"
        for name, lines in (
            ("http", http),
            ("grpc", grpc),
            ("jsonrpc", rpc),
            ("text", text),
        )
    }


def parse_retry_after(
    value: object, *, now: _dt.datetime | None = None
) -> float | None:
    """Parse a ``Retry-After`` value: delay seconds or an HTTP date.

    Returns seconds to wait (never negative, at most a week), or ``None`` when
    the value is missing or unreadable. Never raises.

    Args:
        value: The header value: text, bytes or a number of seconds.
        now: The current time for HTTP dates (default: now, UTC); a naive
            datetime is taken as UTC.
    """
    try:
        return _parse_retry_after(value, now)
    except Exception:  # noqa: BLE001 - outside input must never break a caller
        return None


def _parse_retry_after(value: object, now: _dt.datetime | None) -> float | None:
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("latin-1", "replace")
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip()
        if not text:
            return None
        try:
            seconds = float(text)
        except ValueError:
            import email.utils

            try:
                when = email.utils.parsedate_to_datetime(text)
            except (TypeError, ValueError, IndexError, OverflowError):
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=_dt.timezone.utc)
            current = now or _dt.datetime.now(_dt.timezone.utc)
            if current.tzinfo is None:
                current = current.replace(tzinfo=_dt.timezone.utc)
            seconds = (when - current).total_seconds()
            return min(max(0.0, seconds), _MAX_RETRY_AFTER)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, _MAX_RETRY_AFTER)


def _mro_names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def _from_entry(
    entry: CatalogEntry, reason: str, retry_after: float | None = None
) -> Failure:
    return Failure(entry.kind, entry.code, entry.retryable, retry_after, reason)


def _failure(code: str, reason: str, retry_after: float | None = None) -> Failure:
    return _from_entry(CATALOG[code], reason, retry_after)


def _classify_sqlite(exc: BaseException) -> Failure | None:
    sqlite3 = sys.modules.get("sqlite3")
    if sqlite3 is None or not isinstance(exc, sqlite3.Error):
        return None
    name = _safe_attr(exc, "sqlite_errorname")
    name = name if isinstance(name, str) else ""
    text = _safe_str(exc).lower()
    # A constraint message names user columns ("UNIQUE constraint failed:
    # jobs.locked"), so it is decided before any text matching.
    if isinstance(exc, sqlite3.IntegrityError) or name.startswith("SQLITE_CONSTRAINT"):
        return _failure("DB_CONSTRAINT", f"sqlite: {text}")
    # Python 3.11+ gives the result code name; 3.10 has only SQLite's fixed
    # messages, matched as whole phrases.
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or (
        not name and any(p in text for p in _SQLITE_LOCKED_PHRASES)
    ):
        return _failure("DB_LOCKED", f"sqlite: {text}")
    if name.startswith("SQLITE_CORRUPT") or (not name and "is malformed" in text):
        return _failure("DB_CORRUPT", f"sqlite: {text}")
    if name == "SQLITE_NOTADB" or (not name and "file is not a database" in text):
        return _failure("DB_NOT_A_DATABASE", f"sqlite: {text}")
    if name == "SQLITE_FULL" or (not name and "database or disk is full" in text):
        return _failure("DISK_FULL", f"sqlite: {text}")
    if name.startswith("SQLITE_READONLY") or (not name and "readonly database" in text):
        return _failure("DB_READONLY", f"sqlite: {text}")
    if isinstance(exc, (sqlite3.ProgrammingError, sqlite3.InterfaceError)):
        return _failure("PROGRAMMING_ERROR", f"sqlite misuse: {text}")
    return _failure("DB_ERROR", f"sqlite: {text}")


def _classify_oserror(exc: OSError, names: set[str]) -> Failure:
    name = type(exc).__name__
    if name in {"gaierror", "herror"}:
        return _failure("DNS_FAILURE", f"name resolution failed: {_safe_str(exc)}")
    number = _safe_attr(exc, "errno")
    if isinstance(number, int) and number in _ERRNO_CODES:
        code = _ERRNO_CODES[number]
        return _failure(code, f"errno {_errno.errorcode.get(number, number)}")
    for cls, code in _OSERROR_TYPES:
        if isinstance(exc, cls):
            return _failure(code, name)
    reason = _safe_attr(exc, "reason")  # urllib.error.URLError wraps the real error
    if isinstance(reason, BaseException) and reason is not exc:
        inner = _classify(reason)
        return Failure(
            inner.kind,
            inner.code,
            inner.retryable,
            inner.retry_after,
            f"{name}: {inner.reason}",
        )
    if names & _CONNECTION_NAMES:
        return _failure("CONNECTION_ERROR", name)
    by_text = _classify_text(exc)  # an OSError without errno: its text is all we have
    if by_text is not None:
        return by_text
    shown = number if isinstance(number, int) else None  # never repr() a stranger
    return _failure("OS_ERROR", f"{name} errno={shown!r}")


def _interruption(exc: BaseException) -> Failure | None:
    """Interrupts, exits and cancellation: never retryable, whatever the rules say.

    Uses ``type(exc)`` only, so an exception with a hostile ``__class__`` can
    not slip through.
    """
    cls = type(exc)
    if issubclass(cls, SystemExit):
        return _failure("SYSTEM_EXIT", "the process is exiting")
    if "CancelledError" in _mro_names(exc) or cls.__name__ == "Cancelled":
        # asyncio, anyio/trio, and concurrent.futures.CancelledError (an Exception)
        return _failure("CANCELLED", "the task was cancelled")
    if not issubclass(cls, Exception) or issubclass(
        cls, (KeyboardInterrupt, GeneratorExit)
    ):
        return _failure("INTERRUPTED", f"{cls.__name__} is never retried")
    return None


def _retry_after_attr(exc: BaseException) -> float | None:
    value = _safe_attr(exc, "retry_after")
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return parse_retry_after(value)


def _classify(exc: BaseException) -> Failure:
    # Interrupts come first: no rule may ever make them retryable.
    interrupted = _interruption(exc)
    if interrupted is not None:
        return interrupted

    entry = CATALOG._match(exc)
    if entry is not None:
        retry_after = _retry_after_attr(exc)
        if retry_after is None:
            retry_after = _headers_retry_after(exc)
        return _from_entry(entry, "matched a registered rule", retry_after)

    if carries_own_code(exc):
        # A subclass may have put anything there (or broken the attribute):
        # fall back to the class defaults rather than to UNCLASSIFIED.
        cls: Any = type(exc)
        raw_retryable = _safe_attr(exc, "retryable")
        try:
            retryable = (
                bool(cls.default_retryable)
                if raw_retryable is None
                else bool(raw_retryable)
            )
        except Exception:  # noqa: BLE001
            retryable = bool(cls.default_retryable)
        code = next(
            (
                c
                for c in (_safe_attr(exc, "code"), cls.default_code)
                if isinstance(c, str) and c
            ),
            "TRANSIENT" if retryable else "PERMANENT",
        )
        retry_after = _retry_after_attr(exc)
        known = CATALOG.get(code)
        if known is not None and known.retryable == retryable:
            return _from_entry(known, type(exc).__name__, retry_after)
        kind: Kind = "transient" if retryable else "permanent"
        return Failure(kind, code, retryable, retry_after, type(exc).__name__)

    if isinstance(exc, MemoryError):
        return _failure("OUT_OF_MEMORY", "MemoryError")
    if isinstance(exc, RecursionError):
        return _failure("RECURSION_LIMIT", "RecursionError")

    module = type(exc).__module__ or ""
    if type(exc).__name__ == "ValidationError" and module.startswith(
        ("pydantic", "jsonschema")
    ):
        return _failure("VALIDATION_ERROR", f"{module}.ValidationError")

    if _is_mcp_tool_error(exc):
        return _failure("TOOL_ERROR", type(exc).__name__)

    status = http_status(exc)
    if status is not None and status >= 400:
        return _classify_http(exc, status)

    rpc = jsonrpc_code(exc)
    if rpc is not None:
        return _jsonrpc_failure(rpc, f"{type(exc).__name__}: JSON-RPC {rpc}")

    sqlite_failure = _classify_sqlite(exc)
    if sqlite_failure is not None:
        return sqlite_failure

    names = _mro_names(exc)
    number = _safe_attr(exc, "errno")
    if isinstance(exc, OSError) and isinstance(number, int) and number in _ERRNO_CODES:
        # OSError(ETIMEDOUT, ...) is built as a TimeoutError; the errno is the
        # more precise fact.
        return _classify_oserror(exc, names)
    if isinstance(exc, TimeoutError) or (
        "TimeoutError" in names and not isinstance(exc, OSError)
    ):
        # builtin, asyncio.TimeoutError and concurrent.futures.TimeoutError on 3.10
        return _failure("TIMEOUT", type(exc).__name__)
    if names & _TLS_NAMES:
        return _failure("TLS_ERROR", type(exc).__name__)
    if names & _TIMEOUT_NAMES:
        return _failure("TIMEOUT", type(exc).__name__)
    if isinstance(exc, OSError):
        return _classify_oserror(exc, names)
    if names & _CONNECTION_NAMES:
        return _failure("CONNECTION_ERROR", type(exc).__name__)
    if isinstance(exc, EOFError):
        return _failure("CONNECTION_CLOSED", type(exc).__name__)
    if isinstance(exc, ImportError):
        return _failure("DEPENDENCY_MISSING", type(exc).__name__)
    if isinstance(exc, UnicodeError) or "JSONDecodeError" in names:
        return _failure("MALFORMED_DATA", type(exc).__name__)
    if isinstance(exc, _PROGRAMMING_ERRORS):
        return _failure("PROGRAMMING_ERROR", f"{type(exc).__name__} is a bug")
    # Only now, with no type, status, errno or code to go by, does the text count.
    by_text = _classify_text(exc)
    if by_text is not None:
        return by_text
    return _failure(
        "UNCLASSIFIED", f"unknown {type(exc).__qualname__}; treated as transient"
    )


def _classify_http(exc: BaseException, status: int) -> Failure:
    code = _HTTP_CODES.get(status) or (
        "HTTP_SERVER_ERROR" if status >= 500 else "HTTP_CLIENT_ERROR"
    )
    failure = _failure(code, f"HTTP {status}", _headers_retry_after(exc))
    # The OpenAI and Anthropic APIs say themselves whether a retry can help;
    # their SDKs obey that header over the status, and so do we.
    verdict = _should_retry_header(exc)
    if verdict is None or verdict == failure.retryable:
        return failure
    return Failure(
        "transient" if verdict else "permanent",
        code,
        verdict,
        failure.retry_after,
        f"HTTP {status}, x-should-retry: {'true' if verdict else 'false'}",
    )


def classify(exc: BaseException) -> Failure:
    """Decide whether ``exc`` is transient or permanent, and give it a code.

    Never raises for an exception instance, whatever its attributes do; a
    classification that fails internally yields ``UNCLASSIFIED``.

    Raises:
        TypeError: If ``exc`` is not an exception instance.
    """
    if not isinstance(exc, BaseException):
        raise TypeError(
            f"classify() needs an exception instance, got {type(exc).__name__}"
        )
    try:
        return _classify(exc)
    except Exception:  # noqa: BLE001 - classification must never raise
        return _interruption(exc) or _failure(
            "UNCLASSIFIED", "classification failed; treated as transient"
        )


def is_retryable(exc: BaseException) -> bool:
    """Whether a retry policy should try again after ``exc`` (the default ``on=``).

    Always ``False`` for ``KeyboardInterrupt``, ``SystemExit``,
    ``GeneratorExit`` and cancellation.
    """
    return classify(exc).retryable


def exit_code_for(exc: BaseException | None) -> int:
    """The process exit code for ``exc``: 0 for ``None``, else 10-49 by family.

    ``SystemExit`` with code 0 or ``None`` maps to 0 (a clean exit). Transient
    failures always get 20-29 and permanent ones never do, so a scheduler can
    decide "run again later?" from the exit status alone.
    """
    if exc is None:
        return 0
    if isinstance(exc, SystemExit):
        code = _safe_attr(exc, "code")
        if code is None or (isinstance(code, int) and code == 0):
            return 0
    # Through classify() so user rules win here too, and a hostile exception
    # (a ``code`` of the wrong type, raising properties) still gets a number.
    failure = classify(exc)
    entry = CATALOG.get(failure.code)
    if entry is not None and entry.kind == failure.kind:
        return entry.exit_code
    # Unknown code, or an error whose retryable flag overrides its code's kind
    # (TransientError(code="HTTP_NOT_FOUND")): stay in the kind's family.
    return 29 if failure.retryable else 41


def audit_event(exc: BaseException, /, **context: object) -> dict[str, Any]:
    """A JSON-serialisable record of ``exc`` for audit logs and event stores.

    Includes the classification (code, kind, exit code, recovery), the message
    and cause chain, the trace context and ``context`` merged over the error's
    own context. Values under secret-looking keys (token, secret, password,
    authorization, api_key, cookie...) and secrets in messages are redacted.
    """
    from .trace import current_trace

    failure = classify(exc)
    entry = CATALOG.get(failure.code)
    merged: dict[str, object] = {}
    own = _safe_attr(exc, "context") if carries_own_code(exc) else None
    if isinstance(own, Mapping):
        try:
            merged.update(own)
        except Exception:  # noqa: BLE001 - a hostile context must not break auditing
            merged["<context>"] = "<unreadable>"
    merged.update(context)
    causes: list[dict[str, str]] = []
    seen = {id(exc)}
    link = exc.__cause__ or exc.__context__
    while link is not None and len(causes) < 5 and id(link) not in seen:
        seen.add(id(link))
        causes.append(
            {
                "error_type": _qualname(link),
                "message": redact_text(_safe_str(link)[:500]),
            }
        )
        link = link.__cause__ or link.__context__
    record: dict[str, Any] = {
        "event": "paios_reliability.error",
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(),
        "error_type": _qualname(exc),
        "message": redact_text(_safe_str(exc)[:2000]),
        "code": failure.code,
        "kind": failure.kind,
        "retryable": failure.retryable,
        "retry_after": failure.retry_after,
        "reason": redact_text(failure.reason),
        "exit_code": exit_code_for(exc),
        "recovery": entry.recovery if entry else None,
        "summary": entry.summary if entry else None,
        "causes": causes,
        "context": json_safe(merged),
    }
    # Trace keys add to the record; they never replace what classify decided.
    for key, value in json_safe(dict(current_trace())).items():
        record.setdefault(key, value)
    return record


def _qualname(exc: BaseException) -> str:
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"
