"""Loading a :class:`HealthRegistry` by name and running it for the CLI."""

from __future__ import annotations

from .health import HealthRegistry

__all__ = ["_load_registry", "health_command"]


def _load_registry(spec: str) -> HealthRegistry:
    from .._core.imports import import_instance

    return import_instance(
        spec,
        HealthRegistry,
        form="--registry needs module:attribute",
        what="health registry",
    )


def health_command(spec: str, *, as_json: bool = False) -> tuple[str, int]:
    """What ``paios-reliability health --registry module:attr [--json]`` does.

    Imports ``module`` (found in the working directory too, as ``python -m``
    finds it; ``sys.path`` is left as it was), takes ``attr`` (a
    :class:`HealthRegistry`, or a function returning one), runs it.

    Returns:
        ``(text, status)``: the report as a table (or JSON), and 0 when ok or
        degraded, 1 when failing.

    Raises:
        ConfigError: ``USAGE_ERROR`` when the spec cannot be loaded.
    """
    report = _load_registry(spec).run()
    text = report.to_json(indent=2) if as_json else report.to_text()
    return text, report.exit_code
