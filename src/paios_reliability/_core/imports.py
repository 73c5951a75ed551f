"""Loading an object a user names as ``module:attribute`` (a CLI option, a setting)."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from typing import Any, TypeVar

from .exceptions import ConfigError, PermanentError

__all__ = ["import_instance", "import_object", "missing_extra"]

T = TypeVar("T")


def import_object(spec: str, *, form: str, what: str) -> Any:
    """The object ``spec`` names as ``package.module:attribute``.

    The attribute may be dotted (``module:Class.factory``). Modules in the
    current directory are found too, as ``python -m`` finds them; ``sys.path``
    is left as it was.

    Args:
        spec: The name, e.g. ``"myapp.health:registry"``.
        form: The start of the error for a malformed ``spec``, e.g.
            ``"--registry needs module:attribute"``.
        what: What is being loaded, for the error, e.g. ``"health registry"``.

    Raises:
        ConfigError: ``USAGE_ERROR`` when ``spec`` is malformed or the module
            or attribute cannot be imported.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"{form}, got {spec!r}", code="USAGE_ERROR")
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"cannot load {what} {spec!r}: {exc}", code="USAGE_ERROR"
        ) from exc
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(cwd)
    return obj


def import_instance(spec: str, cls: type[T], *, form: str, what: str) -> T:
    """The ``cls`` instance ``spec`` names, or that a function it names returns.

    Like :func:`import_object`, whose arguments these are; a callable that is
    not a ``cls`` is called without arguments (a factory).

    Raises:
        ConfigError: ``USAGE_ERROR`` as :func:`import_object`, or when the
            object is neither a ``cls`` nor a function returning one.
    """
    obj = import_object(spec, form=form, what=what)
    if not isinstance(obj, cls) and callable(obj):
        obj = obj()
    if not isinstance(obj, cls):
        name = cls.__name__
        article = "an" if name[:1].lower() in "aeiou" else "a"
        raise ConfigError(
            f"{spec!r} is not {article} {name} (nor a function returning one)",
            code="USAGE_ERROR",
        )
    return obj


def missing_extra(
    module: str, extra: str, *, message: str | None = None
) -> PermanentError:
    """The error for an optional dependency that is not installed.

    Raise it ``from`` the ``ImportError``: ``DEPENDENCY_MISSING``, naming the
    module and the extra that installs it.

    Args:
        module: The top-level module that failed to import, e.g. ``"keyring"``.
        extra: The extra of this package that brings it, e.g. ``"keyring"``.
        message: The start of the message instead of ``"<module> is not
            installed"``.
    """
    head = message or f"{module} is not installed"
    return PermanentError(
        f"{head}: pip install 'paios-reliability[{extra}]'",
        code="DEPENDENCY_MISSING",
        context={"module": module},
    )
