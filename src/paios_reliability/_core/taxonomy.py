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

import builtins
import datetime as _dt
import errno as _errno
import functools
import itertools
import math
import re
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

from .exceptions import ReliabilityError
from .settings import Restorer

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

Kind = Literal["transient", "permanent"]
Recovery = Literal[
    "retry",
    "retry_after",
    "wait_for_lock",
    "reduce_load",
    "fail_fast",
    "fix_input",
    "fix_config",
    "fix_code",
    "refresh_credentials",
    "request_approval",
    "restore_backup",
    "free_resources",
    "escalate",
    "abort",
]
_KINDS = frozenset({"transient", "permanent"})
_RECOVERIES = frozenset(Recovery.__args__)  # type: ignore[attr-defined]


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


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One stable error code.

    Attributes:
        code: UPPER_SNAKE_CASE identifier, stable across releases.
        kind: ``"transient"`` or ``"permanent"``.
        exit_code: Process exit code, 10-49 by family.
        recovery: What an operator or a policy should do about it.
        summary: One line for humans.
    """

    code: str
    kind: Kind
    exit_code: int
    recovery: Recovery
    summary: str

    @property
    def retryable(self) -> bool:
        return self.kind == "transient"


_T: Literal["transient"] = "transient"
_P: Literal["permanent"] = "permanent"

# fmt: off
_ENTRIES: tuple[tuple[str, Kind, int, Recovery, str], ...] = (
    # 10-19: input, validation, configuration
    ("USAGE_ERROR", _P, 10, "fix_input", "A command or function was called with wrong arguments."),
    ("JSONRPC_PARSE_ERROR", _P, 11, "fix_code", "JSON-RPC -32700: the peer could not parse the message as JSON."),
    ("VALIDATION_ERROR", _P, 11, "fix_input", "Input failed validation (pydantic model or schema)."),
    ("MALFORMED_DATA", _P, 11, "fix_input", "Data could not be decoded or parsed (JSON, text encoding)."),
    ("CONFIG_INVALID", _P, 12, "fix_config", "A configuration file or value is invalid."),
    ("CONFIG_MISSING", _P, 13, "fix_config", "A required configuration file or value is missing."),
    ("HTTP_BAD_REQUEST", _P, 14, "fail_fast", "HTTP 400: the server rejected the request as malformed."),
    ("HTTP_UNPROCESSABLE", _P, 14, "fail_fast", "HTTP 422: the server could not process the request content."),
    ("JSONRPC_INVALID_REQUEST", _P, 14, "fix_code", "JSON-RPC -32600: the message is not a valid request object."),
    ("JSONRPC_INVALID_PARAMS", _P, 14, "fix_input", "JSON-RPC -32602: the peer rejected the parameters."),
    ("HTTP_NOT_FOUND", _P, 15, "fail_fast", "HTTP 404: the resource does not exist."),
    ("HTTP_GONE", _P, 15, "fail_fast", "HTTP 410: the resource was removed for good."),
    ("FILE_NOT_FOUND", _P, 15, "fix_config", "A file or directory does not exist (ENOENT)."),
    ("NOT_FOUND", _P, 15, "fail_fast", "The requested item does not exist (said only in text, or MCP -32002)."),
    ("HTTP_METHOD_NOT_ALLOWED", _P, 16, "fix_code", "HTTP 405: the method is not allowed on this resource."),
    ("IS_A_DIRECTORY", _P, 16, "fix_config", "A directory was given where a file was expected (EISDIR)."),
    ("NOT_A_DIRECTORY", _P, 16, "fix_config", "A file was given where a directory was expected (ENOTDIR)."),
    ("JSONRPC_METHOD_NOT_FOUND", _P, 16, "fail_fast", "JSON-RPC -32601: the method (or tool) does not exist on the peer."),
    ("HTTP_CONFLICT", _P, 17, "fail_fast", "HTTP 409: the request conflicts with the resource's state."),
    ("FILE_EXISTS", _P, 17, "fix_input", "A file that must not exist already does (EEXIST)."),
    ("DB_CONSTRAINT", _P, 17, "fix_input", "A database constraint (unique, foreign key, check) was violated."),
    ("HTTP_CLIENT_ERROR", _P, 18, "fail_fast", "HTTP 4xx: the server rejected the request."),
    ("HTTP_NOT_IMPLEMENTED", _P, 18, "fail_fast", "HTTP 501/505: the server does not support the request."),
    ("MCP_PROTOCOL_MISMATCH", _P, 18, "escalate", "MCP -32020..-32022: headers, client capabilities or protocol version do not match."),
    ("TOOL_ERROR", _P, 18, "fail_fast", "An MCP tool reported a failure it anticipated (ToolError); its text is for the model."),
    ("DEPENDENCY_MISSING", _P, 19, "escalate", "A module or program the code needs is not installed."),
    ("UNSUPPORTED_EVENT_LOOP", _P, 19, "fix_code", "An async policy ran under an event loop it cannot use (trio needs the trio extra)."),
    # 20-29: transient
    ("TRANSIENT", _T, 20, "retry", "A transient failure; trying again later may succeed."),
    ("RETRY_EXHAUSTED", _T, 20, "retry", "Every retry attempt returned a result the policy rejected."),
    ("TIMEOUT", _T, 21, "retry", "An operation ran past its time budget."),
    ("CONNECTION_TIMEOUT", _T, 21, "retry", "A network operation timed out (ETIMEDOUT)."),
    ("HTTP_REQUEST_TIMEOUT", _T, 21, "retry", "HTTP 408: the server timed out waiting for the request."),
    ("HTTP_GATEWAY_TIMEOUT", _T, 21, "retry", "HTTP 504: an upstream server did not answer in time."),
    ("CONNECTION_RESET", _T, 22, "retry", "The peer reset the connection (ECONNRESET)."),
    ("CONNECTION_REFUSED", _T, 22, "retry", "Nothing accepted the connection (ECONNREFUSED)."),
    ("CONNECTION_ABORTED", _T, 22, "retry", "The connection was aborted (ECONNABORTED)."),
    ("BROKEN_PIPE", _T, 22, "retry", "The peer closed the connection while we wrote (EPIPE)."),
    ("CONNECTION_ERROR", _T, 22, "retry", "A connection could not be made or was lost."),
    ("CONNECTION_CLOSED", _T, 22, "retry", "The peer closed the connection before a full answer (EOF)."),
    ("HOST_UNREACHABLE", _T, 23, "retry", "No route to the host (EHOSTUNREACH)."),
    ("NETWORK_UNREACHABLE", _T, 23, "retry", "The network is unreachable (ENETUNREACH)."),
    ("DNS_FAILURE", _T, 23, "retry", "A host name could not be resolved."),
    ("RESOURCE_BUSY", _T, 24, "retry", "A device or resource is busy (EBUSY)."),
    ("TRY_AGAIN", _T, 24, "retry", "The resource is temporarily unavailable (EAGAIN)."),
    ("INTERRUPTED_SYSCALL", _T, 24, "retry", "A system call was interrupted (EINTR)."),
    ("TOO_MANY_OPEN_FILES", _T, 24, "free_resources", "The process or system ran out of file descriptors."),
    ("OS_ERROR", _T, 24, "retry", "An operating-system error with no more specific code."),
    ("DB_LOCKED", _T, 24, "wait_for_lock", "SQLite stayed busy/locked past the busy timeout."),
    ("RATE_LIMITED", _T, 25, "retry_after", "A rate limit rejected the call; wait retry_after seconds."),
    ("HTTP_TOO_MANY_REQUESTS", _T, 25, "retry_after", "HTTP 429: the server asks us to slow down."),
    ("HTTP_TOO_EARLY", _T, 25, "retry", "HTTP 425: the server will not process a replayable request yet."),
    ("BULKHEAD_FULL", _T, 25, "reduce_load", "A bulkhead had no free slot for the call."),
    ("CIRCUIT_OPEN", _T, 26, "retry_after", "A circuit breaker is open; the call was not attempted."),
    ("HTTP_INTERNAL_SERVER_ERROR", _T, 27, "retry", "HTTP 500: the server failed."),
    ("HTTP_BAD_GATEWAY", _T, 27, "retry", "HTTP 502: an upstream server sent a bad answer."),
    ("HTTP_SERVICE_UNAVAILABLE", _T, 27, "retry_after", "HTTP 503: the server is overloaded or down."),
    ("HTTP_SERVER_ERROR", _T, 27, "retry", "HTTP 5xx: the server failed."),
    ("SERVICE_UNAVAILABLE", _T, 27, "retry", "A service said it is overloaded or unavailable (said only in text)."),
    ("JSONRPC_INTERNAL_ERROR", _T, 27, "retry", "JSON-RPC -32603: the peer failed internally."),
    ("JSONRPC_SERVER_ERROR", _T, 27, "retry", "JSON-RPC server-defined error (-32000..-32099 or an application code)."),
    ("LOCK_CONFLICT", _T, 28, "wait_for_lock", "A lock is held by another worker."),
    ("STORE_UNAVAILABLE", _T, 28, "retry", "The shared state store (SQLite, Redis) cannot be reached."),
    ("UNCLASSIFIED", _T, 29, "retry", "An unknown exception; treated as transient (bounded retries)."),
    # 30-39: policy, authentication, credentials
    ("HTTP_UNAUTHORIZED", _P, 30, "refresh_credentials", "HTTP 401: the credentials were missing or rejected."),
    ("CREDENTIAL_ERROR", _P, 31, "refresh_credentials", "A credential is unusable."),
    ("CREDENTIAL_MISSING", _P, 32, "fix_config", "No credential is stored under that name."),
    ("CREDENTIAL_EXPIRED", _P, 33, "refresh_credentials", "A credential has expired; refresh it."),
    ("HTTP_FORBIDDEN", _P, 34, "escalate", "HTTP 403: the credentials lack permission."),
    ("PERMISSION_DENIED", _P, 34, "escalate", "The OS denied access to a file or resource (EACCES)."),
    ("OPERATION_NOT_PERMITTED", _P, 34, "escalate", "The OS forbids the operation (EPERM)."),
    ("POLICY_DENIED", _P, 35, "escalate", "A policy forbids the operation."),
    ("APPROVAL_REQUIRED", _P, 36, "request_approval", "The operation needs a human approval first."),
    ("USER_ACTION_REQUIRED", _P, 36, "request_approval", "MCP -32042: the user must complete a step in a browser (URL elicitation) first."),
    ("CAPABILITY_DENIED", _P, 37, "escalate", "The caller lacks a capability the operation needs."),
    ("TLS_ERROR", _P, 38, "escalate", "A TLS handshake or certificate check failed."),
    # 40-49: internal, integrity, resources, interruption
    ("PROGRAMMING_ERROR", _P, 40, "fix_code", "A bug (TypeError, KeyError, ...); retrying never helps."),
    ("RECURSION_LIMIT", _P, 40, "fix_code", "The maximum recursion depth was exceeded."),
    ("RELIABILITY_ERROR", _P, 41, "escalate", "A paios_reliability error with no more specific code."),
    ("PERMANENT", _P, 41, "fail_fast", "A permanent failure; retrying cannot help."),
    ("INTEGRITY_ERROR", _P, 42, "restore_backup", "Stored data failed a signature or checksum check."),
    ("DB_CORRUPT", _P, 43, "restore_backup", "The SQLite database image is malformed."),
    ("DB_NOT_A_DATABASE", _P, 43, "restore_backup", "The file is not an SQLite database (or is encrypted)."),
    ("DB_ERROR", _P, 44, "escalate", "An SQLite error with no more specific code."),
    ("DB_READONLY", _P, 44, "escalate", "The database cannot be written (read-only file or mount)."),
    ("DISK_FULL", _P, 45, "free_resources", "No space left on the device (ENOSPC)."),
    ("READ_ONLY_FILESYSTEM", _P, 45, "escalate", "The file system is mounted read-only (EROFS)."),
    ("OUT_OF_MEMORY", _P, 46, "free_resources", "The process ran out of memory."),
    ("PROCESS_FAILED", _P, 47, "escalate", "A child process exited with a failure status."),
    ("INTERRUPTED", _P, 48, "abort", "Interrupted by the user or a generator close (never retried)."),
    ("CANCELLED", _P, 48, "abort", "The task was cancelled (never retried, never counted)."),
    ("SYSTEM_EXIT", _P, 49, "abort", "The process is exiting (SystemExit)."),
    # issue 19
    ("FAILOVER_EXHAUSTED", _T, 20, "retry", "Every entry of a failover chain failed or was skipped."),
)
# fmt: on

_CODE_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")


@dataclass(frozen=True, slots=True)
class _Rule:
    code: str
    type: type[BaseException] | tuple[type[BaseException], ...] | None
    errno: int | None
    status: int | None
    message: re.Pattern[str] | None
    predicate: Callable[[BaseException], bool] | None

    def matches(self, exc: BaseException) -> bool:
        if self.type is not None and not isinstance(exc, self.type):
            return False
        if self.errno is not None and _safe_attr(exc, "errno") != self.errno:
            return False
        if self.status is not None and http_status(exc) != self.status:
            return False
        if self.message is not None and not self.message.search(_safe_str(exc)):
            return False
        return self.predicate is None or bool(self.predicate(exc))


class Catalog:
    """The table of stable error codes, plus user classification rules.

    Read it like a mapping (``CATALOG["DB_LOCKED"]``, ``"X" in CATALOG``,
    iteration in code order). :meth:`register` adds a rule mapping some
    exceptions to a code (new or existing); user rules are consulted before the
    built-in classification, newest first. Thread-safe.
    """

    def __init__(
        self, entries: tuple[tuple[str, Kind, int, Recovery, str], ...]
    ) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, CatalogEntry] = {}
        self._builtin: frozenset[str] = frozenset()
        self._rules: tuple[_Rule, ...] = ()
        for code, kind, exit_code, recovery, summary in entries:
            self._add(CatalogEntry(code, kind, exit_code, recovery, summary))
        self._builtin = frozenset(self._entries)

    def _add(self, entry: CatalogEntry) -> None:
        if not _CODE_RE.match(entry.code):
            raise ValueError(f"catalog code {entry.code!r} must be UPPER_SNAKE_CASE")
        if entry.kind not in _KINDS:
            raise ValueError(
                f"catalog code {entry.code}: kind must be 'transient' or 'permanent', got {entry.kind!r}"
            )
        exit_code: object = entry.exit_code  # user input: may be any type
        if (
            not isinstance(exit_code, int)
            or isinstance(exit_code, bool)
            or not 10 <= exit_code <= 49
        ):
            raise ValueError(
                f"catalog code {entry.code}: exit_code must be an int in 10..49, got {entry.exit_code!r}"
            )
        # The families are a contract scripts rely on: 20-29 means "try again".
        if (entry.kind == _T) != (20 <= entry.exit_code <= 29):
            raise ValueError(
                f"catalog code {entry.code}: a {entry.kind} code needs an exit code "
                f"{'in 20..29' if entry.kind == _T else 'in 10..19 or 30..49'}, got {entry.exit_code}"
            )
        if entry.recovery not in _RECOVERIES:
            raise ValueError(
                f"catalog code {entry.code}: unknown recovery {entry.recovery!r}; one of {sorted(_RECOVERIES)}"
            )
        if not entry.summary.strip():
            raise ValueError(f"catalog code {entry.code}: summary must not be empty")
        self._entries[entry.code] = entry

    def __getitem__(self, code: str) -> CatalogEntry:
        return self._entries[code]

    def __contains__(self, code: object) -> bool:
        return code in self._entries

    def __iter__(self) -> Iterator[CatalogEntry]:
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, code: str) -> CatalogEntry | None:
        return self._entries.get(code)

    def exit_code(self, code: str, *, retryable: bool = False) -> int:
        """The exit code of ``code``; unknown codes get 29 (transient) or 41."""
        entry = self._entries.get(code)
        if entry is not None:
            return entry.exit_code
        return 29 if retryable else 41

    def register(
        self,
        code: str,
        *,
        type: type[BaseException] | tuple[type[BaseException], ...] | None = None,
        errno: int | None = None,
        status: int | None = None,
        message: str | re.Pattern[str] | None = None,
        predicate: Callable[[BaseException], bool] | None = None,
        kind: Kind | None = None,
        exit_code: int | None = None,
        recovery: Recovery | None = None,
        summary: str | None = None,
    ) -> Restorer:
        """Classify matching exceptions as ``code``; user rules win.

        A rule matches when *every* criterion given matches: ``type``
        (isinstance), ``errno``, HTTP ``status``, ``message`` (regex searched
        in ``str(exc)``) and ``predicate``. At least one is required.

        A new code needs ``kind`` and ``summary`` (``exit_code`` defaults to 29
        for transient, 41 for permanent; ``recovery`` to ``retry`` or
        ``fail_fast``). For an existing code, leave those out.

        Returns:
            A :class:`Restorer` that removes the rule (and a user-added code
            once no rule uses it any more).

        Raises:
            ValueError: On no criteria, a bad code or entry, or an attempt to
                redefine an existing code.
        """
        if (
            type is None
            and errno is None
            and status is None
            and message is None
            and predicate is None
        ):
            raise ValueError(
                "CATALOG.register() needs at least one of type, errno, status, message, predicate"
            )
        given: tuple[object, object] = (code, errno)  # callers may pass anything
        if not isinstance(given[0], str) or not _CODE_RE.match(given[0]):
            raise ValueError(
                f"CATALOG.register(): code must be UPPER_SNAKE_CASE, got {code!r}"
            )
        types = type if isinstance(type, tuple) else (type,)
        if type is not None and not (
            types
            and all(
                isinstance(t, builtins.type) and issubclass(t, BaseException)
                for t in types
            )
        ):
            raise ValueError(
                f"CATALOG.register({code!r}): type must be an exception class or a tuple of them, got {type!r}"
            )
        if errno is not None and (
            not isinstance(given[1], int) or isinstance(given[1], bool)
        ):
            raise ValueError(
                f"CATALOG.register({code!r}): errno must be an int, got {errno!r}"
            )
        if status is not None and _status_value(status) is None:
            raise ValueError(
                f"CATALOG.register({code!r}): status must be an int in 100..599, got {status!r}"
            )
        if predicate is not None and not callable(predicate):
            raise ValueError(
                f"CATALOG.register({code!r}): predicate must be callable, got {predicate!r}"
            )
        try:
            pattern = re.compile(message) if isinstance(message, str) else message
        except re.error as err:
            raise ValueError(
                f"CATALOG.register({code!r}): bad message regex {message!r}: {err}"
            ) from err
        if pattern is not None and not isinstance(pattern, re.Pattern):
            raise ValueError(
                f"CATALOG.register({code!r}): message must be a str or compiled regex, got {message!r}"
            )
        rule = _Rule(code, type, errno, status, pattern, predicate)
        with self._lock:
            if code in self._entries:
                if any(v is not None for v in (kind, exit_code, recovery, summary)):
                    raise ValueError(
                        f"CATALOG.register({code!r}): the code exists; pass only match criteria"
                    )
            else:
                if kind is None or summary is None:
                    raise ValueError(
                        f"CATALOG.register({code!r}): a new code needs kind= and summary="
                    )
                self._add(
                    CatalogEntry(
                        code,
                        kind,
                        exit_code
                        if exit_code is not None
                        else (29 if kind == _T else 41),
                        recovery or ("retry" if kind == _T else "fail_fast"),
                        summary,
                    )
                )
            self._rules = (rule, *self._rules)

        def undo() -> None:
            with self._lock:
                self._rules = tuple(r for r in self._rules if r is not rule)
                # A user code lives as long as some rule uses it, whichever
                # registration happened to create it.
                if code not in self._builtin and not any(
                    r.code == code for r in self._rules
                ):
                    self._entries.pop(code, None)

        return Restorer(undo)

    def snapshot(self) -> Restorer:
        """A restorer that drops every rule and code added after this call."""
        with self._lock:
            rules, entries = self._rules, dict(self._entries)

        def undo() -> None:
            with self._lock:
                self._rules, self._entries = rules, entries

        return Restorer(undo)

    def _match(self, exc: BaseException) -> CatalogEntry | None:
        for rule in self._rules:
            try:
                if rule.matches(exc):
                    return self._entries.get(rule.code)
            except Exception:  # noqa: BLE001, S112 - a broken user predicate must not break classify
                continue
        return None

    def to_markdown(self) -> str:
        """The catalog as a Markdown table (the source of docs/taxonomy.md)."""
        lines = [
            "| code | kind | exit | recovery | summary |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| `{e.code}` | {e.kind} | {e.exit_code} | {e.recovery} | {e.summary} |"
            for e in sorted(self, key=lambda e: (e.exit_code, e.code))
        ]
        return "\n".join(lines) + "\n"


CATALOG = Catalog(_ENTRIES)
"""The process-wide catalog of error codes (see :class:`Catalog`)."""


# -- classification ------------------------------------------------------------

_ERRNO_CODES: dict[int, str] = {
    code_num: name
    for name, code_num in (
        ("CONNECTION_TIMEOUT", getattr(_errno, "ETIMEDOUT", -1)),
        ("CONNECTION_RESET", getattr(_errno, "ECONNRESET", -1)),
        ("CONNECTION_REFUSED", getattr(_errno, "ECONNREFUSED", -1)),
        ("CONNECTION_ABORTED", getattr(_errno, "ECONNABORTED", -1)),
        ("BROKEN_PIPE", getattr(_errno, "EPIPE", -1)),
        ("HOST_UNREACHABLE", getattr(_errno, "EHOSTUNREACH", -1)),
        ("HOST_UNREACHABLE", getattr(_errno, "EHOSTDOWN", -1)),
        ("NETWORK_UNREACHABLE", getattr(_errno, "ENETUNREACH", -1)),
        ("NETWORK_UNREACHABLE", getattr(_errno, "ENETDOWN", -1)),
        ("CONNECTION_RESET", getattr(_errno, "ENETRESET", -1)),
        ("TRY_AGAIN", getattr(_errno, "EAGAIN", -1)),
        ("TRY_AGAIN", getattr(_errno, "EWOULDBLOCK", -1)),
        ("RESOURCE_BUSY", getattr(_errno, "EBUSY", -1)),
        ("INTERRUPTED_SYSCALL", getattr(_errno, "EINTR", -1)),
        ("TOO_MANY_OPEN_FILES", getattr(_errno, "EMFILE", -1)),
        ("TOO_MANY_OPEN_FILES", getattr(_errno, "ENFILE", -1)),
        ("PERMISSION_DENIED", getattr(_errno, "EACCES", -1)),
        ("OPERATION_NOT_PERMITTED", getattr(_errno, "EPERM", -1)),
        ("FILE_NOT_FOUND", getattr(_errno, "ENOENT", -1)),
        ("IS_A_DIRECTORY", getattr(_errno, "EISDIR", -1)),
        ("NOT_A_DIRECTORY", getattr(_errno, "ENOTDIR", -1)),
        ("FILE_EXISTS", getattr(_errno, "EEXIST", -1)),
        ("DISK_FULL", getattr(_errno, "ENOSPC", -1)),
        ("DISK_FULL", getattr(_errno, "EDQUOT", -1)),
        ("READ_ONLY_FILESYSTEM", getattr(_errno, "EROFS", -1)),
        ("OUT_OF_MEMORY", getattr(_errno, "ENOMEM", -1)),
    )
    if code_num != -1
}

# OSError subclasses raised without an errno (e.g. ``raise ConnectionResetError``).
_OSERROR_TYPES: tuple[tuple[type[OSError], str], ...] = (
    (ConnectionResetError, "CONNECTION_RESET"),
    (ConnectionRefusedError, "CONNECTION_REFUSED"),
    (ConnectionAbortedError, "CONNECTION_ABORTED"),
    (BrokenPipeError, "BROKEN_PIPE"),
    (ConnectionError, "CONNECTION_ERROR"),
    (TimeoutError, "TIMEOUT"),
    (BlockingIOError, "TRY_AGAIN"),
    (InterruptedError, "INTERRUPTED_SYSCALL"),
    (FileNotFoundError, "FILE_NOT_FOUND"),
    (FileExistsError, "FILE_EXISTS"),
    (IsADirectoryError, "IS_A_DIRECTORY"),
    (NotADirectoryError, "NOT_A_DIRECTORY"),
    (PermissionError, "PERMISSION_DENIED"),
)

_HTTP_CODES: Mapping[int, str] = {
    400: "HTTP_BAD_REQUEST",
    401: "HTTP_UNAUTHORIZED",
    403: "HTTP_FORBIDDEN",
    404: "HTTP_NOT_FOUND",
    405: "HTTP_METHOD_NOT_ALLOWED",
    408: "HTTP_REQUEST_TIMEOUT",
    409: "HTTP_CONFLICT",
    410: "HTTP_GONE",
    422: "HTTP_UNPROCESSABLE",
    425: "HTTP_TOO_EARLY",
    429: "HTTP_TOO_MANY_REQUESTS",
    500: "HTTP_INTERNAL_SERVER_ERROR",
    501: "HTTP_NOT_IMPLEMENTED",
    502: "HTTP_BAD_GATEWAY",
    503: "HTTP_SERVICE_UNAVAILABLE",
    504: "HTTP_GATEWAY_TIMEOUT",
    505: "HTTP_NOT_IMPLEMENTED",
}

# Transport errors of HTTP clients, recognised by class name anywhere in the MRO
# (httpx, requests, urllib3, aiohttp) so none of them is imported.
_TIMEOUT_NAMES = frozenset(
    {
        "TimeoutException", "ConnectTimeout", "ReadTimeout", "WriteTimeout",
        "PoolTimeout", "Timeout", "ServerTimeoutError", "ConnectionTimeoutError",
        "SocketTimeoutError", "TimeoutError", "APITimeoutError",
    }
)  # fmt: skip
_CONNECTION_NAMES = frozenset(
    {
        "ConnectError", "ReadError", "WriteError", "NetworkError", "RemoteProtocolError",
        "ConnectionError", "ClientConnectionError", "ClientConnectorError",
        "ServerDisconnectedError", "ClientOSError", "ProtocolError",
        "IncompleteRead", "ChunkedEncodingError", "ClientPayloadError",
        "APIConnectionError",
    }
)  # fmt: skip
_TLS_NAMES = frozenset(
    {
        "SSLError",
        "SSLCertVerificationError",
        "ClientSSLError",
        "ClientConnectorCertificateError",
    }
)
_PROGRAMMING_ERRORS: tuple[type[BaseException], ...] = (
    TypeError,
    ValueError,
    KeyError,
    AttributeError,
    IndexError,
    AssertionError,
    NotImplementedError,
    ZeroDivisionError,
    NameError,
    StopIteration,
    StopAsyncIteration,
)
_MAX_RETRY_AFTER = 7 * 24 * 3600.0


def _safe_attr(obj: object, name: str) -> Any:
    try:
        return getattr(obj, name, None)
    except Exception:  # noqa: BLE001 - a raising property must not break classify
        return None


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # noqa: BLE001
        return f"<unprintable {type(exc).__name__}>"


def _status_value(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
        return value
    return None


# google.api_core.exceptions carry an HTTP ``code`` and a gRPC status; this is
# the library's own gRPC -> HTTP table, so both spellings classify alike.
_GRPC_HTTP: Mapping[str, int] = {
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}
_GRPC_NUMBERS: Mapping[int, str] = {
    1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND", 6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION", 10: "ABORTED",
    11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED", 13: "INTERNAL", 14: "UNAVAILABLE",
    15: "DATA_LOSS", 16: "UNAUTHENTICATED",
}  # fmt: skip


def _grpc_status(value: Any) -> int | None:
    """The HTTP status of a gRPC status: a ``grpc.StatusCode``, its name or number."""
    if value is None:
        return None
    name = value if isinstance(value, str) else _safe_attr(value, "name")
    if not isinstance(name, str):
        # grpc.StatusCode.NOT_FOUND.value == (5, "not found")
        number = _safe_attr(value, "value")
        if isinstance(number, tuple) and number:
            number = number[0]
        elif number is None:
            number = value
        if isinstance(number, int) and not isinstance(number, bool):
            name = _GRPC_NUMBERS.get(number)
    return _GRPC_HTTP.get(name.upper()) if isinstance(name, str) else None


def http_status(exc: BaseException) -> int | None:
    """The HTTP status an exception carries, duck-typed across client libraries.

    Looks at ``response.status_code`` / ``response.status`` (httpx, requests,
    the OpenAI and Anthropic SDKs), ``status_code`` / ``status`` (aiohttp,
    the SDKs), urllib's ``code`` next to its headers, and Google API errors'
    ``code`` or ``grpc_status_code`` (mapped as ``google.api_core`` does).
    """
    response = _safe_attr(exc, "response")
    if response is not None:
        status = _status_value(_safe_attr(response, "status_code")) or _status_value(
            _safe_attr(response, "status")
        )
        if status is not None:
            return status
    status = _status_value(_safe_attr(exc, "status_code")) or _status_value(
        _safe_attr(exc, "status")
    )
    if status is not None:
        return status
    # urllib.error.HTTPError: ``.code`` plus headers; guard so unrelated ``.code``
    # attributes (ours are strings, SystemExit's may be ints) never match.
    if _safe_attr(exc, "headers") is not None or _safe_attr(exc, "hdrs") is not None:
        return _status_value(_safe_attr(exc, "code"))
    # google.api_core.exceptions.GoogleAPICallError: ``code`` is an HTTP status
    # (or None) and ``grpc_status_code`` a grpc.StatusCode; both are class
    # attributes there, so their presence is the guard.
    if _has_attr(exc, "grpc_status_code"):
        return _status_value(_safe_attr(exc, "code")) or _grpc_status(
            _safe_attr(exc, "grpc_status_code")
        )
    return None


def _has_attr(obj: object, name: str) -> bool:
    try:
        return hasattr(obj, name)
    except Exception:  # noqa: BLE001 - hasattr only swallows AttributeError
        return False


def _header(headers: Any, name: str) -> Any:
    """The value of header ``name`` (lower case) in any mapping-like headers.

    httpx, requests and aiohttp headers ignore case; a plain dict does not,
    so the usual spellings are tried, then a bounded case-insensitive scan.
    """
    for key in (name, name.title(), name.upper()):
        try:
            value = headers.get(key)
        except Exception:  # noqa: BLE001 - headers of a stranger may do anything
            return None
        if value is not None:
            return value
    try:
        for key, value in itertools.islice(headers.items(), 200):
            if isinstance(key, str) and key.lower() == name:
                return value
    except Exception:  # noqa: BLE001, S110 - not a mapping after all
        pass
    return None


def _response_headers(exc: BaseException) -> Iterator[Any]:
    """The header collections an exception carries: its response's, then its own."""
    for owner in (_safe_attr(exc, "response"), exc):
        if owner is None:
            continue
        headers = _safe_attr(owner, "headers")
        if headers is None:
            headers = _safe_attr(owner, "hdrs")
        if headers is not None:
            yield headers


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


