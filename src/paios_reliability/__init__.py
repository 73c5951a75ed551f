"""paios_reliability: make the Python parts of an AI-agent system production-grade.

Every public name is importable from here. They are loaded on first use
(PEP 562), so ``import paios_reliability`` stays cheap for short-lived hook
processes: it imports none of pydantic, tenacity, structlog or redis.
"""

from __future__ import annotations

import importlib

# Not `from typing import TYPE_CHECKING`: importing typing alone costs ~12 ms,
# most of this package's import budget. Type checkers treat the name specially.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._alerts import (
        Alert,
        AlertChannel,
        AlertDispatcher,
        AlertLevel,
        DesktopChannel,
        EventStoreChannel,
        LogChannel,
        WebhookChannel,
        daily_report,
    )
    from ._atomic import atomic_open, atomic_write
    from ._boundary import error_boundary
    from ._breaker import CircuitBreaker, CircuitBreakerStats
    from ._bulkhead import Bulkhead, BulkheadStats
    from ._cas import (
        CASResult,
        Versioned,
        acompare_and_set,
        aget_versioned,
        compare_and_set,
        get_versioned,
    )
    from ._checkpoint import Checkpoint, CheckpointStore, ResumePlan
    from ._config import Restorer, is_active, set_active
    from ._config_file import ConfigFile, SaveResult
    from ._crash import CrashHandler, install_crash_handler
    from ._credentials import Credential, CredentialStore
    from ._events import Event, add_event_hook, set_log_summary
    from ._eventstore import EventStore, StoredEvent
    from ._exceptions import (
        ApprovalRequiredError,
        BulkheadFullError,
        CapabilityDeniedError,
        CircuitOpenError,
        ConfigError,
        CredentialError,
        CredentialExpiredError,
        CredentialMissingError,
        IntegrityError,
        LockConflictError,
        PermanentError,
        PolicyDeniedError,
        RateLimitedError,
        ReliabilityError,
        RetryExhaustedError,
        StoreUnavailableError,
        TimeoutExceeded,
        TransientError,
        UnsupportedEventLoopError,
    )
    from ._health import (
        HealthCheckResult,
        HealthRegistry,
        HealthReport,
    )
    from ._idempotency import IdempotencyStore, idempotency_key, idempotent
    from ._leaks import (
        AllocationSite,
        LeakMonitor,
        LeakReport,
        ResourceTracker,
        TrackedResource,
    )
    from ._locks import Lease, LockManager
    from ._metrics import (
        Counter,
        Gauge,
        Histogram,
        MetricsRegistry,
        counter,
        export_opentelemetry,
        export_prometheus,
        gauge,
        get_metrics,
        histogram,
        set_metrics,
    )
    from ._observe import configure_logging, current_trace, trace
    from ._outcome import Outcome
    from ._policy import CallPolicy, resilient
    from ._process import (
        ProcessError,
        ProcessResult,
        ProcessTimeoutError,
        arun_process,
        run_process,
    )
    from ._ratelimit import OccurrenceThreshold, RateLimiter, Throttle
    from ._recycle import Recycler, RecyclingWorker
    from ._retry import retry, retry_context
    from ._service import render_launchd, render_systemd
    from ._signed import VOLATILE_KEYS, read_signed, stable_hash, write_signed
    from ._sqlite import (
        DatabaseReport,
        check_database,
        checkpoint,
        open_database,
        read_transaction,
        write_transaction,
    )
    from ._stores import MemoryStore
    from ._stores._redis import RedisStore
    from ._stores._sqlite import SQLiteStore
    from ._taxonomy import (
        CATALOG,
        Catalog,
        CatalogEntry,
        Failure,
        audit_event,
        classify,
        exit_code_for,
        is_retryable,
    )
    from ._timeout import deadline, remaining, timeout

