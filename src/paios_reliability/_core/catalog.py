"""The catalog of stable error codes: what each code means and how to recover.

:data:`CATALOG` lists every stable code with its kind, exit code, recovery mode
and a one-line summary, plus the classification rules users register. Exit
codes come in families::

    0       success
    10-19   input, validation, configuration
    20-29   transient: network, timeouts, contention, overload
    30-39   policy, authentication, credentials
    40-49   internal, integrity, resources, interruption
"""

from __future__ import annotations

import builtins
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from .settings import Restorer
from .signals import _safe_attr, _safe_str, _status_value, http_status

__all__ = [
    "CATALOG",
    "Catalog",
    "CatalogEntry",
    "Kind",
    "Recovery",
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
