"""paios_reliability: make the Python parts of an AI-agent system production-grade.

Every public name is importable from here. They are loaded on first use
(PEP 562), so ``import paios_reliability`` stays cheap for short-lived hook
processes: it imports none of pydantic, tenacity, structlog or redis.
"""

from __future__ import annotations

import sys

# Not `from typing import TYPE_CHECKING`: importing typing alone costs ~3 ms,
# most of this package's import budget. Type checkers treat the name specially.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._core.catalog import CATALOG, Catalog, CatalogEntry
    from ._core.event import Event
    from ._core.event_log import set_log_summary
    from ._core.events import add_event_hook, emit_event
    from ._core.exceptions import (
        ApprovalRequiredError,
        BulkheadFullError,
        CapabilityDeniedError,
        CircuitOpenError,
        ConfigError,
        ConfigIOError,
        CredentialError,
        CredentialExpiredError,
        CredentialIOError,
        CredentialMissingError,
        FailoverExhaustedError,
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
    from ._core.logging import configure_logging
    from ._core.otel import trace_opentelemetry
    from ._core.settings import Restorer, is_active, set_active
    from ._core.taxonomy import (
        Failure,
        audit_event,
        classify,
        exit_code_for,
        is_retryable,
    )
    from ._core.trace import (
        current_trace,
        extract,
        inject,
        trace,
        traceparent,
    )
    from ._data.atomic import atomic_open, atomic_write
    from ._data.config_file import ConfigFile
    from ._data.config_result import SaveResult
    from ._data.credential_formats import (
        AuthProfilesFormat,
        CredentialFormat,
        PaiosFormat,
    )
    from ._data.credential_model import Credential
    from ._data.credential_status import credential_status
    from ._data.credentials import CredentialStore
    from ._data.database import (
        DatabaseError,
        DatabaseLockedError,
        DatabaseOpenError,
        open_database,
    )
    from ._data.db_maintenance import DatabaseReport, check_database, checkpoint
    from ._data.signed import VOLATILE_KEYS, read_signed, stable_hash, write_signed
    from ._data.transactions import read_transaction, write_transaction
    from ._observe.alert_channels import (
        AppriseChannel,
        DesktopChannel,
        EventStoreChannel,
        LogChannel,
        WebhookChannel,
    )
    from ._observe.alert_model import Alert, AlertLevel
    from ._observe.alert_rules import (
        DEFAULT_ALERT_RULES,
        AlertRule,
        AlertRules,
        install_default_alerts,
    )
    from ._observe.alerts import AlertDispatcher, daily_report
    from ._observe.crash import CrashHandler, install_crash_handler
    from ._observe.daily import DailyReport, build_daily_report
    from ._observe.eventstore import EventStore
    from ._observe.exporters import export_opentelemetry, export_prometheus
    from ._observe.health import (
        HealthCheckResult,
        HealthRegistry,
        HealthReport,
    )
    from ._observe.leaks import (
        AllocationSite,
        LeakMonitor,
        LeakReport,
    )
    from ._observe.metric_types import Counter, Gauge, Histogram
    from ._observe.metrics import (
        MetricsRegistry,
        counter,
        gauge,
        get_metrics,
        histogram,
        set_metrics,
    )
    from ._observe.resources import ResourceTracker, TrackedResource
    from ._observe.status import SystemStatus, collect_status
    from ._observe.status_sources import StatusSources, load_status_sources
    from ._observe.stored_event import StoredEvent
    from ._observe.timed import timed
    from ._ops.exit_with_parent import ParentWatch, exit_with_parent
    from ._ops.heartbeat import Heartbeat, HeartbeatStatus
    from ._ops.hook import hook
    from ._ops.process import (
        arun_process,
        run_process,
    )
    from ._ops.process_result import ProcessError, ProcessResult, ProcessTimeoutError
    from ._ops.recycle import Recycler, RecyclingWorker
    from ._ops.sd_notify import sd_notify
    from ._ops.service import render_launchd, render_systemd
    from ._ops.watchdogs import HangWatchdog, StallWatchdog
    from ._policies.adaptive import AdaptiveLimiter
    from ._policies.boundary import error_boundary
    from ._policies.breaker import CircuitBreaker
    from ._policies.breaker_state import CircuitBreakerStats
    from ._policies.budget import RetryBudget, RetryBudgetState
    from ._policies.bulkhead import Bulkhead, BulkheadStats
    from ._policies.chaos import Chaos, chaos, chaos_enabled, set_chaos
    from ._policies.failover import Failover, failover
    from ._policies.hedge import Hedge, hedge
    from ._policies.keyed import KeyedPolicy
    from ._policies.limits import Limit, Reservation
    from ._policies.outcome import Outcome
    from ._policies.ratelimit import RateLimiter
    from ._policies.resilient import resilient
    from ._policies.retry import retry, retry_context
    from ._policies.throttle import OccurrenceThreshold, Throttle
    from ._policies.timeout import deadline, remaining, timeout
    from ._runs.cas import (
        CASResult,
        Versioned,
        acompare_and_set,
        aget_versioned,
        compare_and_set,
        get_versioned,
    )
    from ._runs.checkpoint import Checkpoint, CheckpointStore, ResumePlan
    from ._runs.idempotency import IdempotencyStore, idempotent
    from ._runs.idempotency_steps import idempotency_key
    from ._runs.locks import Lease, LockManager
    from ._stores import MemoryStore
    from ._stores._redis import RedisStore
    from ._stores._sqlite import SQLiteStore
    from ._web.app import create_status_app
    from .typing import AlertChannel, CallPolicy

# public name -> private module that defines it
_LAZY: dict[str, str] = {
    "AdaptiveLimiter": "_policies.adaptive",
    "Alert": "_observe.alert_model",
    "AlertChannel": "typing",
    "AlertDispatcher": "_observe.alerts",
    "AlertLevel": "_observe.alert_model",
    "AlertRule": "_observe.alert_rules",
    "AlertRules": "_observe.alert_rules",
    "AllocationSite": "_observe.leaks",
    "AppriseChannel": "_observe.alert_channels",
    "ApprovalRequiredError": "_core.exceptions",
    "Bulkhead": "_policies.bulkhead",
    "BulkheadFullError": "_core.exceptions",
    "BulkheadStats": "_policies.bulkhead",
    "CASResult": "_runs.cas",
    "CATALOG": "_core.catalog",
    "CallPolicy": "typing",
    "CapabilityDeniedError": "_core.exceptions",
    "Catalog": "_core.catalog",
    "CatalogEntry": "_core.catalog",
    "Chaos": "_policies.chaos",
    "Checkpoint": "_runs.checkpoint",
    "CheckpointStore": "_runs.checkpoint",
    "CircuitBreaker": "_policies.breaker",
    "CircuitBreakerStats": "_policies.breaker_state",
    "CircuitOpenError": "_core.exceptions",
    "ConfigError": "_core.exceptions",
    "ConfigFile": "_data.config_file",
    "ConfigIOError": "_core.exceptions",
    "Counter": "_observe.metric_types",
    "CrashHandler": "_observe.crash",
    "Credential": "_data.credential_model",
    "CredentialFormat": "_data.credential_formats",
    "CredentialError": "_core.exceptions",
    "CredentialExpiredError": "_core.exceptions",
    "CredentialIOError": "_core.exceptions",
    "CredentialMissingError": "_core.exceptions",
    "CredentialStore": "_data.credentials",
    "PaiosFormat": "_data.credential_formats",
    "AuthProfilesFormat": "_data.credential_formats",
    "DatabaseError": "_data.database",
    "DatabaseLockedError": "_data.database",
    "DatabaseOpenError": "_data.database",
    "DatabaseReport": "_data.db_maintenance",
    "DesktopChannel": "_observe.alert_channels",
    "Event": "_core.event",
    "EventStore": "_observe.eventstore",
    "EventStoreChannel": "_observe.alert_channels",
    "Failover": "_policies.failover",
    "FailoverExhaustedError": "_core.exceptions",
    "Failure": "_core.taxonomy",
    "Gauge": "_observe.metric_types",
    "HangWatchdog": "_ops.watchdogs",
    "Heartbeat": "_ops.heartbeat",
    "HeartbeatStatus": "_ops.heartbeat",
    "HealthCheckResult": "_observe.health",
    "HealthRegistry": "_observe.health",
    "StatusSources": "_observe.status_sources",
    "SystemStatus": "_observe.status",
    "collect_status": "_observe.status",
    "DailyReport": "_observe.daily",
    "build_daily_report": "_observe.daily",
    "create_status_app": "_web.app",
    "load_status_sources": "_observe.status_sources",
    "HealthReport": "_observe.health",
    "Hedge": "_policies.hedge",
    "Histogram": "_observe.metric_types",
    "IdempotencyStore": "_runs.idempotency",
    "IntegrityError": "_core.exceptions",
    "KeyedPolicy": "_policies.keyed",
    "LeakMonitor": "_observe.leaks",
    "LeakReport": "_observe.leaks",
    "Lease": "_runs.locks",
    "Limit": "_policies.limits",
    "LockConflictError": "_core.exceptions",
    "LockManager": "_runs.locks",
    "LogChannel": "_observe.alert_channels",
    "MemoryStore": "_stores",
    "MetricsRegistry": "_observe.metrics",
    "OccurrenceThreshold": "_policies.throttle",
    "Outcome": "_policies.outcome",
    "ParentWatch": "_ops.exit_with_parent",
    "PermanentError": "_core.exceptions",
    "PolicyDeniedError": "_core.exceptions",
    "ProcessError": "_ops.process_result",
    "ProcessResult": "_ops.process_result",
    "ProcessTimeoutError": "_ops.process_result",
    "RateLimitedError": "_core.exceptions",
    "RateLimiter": "_policies.ratelimit",
    "Recycler": "_ops.recycle",
    "RecyclingWorker": "_ops.recycle",
    "RedisStore": "_stores._redis",
    "ReliabilityError": "_core.exceptions",
    "ResourceTracker": "_observe.resources",
    "Reservation": "_policies.limits",
    "Restorer": "_core.settings",
    "ResumePlan": "_runs.checkpoint",
    "SQLiteStore": "_stores._sqlite",
    "SaveResult": "_data.config_result",
    "RetryBudget": "_policies.budget",
    "RetryBudgetState": "_policies.budget",
    "StallWatchdog": "_ops.watchdogs",
    "RetryExhaustedError": "_core.exceptions",
    "StoreUnavailableError": "_core.exceptions",
    "StoredEvent": "_observe.stored_event",
    "Throttle": "_policies.throttle",
    "TimeoutExceeded": "_core.exceptions",
    "TrackedResource": "_observe.resources",
    "TransientError": "_core.exceptions",
    "UnsupportedEventLoopError": "_core.exceptions",
    "Versioned": "_runs.cas",
    "WebhookChannel": "_observe.alert_channels",
    "acompare_and_set": "_runs.cas",
    "add_event_hook": "_core.events",
    "aget_versioned": "_runs.cas",
    "arun_process": "_ops.process",
    "atomic_open": "_data.atomic",
    "atomic_write": "_data.atomic",
    "audit_event": "_core.taxonomy",
    "chaos": "_policies.chaos",
    "chaos_enabled": "_policies.chaos",
    "check_database": "_data.db_maintenance",
    "checkpoint": "_data.db_maintenance",
    "classify": "_core.taxonomy",
    "compare_and_set": "_runs.cas",
    "configure_logging": "_core.logging",
    "hook": "_ops.hook",
    "counter": "_observe.metrics",
    "credential_status": "_data.credential_status",
    "current_trace": "_core.trace",
    "daily_report": "_observe.alerts",
    "deadline": "_policies.timeout",
    "emit_event": "_core.events",
    "error_boundary": "_policies.boundary",
    "exit_code_for": "_core.taxonomy",
    "export_opentelemetry": "_observe.exporters",
    "export_prometheus": "_observe.exporters",
    "failover": "_policies.failover",
    "exit_with_parent": "_ops.exit_with_parent",
    "gauge": "_observe.metrics",
    "get_metrics": "_observe.metrics",
    "get_versioned": "_runs.cas",
    "hedge": "_policies.hedge",
    "histogram": "_observe.metrics",
    "idempotency_key": "_runs.idempotency_steps",
    "idempotent": "_runs.idempotency",
    "install_crash_handler": "_observe.crash",
    "is_active": "_core.settings",
    "is_retryable": "_core.taxonomy",
    "open_database": "_data.database",
    "read_signed": "_data.signed",
    "read_transaction": "_data.transactions",
    "remaining": "_policies.timeout",
    "render_launchd": "_ops.service",
    "render_systemd": "_ops.service",
    "resilient": "_policies.resilient",
    "retry": "_policies.retry",
    "retry_context": "_policies.retry",
    "run_process": "_ops.process",
    "sd_notify": "_ops.sd_notify",
    "set_active": "_core.settings",
    "set_chaos": "_policies.chaos",
    "set_log_summary": "_core.event_log",
    "set_metrics": "_observe.metrics",
    "stable_hash": "_data.signed",
    "timed": "_observe.timed",
    "install_default_alerts": "_observe.alert_rules",
    "DEFAULT_ALERT_RULES": "_observe.alert_rules",
    "VOLATILE_KEYS": "_data.signed",
    "timeout": "_policies.timeout",
    "trace": "_core.trace",
    "trace_opentelemetry": "_core.otel",
    "traceparent": "_core.trace",
    "inject": "_core.trace",
    "extract": "_core.trace",
    "write_signed": "_data.signed",
    "write_transaction": "_data.transactions",
}

__all__ = [
    "AdaptiveLimiter",
    "Alert",
    "AlertChannel",
    "AlertDispatcher",
    "AlertLevel",
    "AlertRule",
    "AlertRules",
    "AllocationSite",
    "AppriseChannel",
    "ApprovalRequiredError",
    "AuthProfilesFormat",
    "Bulkhead",
    "BulkheadFullError",
    "BulkheadStats",
    "CASResult",
    "CATALOG",
    "CallPolicy",
    "CapabilityDeniedError",
    "Catalog",
    "CatalogEntry",
    "Chaos",
    "Checkpoint",
    "CheckpointStore",
    "CircuitBreaker",
    "CircuitBreakerStats",
    "CircuitOpenError",
    "ConfigError",
    "ConfigFile",
    "ConfigIOError",
    "Counter",
    "CrashHandler",
    "Credential",
    "CredentialError",
    "CredentialExpiredError",
    "CredentialFormat",
    "CredentialIOError",
    "CredentialMissingError",
    "CredentialStore",
    "DEFAULT_ALERT_RULES",
    "DailyReport",
    "DatabaseError",
    "DatabaseLockedError",
    "DatabaseOpenError",
    "DatabaseReport",
    "DesktopChannel",
    "Event",
    "EventStore",
    "EventStoreChannel",
    "Failover",
    "FailoverExhaustedError",
    "Failure",
    "Gauge",
    "HangWatchdog",
    "HealthCheckResult",
    "HealthRegistry",
    "HealthReport",
    "Heartbeat",
    "HeartbeatStatus",
    "Hedge",
    "Histogram",
    "IdempotencyStore",
    "IntegrityError",
    "KeyedPolicy",
    "LeakMonitor",
    "LeakReport",
    "Lease",
    "Limit",
    "LockConflictError",
    "LockManager",
    "LogChannel",
    "MemoryStore",
    "MetricsRegistry",
    "OccurrenceThreshold",
    "Outcome",
    "PaiosFormat",
    "ParentWatch",
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
    "Reservation",
    "ResourceTracker",
    "Restorer",
    "ResumePlan",
    "RetryBudget",
    "RetryBudgetState",
    "RetryExhaustedError",
    "SQLiteStore",
    "SaveResult",
    "StallWatchdog",
    "StatusSources",
    "StoreUnavailableError",
    "StoredEvent",
    "SystemStatus",
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
    "build_daily_report",
    "chaos",
    "chaos_enabled",
    "check_database",
    "checkpoint",
    "classify",
    "collect_status",
    "compare_and_set",
    "configure_logging",
    "counter",
    "create_status_app",
    "credential_status",
    "current_trace",
    "daily_report",
    "deadline",
    "emit_event",
    "error_boundary",
    "exit_code_for",
    "exit_with_parent",
    "export_opentelemetry",
    "export_prometheus",
    "extract",
    "failover",
    "gauge",
    "get_metrics",
    "get_versioned",
    "hedge",
    "histogram",
    "hook",
    "idempotency_key",
    "idempotent",
    "inject",
    "install_crash_handler",
    "install_default_alerts",
    "is_active",
    "is_retryable",
    "load_status_sources",
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
    "sd_notify",
    "set_active",
    "set_chaos",
    "set_log_summary",
    "set_metrics",
    "stable_hash",
    "timed",
    "timeout",
    "trace",
    "trace_opentelemetry",
    "traceparent",
    "write_signed",
    "write_transaction",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is not None:
        qualified = f"{__name__}.{module}"
        __import__(qualified)  # not importlib.import_module: importlib costs ~0.6 ms
        value = getattr(sys.modules[qualified], name)
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
