"""Type-checked (mypy --strict), never run: the ecosystem surface of issue 20."""

from __future__ import annotations

from typing_extensions import assert_type

import paios_reliability as pr

registry = pr.MetricsRegistry()
assert_type(pr.export_opentelemetry(registry), pr.Restorer)
assert_type(pr.trace_opentelemetry(), pr.Restorer)
with pr.trace_opentelemetry():
    pass

channel = pr.AppriseChannel(["json://127.0.0.1:9/alerts"], name="ops")
assert_type(channel.schemes, tuple[str, ...])
dispatcher = pr.AlertDispatcher([channel, pr.LogChannel()])

store = pr.CredentialStore("auth.json", secrets="keyring", keyring_service="myapp")
plain = pr.CredentialStore("auth.json", secrets="file")
pr.CredentialStore("auth.json", secrets="vault")  # type: ignore[arg-type]