# -- JSON-RPC and MCP errors ------------------------------------------------------

_JSONRPC_CODES: Mapping[int, str] = {
    -32700: "JSONRPC_PARSE_ERROR",
    -32600: "JSONRPC_INVALID_REQUEST",
    -32601: "JSONRPC_METHOD_NOT_FOUND",
    -32602: "JSONRPC_INVALID_PARAMS",
    -32603: "JSONRPC_INTERNAL_ERROR",
    # MCP's allocations in the server-error band -32000..-32099:
    -32000: "CONNECTION_CLOSED",  # SDK: the connection closed before an answer
    -32001: "TIMEOUT",  # SDK: the request timed out
    -32002: "NOT_FOUND",  # resource not found (retired; older servers send it)
    -32020: "MCP_PROTOCOL_MISMATCH",  # headers do not match the body
    -32021: "MCP_PROTOCOL_MISMATCH",  # a required client capability is missing
    -32022: "MCP_PROTOCOL_MISMATCH",  # unsupported protocol version
    -32042: "USER_ACTION_REQUIRED",  # URL elicitation required
}
# -32768..-32000 is reserved by JSON-RPC itself: an integer there names a
# JSON-RPC error whatever class carries it.
_JSONRPC_RESERVED = range(-32768, -31999)
_JSONRPC_NAMES = frozenset(
    {"McpError", "MCPError", "JSONRPCError", "JsonRpcError", "JSONRPCException"}
)


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