# public name -> private module that defines it
_LAZY: dict[str, str] = {
    "Alert": "_alerts",
    "AlertChannel": "_alerts",
    "AlertDispatcher": "_alerts",
    "AlertLevel": "_alerts",
    "AllocationSite": "_leaks",
    "ApprovalRequiredError": "_exceptions",
    "Bulkhead": "_bulkhead",
    "BulkheadFullError": "_exceptions",
    "BulkheadStats": "_bulkhead",
    "CASResult": "_cas",
    "CATALOG": "_taxonomy",
    "CallPolicy": "_policy",
    "CapabilityDeniedError": "_exceptions",
    "Catalog": "_taxonomy",
    "CatalogEntry": "_taxonomy",
    "Checkpoint": "_checkpoint",
    "CheckpointStore": "_checkpoint",
    "CircuitBreaker": "_breaker",
    "CircuitBreakerStats": "_breaker",
    "CircuitOpenError": "_exceptions",
    "ConfigError": "_exceptions",
    "ConfigFile": "_config_file",
    "Counter": "_metrics",
    "CrashHandler": "_crash",
    "Credential": "_credentials",
    "CredentialError": "_exceptions",
    "CredentialExpiredError": "_exceptions",
    "CredentialMissingError": "_exceptions",
    "CredentialStore": "_credentials",
    "DatabaseReport": "_sqlite",
    "DesktopChannel": "_alerts",
    "Event": "_events",
    "EventStore": "_eventstore",
    "EventStoreChannel": "_alerts",
    "Failure": "_taxonomy",
    "Gauge": "_metrics",
    "HealthCheckResult": "_health",
    "HealthRegistry": "_health",
    "HealthReport": "_health",
    "Histogram": "_metrics",
    "IdempotencyStore": "_idempotency",
    "IntegrityError": "_exceptions",
    "LeakMonitor": "_leaks",
    "LeakReport": "_leaks",
    "Lease": "_locks",
    "LockConflictError": "_exceptions",
    "LockManager": "_locks",
    "LogChannel": "_alerts",
    "MemoryStore": "_stores",
    "MetricsRegistry": "_metrics",
    "OccurrenceThreshold": "_ratelimit",
    "Outcome": "_outcome",
    "PermanentError": "_exceptions",
    "PolicyDeniedError": "_exceptions",
    "ProcessError": "_process",
    "ProcessResult": "_process",
    "ProcessTimeoutError": "_process",
    "RateLimitedError": "_exceptions",
    "RateLimiter": "_ratelimit",
    "Recycler": "_recycle",
    "RecyclingWorker": "_recycle",
    "RedisStore": "_stores._redis",
    "ReliabilityError": "_exceptions",
    "ResourceTracker": "_leaks",
    "Restorer": "_config",
    "ResumePlan": "_checkpoint",
    "SQLiteStore": "_stores._sqlite",
    "SaveResult": "_config_file",
    "RetryExhaustedError": "_exceptions",
    "StoreUnavailableError": "_exceptions",
    "StoredEvent": "_eventstore",
    "Throttle": "_ratelimit",
    "TimeoutExceeded": "_exceptions",
    "TrackedResource": "_leaks",
    "TransientError": "_exceptions",
    "UnsupportedEventLoopError": "_exceptions",
    "Versioned": "_cas",
    "WebhookChannel": "_alerts",
    "acompare_and_set": "_cas",
    "add_event_hook": "_events",
    "aget_versioned": "_cas",
    "arun_process": "_process",
    "atomic_open": "_atomic",
    "atomic_write": "_atomic",
    "audit_event": "_taxonomy",
    "check_database": "_sqlite",
    "checkpoint": "_sqlite",
    "classify": "_taxonomy",
    "compare_and_set": "_cas",
    "configure_logging": "_observe",
    "counter": "_metrics",
    "current_trace": "_observe",
    "daily_report": "_alerts",
    "deadline": "_timeout",
    "error_boundary": "_boundary",
    "exit_code_for": "_taxonomy",
    "export_opentelemetry": "_metrics",
    "export_prometheus": "_metrics",
    "gauge": "_metrics",
    "get_metrics": "_metrics",
    "get_versioned": "_cas",
    "histogram": "_metrics",
    "idempotency_key": "_idempotency",
    "idempotent": "_idempotency",
    "install_crash_handler": "_crash",
    "is_active": "_config",
    "is_retryable": "_taxonomy",
    "open_database": "_sqlite",
    "read_signed": "_signed",
    "read_transaction": "_sqlite",
    "remaining": "_timeout",
    "render_launchd": "_service",
    "render_systemd": "_service",
    "resilient": "_policy",
    "retry": "_retry",
    "retry_context": "_retry",
    "run_process": "_process",
    "set_active": "_config",
    "set_log_summary": "_events",
    "set_metrics": "_metrics",
    "stable_hash": "_signed",
    "VOLATILE_KEYS": "_signed",
    "timeout": "_timeout",
    "trace": "_observe",
    "write_signed": "_signed",
    "write_transaction": "_sqlite",
}

