"""The CLI's ``config validate``: check a file against a model, changing nothing."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._core.exceptions import ConfigError
from .config_file import ConfigFile

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["ConfigReport", "config_validate"]


class ConfigReport:
    """What :func:`config_validate` found (``paios-reliability config validate``).

    Attributes:
        path: The file checked.
        model: The model's ``module:Class`` name.
        errors: ``(field_path, message)`` pairs; empty when valid.
        diff: With ``dry_run``, the unified diff from the file to the
            canonical form :meth:`ConfigFile.save` would write ("" if none).
    """

    __slots__ = ("diff", "errors", "model", "path")

    def __init__(
        self,
        path: str,
        model: str,
        errors: Sequence[tuple[str, str]] = (),
        diff: str = "",
    ) -> None:
        self.path = path
        self.model = model
        self.errors = tuple(errors)
        self.diff = diff

    @property
    def ok(self) -> bool:
        """True when the file is valid."""
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "model": self.model,
            "ok": self.ok,
            "errors": [list(e) for e in self.errors],
            "diff": self.diff,
        }

    def to_text(self) -> str:
        if self.ok:
            head = f"{self.path}: valid {self.model}"
        else:
            head = f"{self.path}: INVALID {self.model} ({len(self.errors)} problem(s))"
        lines = [head, *(f"  {field}: {message}" for field, message in self.errors)]
        if self.diff:
            lines.append(self.diff.rstrip("\n"))
        return "\n".join(lines)


def _import_model(spec: str | type[Any]) -> type[Any]:
    if isinstance(spec, type):
        return spec
    from .._core.imports import import_object

    obj = import_object(
        str(spec),
        form="--model must look like 'package.module:Class'",
        what="the model",
    )
    from pydantic import BaseModel

    if not (isinstance(obj, type) and issubclass(obj, BaseModel)):
        raise ConfigError(f"{spec!r} is not a pydantic model class", code="USAGE_ERROR")
    return obj


def config_validate(
    path: str | os.PathLike[str],
    model: str | type[BaseModel],
    *,
    dry_run: bool = False,
) -> ConfigReport:
    """Validate a config file against a model; never writes.

    Args:
        path: The configuration file.
        model: A pydantic model class, or its ``"module:Class"`` name.
        dry_run: Also compute the diff to the canonical form ``save`` writes.

    Returns:
        A :class:`ConfigReport` (``.ok``, ``.errors``, ``.to_text()``).

    Raises:
        ConfigError: ``USAGE_ERROR`` if ``model`` cannot be imported or is not
            a pydantic model (a problem with the command, not the file).
    """
    cls = _import_model(model)
    name = f"{cls.__module__}:{cls.__qualname__}"
    config: ConfigFile[Any] = ConfigFile(path, cls)
    try:
        value = config.load()
    except ConfigError as exc:
        return ConfigReport(str(path), name, exc.errors or [("<file>", str(exc))])
    diff = ""
    if dry_run and not config._toml:
        diff = config.save(value, dry_run=True).diff
    return ConfigReport(str(path), name, (), diff)