# -- errors that are only text -----------------------------------------------------

_STATUS_WORDS = (
    r"(?:https?(?:\s+error)?|status(?:\s+code)?|status_code|error\s+code"
    r"|response\s+code)"
)


@dataclass(frozen=True, slots=True)
class _TextRule:
    """One built-in message pattern; ``code`` empty means the number decides."""

    shows: str
    code: str
    pattern: str


# Tried in order, first match wins: numbers (HTTP status, JSON-RPC code), then
# errno names, then specific phrases (permanent before transient, so an
# "invalid params: timeout must be > 0" is never retried), then generic words.
_TEXT_RULES: tuple[_TextRule, ...] = (
    _TextRule("`status 404`, `HTTP 503`, `status code: 429`, `error code: 500`", "",
              rf"\b{_STATUS_WORDS}\s*[:=]?\s*(?P<status>[1-5]\d\d)\b"),
    _TextRule("`404 Not Found`, `429 Too Many Requests`, `503 Server Error`", "", ""),
    _TextRule("`MCP error -32601`, `code: -32602` (JSON-RPC codes, table above)", "",
              r"\b(?:error|code)\b\W{0,3}(?P<jsonrpc>-32\d{3})(?!\d)"),
    _TextRule("`ECONNRESET`", "CONNECTION_RESET", r"\bECONNRESET\b"),
    _TextRule("`ECONNREFUSED`", "CONNECTION_REFUSED", r"\bECONNREFUSED\b"),
    _TextRule("`ETIMEDOUT`, `ESOCKETTIMEDOUT`", "CONNECTION_TIMEOUT", r"\bE(?:SOCKET)?TIMEDOUT\b"),
    _TextRule("`EPIPE`", "BROKEN_PIPE", r"\bEPIPE\b"),
    _TextRule("`ECONNABORTED`", "CONNECTION_ABORTED", r"\bECONNABORTED\b"),
    _TextRule("`EHOSTUNREACH`, `EHOSTDOWN`", "HOST_UNREACHABLE", r"\bEHOST(?:UNREACH|DOWN)\b"),
    _TextRule("`ENETUNREACH`, `ENETDOWN`", "NETWORK_UNREACHABLE", r"\bENET(?:UNREACH|DOWN)\b"),
    _TextRule("`ENOTFOUND`, `EAI_AGAIN`, `EAI_NONAME`", "DNS_FAILURE", r"\b(?:ENOTFOUND|EAI_AGAIN|EAI_NONAME)\b"),
    _TextRule("`method not found`", "JSONRPC_METHOD_NOT_FOUND", r"\bmethod not found\b"),
    _TextRule("`invalid params`, `invalid parameter(s)`, `invalid argument(s)`, `missing required parameter`",
              "USAGE_ERROR",
              r"\binvalid (?:params?|parameters?|arguments?)\b"
              r"|\bmissing required (?:params?|parameters?|arguments?)\b"),
    _TextRule("`unauthorized`, `unauthenticated`, `invalid api key`, `authentication failed`",
              "CREDENTIAL_ERROR",
              r"\bunauthori[sz]ed\b|\bunauthenticated\b|\b(?:invalid|incorrect) api[ _-]?key\b"
              r"|\bauthentication (?:failed|required|error)\b"),
    _TextRule("`forbidden`", "HTTP_FORBIDDEN", r"\bforbidden\b"),
    _TextRule("`permission denied`, `access denied`", "PERMISSION_DENIED",
              r"\b(?:permission|access) denied\b"),
    _TextRule("`bad request`", "HTTP_BAD_REQUEST", r"\bbad request\b"),
    _TextRule("`unprocessable entity`", "HTTP_UNPROCESSABLE", r"\bunprocessable (?:entity|content)\b"),
    _TextRule("`no such file or directory`", "FILE_NOT_FOUND", r"\bno such file or directory\b"),
    _TextRule("`socket hang up`, `connection reset`", "CONNECTION_RESET",
              r"\bsocket hang up\b|\bconnection reset\b"),
    _TextRule("`connection refused`", "CONNECTION_REFUSED", r"\bconnection refused\b"),
    _TextRule("`broken pipe`", "BROKEN_PIPE", r"\bbroken pipe\b"),
    _TextRule("`name or service not known`, `could not resolve host`, `host not found`, "
              "`temporary failure in name resolution`", "DNS_FAILURE",
              r"\bname or service not known\b|\bcould not resolve host\b|\bhost not found\b"
              r"|\btemporary failure in name resolution\b|\bgetaddrinfo failed\b"
              r"|\bnodename nor servname\b"),
    _TextRule("`no route to host`", "HOST_UNREACHABLE", r"\bno route to host\b"),
    _TextRule("`network is unreachable`", "NETWORK_UNREACHABLE", r"\bnetwork is unreachable\b"),
    _TextRule("`too many requests`, `rate limit`, `rate_limit_error`, `throttled`", "RATE_LIMITED",
              r"\btoo many requests\b|\brate[ _-]?limit|\bthrottl(?:ed|ing)\b"),
    _TextRule("`overloaded`, `overloaded_error`", "SERVICE_UNAVAILABLE", r"\boverloaded"),
    _TextRule("`service unavailable`, `temporarily unavailable`, `server is busy`, `try again later`",
              "SERVICE_UNAVAILABLE",
              r"\bservice unavailable\b|\btemporarily unavailable\b|\bserver is busy\b"
              r"|\btry again later\b"),
    _TextRule("`bad gateway`", "HTTP_BAD_GATEWAY", r"\bbad gateway\b"),
    _TextRule("`gateway timeout`", "HTTP_GATEWAY_TIMEOUT", r"\bgateway time-?out\b"),
    _TextRule("`internal server error`", "HTTP_INTERNAL_SERVER_ERROR", r"\binternal server error\b"),
    _TextRule("`server disconnected`, `connection closed`, `unexpected EOF`", "CONNECTION_CLOSED",
              r"\bserver disconnected\b|\bconnection (?:was )?closed\b|\bremote end closed\b"
              r"|\bunexpected eof\b"),
    _TextRule("`not found`, `does not exist`, `no such`", "NOT_FOUND",
              r"\bnot found\b|\bdoes(?: not|n't) exist\b|\bno such\b"),
    _TextRule("`timeout`, `timed out`", "TIMEOUT", r"\btime(?:d)?[ -]?out\b"),
)  # fmt: skip
_TEXT_LIMIT = 2000
# Reason phrases renamed by RFC 9110 (Python 3.13 has only the new ones);
# servers and SDKs still send the old.
_OLD_PHRASES = frozenset(
    {
        "Request Entity Too Large",
        "Payload Too Large",
        "Requested Range Not Satisfiable",
        "Unprocessable Entity",
        "Content Too Large",
        "Unprocessable Content",
        "Range Not Satisfiable",
    }
)
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


_SQLITE_LOCKED_PHRASES = (
    "database is locked",
    "database table is locked",
    "database schema is locked",
    "database is busy",
)


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

    if isinstance(exc, ReliabilityError):
        # A subclass may have put anything there (or broken the attribute):
        # fall back to the class defaults rather than to UNCLASSIFIED.
        cls = type(exc)
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
    own = _safe_attr(exc, "context") if isinstance(exc, ReliabilityError) else None
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