__all__ = [
    "Alert",
    "AlertChannel",
    "AlertDispatcher",
    "AlertLevel",
    "AllocationSite",
    "ApprovalRequiredError",
    "Bulkhead",
    "BulkheadFullError",
    "BulkheadStats",
    "CASResult",
    "CATALOG",
    "CallPolicy",
    "CapabilityDeniedError",
    "Catalog",
    "CatalogEntry",
    "Checkpoint",
    "CheckpointStore",
    "CircuitBreaker",
    "CircuitBreakerStats",
    "CircuitOpenError",
    "ConfigError",
    "ConfigFile",
    "Counter",
    "CrashHandler",
    "Credential",
    "CredentialError",
    "CredentialExpiredError",
    "CredentialMissingError",
    "CredentialStore",
    "DatabaseReport",
    "DesktopChannel",
    "Event",
    "EventStore",
    "EventStoreChannel",
    "Failure",
    "Gauge",
    "HealthCheckResult",
    "HealthRegistry",
    "HealthReport",
    "Histogram",
    "IdempotencyStore",
    "IntegrityError",
    "LeakMonitor",
    "LeakReport",
    "Lease",
    "LockConflictError",
    "LockManager",
    "LogChannel",
    "MemoryStore",
    "MetricsRegistry",
    "OccurrenceThreshold",
    "Outcome",
    "PermanentError",
    "PolicyDeniedError",
    "ProcessError",
    "ProcessResult",
    "ProcessTimeoutError",
    "RateLimitedError",
    "RateLimiter",
    "Recycler",
    "RecyclingWorker",
    "RedisStore",
    "ReliabilityError",
    "ResourceTracker",
    "Restorer",
    "ResumePlan",
    "RetryExhaustedError",
    "SQLiteStore",
    "SaveResult",
    "StoreUnavailableError",
    "StoredEvent",
    "Throttle",
    "TimeoutExceeded",
    "TrackedResource",
    "TransientError",
    "UnsupportedEventLoopError",
    "VOLATILE_KEYS",
    "Versioned",
    "WebhookChannel",
    "__version__",
    "acompare_and_set",
    "add_event_hook",
    "aget_versioned",
    "arun_process",
    "atomic_open",
    "atomic_write",
    "audit_event",
    "check_database",
    "checkpoint",
    "classify",
    "compare_and_set",
    "configure_logging",
    "counter",
    "current_trace",
    "daily_report",
    "deadline",
    "error_boundary",
    "exit_code_for",
    "export_opentelemetry",
    "export_prometheus",
    "gauge",
    "get_metrics",
    "get_versioned",
    "histogram",
    "idempotency_key",
    "idempotent",
    "install_crash_handler",
    "is_active",
    "is_retryable",
    "open_database",
    "read_signed",
    "read_transaction",
    "remaining",
    "render_launchd",
    "render_systemd",
    "resilient",
    "retry",
    "retry_context",
    "run_process",
    "set_active",
    "set_log_summary",
    "set_metrics",
    "stable_hash",
    "timeout",
    "trace",
    "write_signed",
    "write_transaction",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    elif name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("paios-reliability")
        except PackageNotFoundError:  # running from a source tree
            value = "0.0.0+unknown"
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
