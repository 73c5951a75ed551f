"""The one exception tree of paios_reliability.

Every exception the library raises derives from :class:`ReliabilityError`, so
``except ReliabilityError`` catches all of them. A builtin is mixed in only
where callers already catch it (``except TimeoutError``, ``except ValueError``)::

    Exception
    └── ReliabilityError                 code, retryable, exit_code, context
        ├── TransientError               retryable: trying again later may work
        │   ├── TimeoutExceeded          also a builtin TimeoutError
        │   │   └── ProcessTimeoutError  run_process ran out of time; partial output
        │   ├── CircuitOpenError         .breaker_name, .retry_after
        │   ├── RateLimitedError         .retry_after
        │   │   └── BulkheadFullError
        │   ├── LockConflictError        .key, .holder, .retry_after
        │   ├── StoreUnavailableError    .store (SQLite or Redis state store down)
        │   ├── RetryExhaustedError      every attempt's result was rejected; .last_result
        │   └── FailoverExhaustedError   every entry of a failover chain failed; .failures
        └── PermanentError               retrying cannot help
            ├── UnsupportedEventLoopError  also a builtin RuntimeError; .library
            ├── ConfigError              also a builtin ValueError; .path, .errors
            │   └── ConfigIOError        a file operation failed: also an OSError
            ├── CredentialError
            │   ├── CredentialIOError    a file operation failed: also an OSError
            │   ├── CredentialMissingError
            │   └── CredentialExpiredError
            ├── PolicyDeniedError
            │   ├── ApprovalRequiredError
            │   └── CapabilityDeniedError
            ├── IntegrityError           signature or checksum mismatch
            ├── ProcessError             also subprocess.CalledProcessError
            └── DatabaseError            also sqlite3.DatabaseError
                └── DatabaseOpenError    also sqlite3.OperationalError
        (TransientError)
            └── DatabaseLockedError      also sqlite3.OperationalError

(``ProcessError`` and ``ProcessTimeoutError`` live with ``run_process`` in
``_ops/process_result.py``, as they carry its result; the database errors live in
``_data/database.py``, so importing this module never imports ``sqlite3``.)

All of them pickle (they cross process boundaries in worker pools) and carry a
stable ``code`` from :data:`paios_reliability.CATALOG`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from .signals import trust_own_codes
from .typing_lite import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any, ClassVar

__all__ = [
    "ApprovalRequiredError",
    "BulkheadFullError",
    "CapabilityDeniedError",
    "CircuitOpenError",
    "FailoverExhaustedError",
    "ConfigError",
    "ConfigIOError",
    "CredentialError",
    "CredentialIOError",
    "CredentialExpiredError",
    "CredentialMissingError",
    "IntegrityError",
    "LockConflictError",
    "PermanentError",
    "PolicyDeniedError",
    "RateLimitedError",
    "ReliabilityError",
    "RetryExhaustedError",
    "StoreUnavailableError",
    "TimeoutExceeded",
    "TransientError",
    "UnsupportedEventLoopError",
]

_EMPTY: Mapping[str, object] = MappingProxyType({})


def _rebuild(
    cls: type[ReliabilityError], args: tuple[Any, ...], state: dict[str, Any]
) -> ReliabilityError:
    # An OSError subclass must be made by OSError.__new__ (its C struct).
    exc = OSError.__new__(cls) if issubclass(cls, OSError) else cls.__new__(cls)
    Exception.__init__(exc, *args)
    exc.__setstate__(state)
    return exc


def _restore_os_fields(exc: OSError, fields: tuple[Any, Any, Any]) -> None:
    exc.errno, exc.strerror, exc.filename = fields


class ReliabilityError(Exception):
    """Root of every exception raised by paios_reliability.

    Args:
        message: Human-readable description; it names what went wrong and where.
        code: Stable catalog code (see :data:`CATALOG`); defaults per class.
        retryable: Override of the class default.
        context: Extra JSON-safe facts for logs and audit events.

    Attributes:
        code: Stable, machine-readable error code.
        retryable: Whether trying again later can succeed.
        context: Read-only mapping of extra facts.
    """

    default_code: ClassVar[str] = "RELIABILITY_ERROR"
    default_retryable: ClassVar[bool] = False

    code: str
    retryable: bool
    context: Mapping[str, object]

    def __init__(
        self,
        message: str = "",
        *,
        code: str | None = None,
        retryable: bool | None = None,
        context: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code or self.default_code
        self.retryable = self.default_retryable if retryable is None else retryable
        self.context = MappingProxyType(dict(context)) if context else _EMPTY

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    @property
    def exit_code(self) -> int:
        """The process exit code for this error (10-49, stable per code).

        The same number as ``exit_code_for(self)``, so user catalog rules count.
        """
        from .taxonomy import exit_code_for

        return exit_code_for(self)

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        state = dict(self.__dict__)
        state["context"] = dict(self.context)
        if isinstance(self, OSError):
            # errno and filename live in the C struct, not in __dict__.
            state["__oserror__"] = (self.errno, self.strerror, self.filename)
        return (_rebuild, (type(self), self.args, state))

    def __setstate__(self, state: dict[str, Any] | None) -> None:
        if not state:
            return
        os_fields = state.pop("__oserror__", None)
        if os_fields is not None and isinstance(self, OSError):
            _restore_os_fields(self, os_fields)
        context = state.get("context")
        if isinstance(context, dict):
            state["context"] = MappingProxyType(context) if context else _EMPTY
        self.__dict__.update(state)


trust_own_codes(ReliabilityError)


class TransientError(ReliabilityError):
    """A failure that may succeed if tried again later."""

    default_code = "TRANSIENT"
    default_retryable = True


class PermanentError(ReliabilityError):
    """A failure that retrying cannot fix."""

    default_code = "PERMANENT"
    default_retryable = False


class TimeoutExceeded(TransientError, TimeoutError):
    """A call or block ran past its time budget.

    Also a builtin :class:`TimeoutError`, so existing ``except TimeoutError``
    handlers keep working.
    """

    default_code = "TIMEOUT"

    #: For a sync call given up on by ``timeout``: the abandoned worker,
    #: still running (``done()``, ``wait(seconds)``, ``add_done_callback``).
    #: Layers outside the timeout use it to keep a bulkhead slot, or to hold
    #: back the next retry attempt, until the work has really ended.
    worker: Any = None

    def __init__(
        self,
        message: str = "",
        *,
        seconds: float | None = None,
        code: str | None = None,
        context: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message, code=code, context=context)
        self.seconds = seconds


class CircuitOpenError(TransientError):
    """A circuit breaker is open and rejected the call without running it.

    Attributes:
        breaker_name: Name of the breaker that rejected the call.
        retry_after: Seconds until the breaker lets a probe call through.
    """

    default_code = "CIRCUIT_OPEN"

    def __init__(
        self,
        message: str = "",
        *,
        breaker_name: str,
        retry_after: float | None = None,
        context: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(
            message or f"circuit breaker {breaker_name!r} is open", context=context
        )
        self.breaker_name = breaker_name
        self.retry_after = retry_after


class RateLimitedError(TransientError):
    """A rate limit rejected the call.

    Attributes:
        retry_after: Seconds until a call would be admitted, when known.
    """

    default_code = "RATE_LIMITED"

    def __init__(
        self,
        message: str = "",
        *,
        retry_after: float | None = None,
        code: str | None = None,
        context: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message, code=code, context=context)
        self.retry_after = retry_after


class BulkheadFullError(RateLimitedError):
    """A bulkhead had no free slot (and no queue room) for the call."""

    default_code = "BULKHEAD_FULL"


class LockConflictError(TransientError):
    """A lock is held by someone else.

    Attributes:
        key: The lock key.
        holder: Identity of the current holder, when known.
        retry_after: Seconds until the current lease expires, when known.
    """

    default_code = "LOCK_CONFLICT"

    def __init__(
        self,
        message: str = "",
        *,
        key: str,
        holder: str | None = None,
        retry_after: float | None = None,
        context: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message or f"lock {key!r} is held", context=context)
        self.key = key
        self.holder = holder
        self.retry_after = retry_after


class StoreUnavailableError(TransientError):
    """A shared state store (SQLite, Redis) could not be read or written.

    Raised within a bounded time (socket timeouts, SQLite busy timeout), with
    the underlying error as ``__cause__``. Retryable, except when the cause is
    permanent (e.g. the SQLite path is not a database).

    Attributes:
        store: A short description of the store (``"sqlite:/path"``,
            ``"redis:host:port"``).
    """

    default_code = "STORE_UNAVAILABLE"

    def __init__(
        self,
        message: str = "",
        *,
        store: str = "",
        retryable: bool | None = None,
        context: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(
            message or f"state store {store} is unavailable",
            retryable=retryable,
            context={"store": store, **(context or {})},
        )
        self.store = store


class RetryExhaustedError(TransientError):
    """Every attempt returned a result ``retry(on_result=...)`` rejected.

    Raised only with ``raise_on_result=True``; otherwise the last result is
    returned.

    Attributes:
        last_result: The last (rejected) result.
        attempts: How many attempts were made.
    """

    default_code = "RETRY_EXHAUSTED"

    def __init__(
        self,
        message: str = "",
        *,
        last_result: Any = None,
        attempts: int = 0,
        context: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message, context=context)
        self.last_result = last_result
        self.attempts = attempts


class FailoverExhaustedError(TransientError):
    """Every entry of a :func:`~paios_reliability.failover` chain failed or was skipped.

    Attributes:
        failures: ``(entry name, exception)`` for every entry, in order (an
            entry skipped by its open breaker has its ``CircuitOpenError``).
    """

    default_code = "FAILOVER_EXHAUSTED"

    def __init__(
        self,
        message: str = "",
        *,
        failures: Sequence[tuple[str, BaseException]] = (),
        context: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message, context=context)
        self.failures = tuple(failures)


class UnsupportedEventLoopError(PermanentError, RuntimeError):
    """An async policy was awaited under an event loop it cannot run on.

    Raised on the first call, never turned into a fallback. Under trio,
    install the ``trio`` extra (anyio); other loops are not supported.
    Also a builtin :class:`RuntimeError`, which is what a missing asyncio
    loop raised before.

    Attributes:
        library: The async library found running (``"trio"``, ``"curio"``,
            ``"unknown"``...).
    """

    default_code = "UNSUPPORTED_EVENT_LOOP"

    def __init__(
        self,
        message: str = "",
        *,
        library: str = "unknown",
        context: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(
            message or f"paios_reliability cannot run under {library}",
            context={"library": library, **(context or {})},
        )
        self.library = library


class ConfigError(PermanentError, ValueError):
    """A configuration file or value is invalid.

    Also a builtin :class:`ValueError`.

    Attributes:
        path: The file the bad configuration came from, if any.
        errors: ``(field_path, message)`` pairs, one per bad field.
    """

    default_code = "CONFIG_INVALID"

    def __init__(
        self,
        message: str = "",
        *,
        path: str | None = None,
        errors: Sequence[tuple[str, str]] = (),
        code: str | None = None,
        context: Mapping[str, object] | None = None,
    ) -> None:
        self.path = path
        self.errors: tuple[tuple[str, str], ...] = tuple(
            (str(field), str(msg)) for field, msg in errors
        )
        if not message:
            where = f" in {path}" if path else ""
            detail = "; ".join(f"{f}: {m}" for f, m in self.errors)
            message = f"invalid configuration{where}" + (
                f": {detail}" if detail else ""
            )
        super().__init__(message, code=code, context=context)


def _copy_os_fields(exc: OSError, cause: OSError | None, path: str | None) -> None:
    if cause is not None:
        exc.errno = cause.errno
        exc.strerror = cause.strerror
        exc.filename = cause.filename if cause.filename is not None else path
    else:
        exc.filename = path


class ConfigIOError(ConfigError, OSError):
    """A configuration file could not be read, written or locked.

    Also a builtin :class:`OSError` (code that already has ``except
    OSError`` around its file handling keeps catching it), with the
    ``errno``, ``strerror`` and ``filename`` of the failed call, and still a
    :class:`ConfigError` (so also a :class:`ValueError`).
    """

    def __init__(
        self,
        message: str = "",
        *,
        path: str | None = None,
        errors: Sequence[tuple[str, str]] = (),
        code: str | None = None,
        context: Mapping[str, object] | None = None,
        cause: OSError | None = None,
    ) -> None:
        super().__init__(message, path=path, errors=errors, code=code, context=context)
        _copy_os_fields(self, cause, path)


class CredentialError(PermanentError):
    """A credential is unusable."""

    default_code = "CREDENTIAL_ERROR"


class CredentialIOError(CredentialError, OSError):
    """The credential store's file could not be read, written or locked.

    Also a builtin :class:`OSError` with the ``errno``, ``strerror`` and
    ``filename`` of the failed call.
    """

    def __init__(
        self,
        message: str = "",
        *,
        code: str | None = None,
        context: Mapping[str, object] | None = None,
        cause: OSError | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message, code=code, context=context)
        _copy_os_fields(self, cause, path)


class CredentialMissingError(CredentialError):
    """No credential is stored under the requested name."""

    default_code = "CREDENTIAL_MISSING"


class CredentialExpiredError(CredentialError):
    """A credential has expired and must be refreshed."""

    default_code = "CREDENTIAL_EXPIRED"


class PolicyDeniedError(PermanentError):
    """A policy forbids the operation."""

    default_code = "POLICY_DENIED"


class ApprovalRequiredError(PolicyDeniedError):
    """The operation needs a human approval first."""

    default_code = "APPROVAL_REQUIRED"


class CapabilityDeniedError(PolicyDeniedError):
    """The caller lacks a capability the operation needs."""

    default_code = "CAPABILITY_DENIED"


class IntegrityError(PermanentError):
    """Stored data failed a signature or checksum check."""

    default_code = "INTEGRITY_ERROR"


# Show (and pickle) the public path, not the private module.
for _name in __all__:
    globals()[_name].__module__ = "paios_reliability"
del _name
