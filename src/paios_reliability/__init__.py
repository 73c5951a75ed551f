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

    from ._config import Restorer, is_active, set_active
    from ._events import Event, add_event_hook
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
        TimeoutExceeded,
        TransientError,
    )
    from ._observe import configure_logging, current_trace, trace
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

# public name -> private module that defines it
_LAZY: dict[str, str] = {
    "ApprovalRequiredError": "_exceptions",
    "BulkheadFullError": "_exceptions",
    "CATALOG": "_taxonomy",
    "CapabilityDeniedError": "_exceptions",
    "Catalog": "_taxonomy",
    "CatalogEntry": "_taxonomy",
    "CircuitOpenError": "_exceptions",
    "ConfigError": "_exceptions",
    "CredentialError": "_exceptions",
    "CredentialExpiredError": "_exceptions",
    "CredentialMissingError": "_exceptions",
    "Event": "_events",
    "Failure": "_taxonomy",
    "IntegrityError": "_exceptions",
    "LockConflictError": "_exceptions",
    "PermanentError": "_exceptions",
    "PolicyDeniedError": "_exceptions",
    "RateLimitedError": "_exceptions",
    "ReliabilityError": "_exceptions",
    "Restorer": "_config",
    "TimeoutExceeded": "_exceptions",
    "TransientError": "_exceptions",
    "add_event_hook": "_events",
    "audit_event": "_taxonomy",
    "classify": "_taxonomy",
    "configure_logging": "_observe",
    "current_trace": "_observe",
    "exit_code_for": "_taxonomy",
    "is_active": "_config",
    "is_retryable": "_taxonomy",
    "set_active": "_config",
    "trace": "_observe",
}

__all__ = [
    "ApprovalRequiredError",
    "BulkheadFullError",
    "CATALOG",
    "CapabilityDeniedError",
    "Catalog",
    "CatalogEntry",
    "CircuitOpenError",
    "ConfigError",
    "CredentialError",
    "CredentialExpiredError",
    "CredentialMissingError",
    "Event",
    "Failure",
    "IntegrityError",
    "LockConflictError",
    "PermanentError",
    "PolicyDeniedError",
    "RateLimitedError",
    "ReliabilityError",
    "Restorer",
    "TimeoutExceeded",
    "TransientError",
    "__version__",
    "add_event_hook",
    "audit_event",
    "classify",
    "configure_logging",
    "current_trace",
    "exit_code_for",
    "is_active",
    "is_retryable",
    "set_active",
    "trace",
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
