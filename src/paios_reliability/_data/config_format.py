"""What a configuration file's bytes may hold, and how a model keeps what it does not declare.

Strict JSON (no duplicate keys, no NaN, depth-bounded), TOML read by
suffix, pydantic's errors as ``(path, message)`` pairs, and the merge that
keeps keys another program wrote when a model does not declare them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence

from .._core.typing_lite import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

__all__ = ["validation_errors"]

_PLAIN_KEY = re.compile(r"^[^.\[\]\"]+$")


def _loc_to_path(loc: Sequence[object]) -> str:
    """``("servers", 0, "port")`` -> ``servers[0].port``.

    A key that is empty or holds ``.``, ``[``, ``]`` or ``"`` is written as
    ``["the key"]`` (JSON-quoted), so every path reads back unambiguously.
    """
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(str(part)):
            out += f".{part}" if out else str(part)
        else:
            out += f"[{json.dumps(str(part), ensure_ascii=False)}]"
    return out or "<root>"


def validation_errors(exc: Exception) -> list[tuple[str, str]]:
    """``(field_path, message)`` pairs from a pydantic ``ValidationError``."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return [("<root>", str(exc))]
    try:
        items = errors(include_url=False, include_input=False)
    except TypeError:  # pragma: no cover - older pydantic signature
        items = errors()
    return [(_loc_to_path(e.get("loc", ())), str(e.get("msg", ""))) for e in items]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


class _TomlData:
    """A parsed TOML document (read-only; may hold dates JSON cannot)."""

    __slots__ = ("value",)

    def __init__(self, value: dict[str, Any]) -> None:
        self.value = value


class _NotJson(Exception):
    def __init__(self, where: str, why: str) -> None:
        super().__init__(why)
        self.where = where
        self.why = why


def _json_copy(value: object, where: str) -> Any:
    """A deep copy of ``value`` if JSON can hold it exactly, else :class:`_NotJson`."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _NotJson(where, f"{value!r} is not valid JSON")
        return float(value)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                # json.dumps would quietly turn 1 into "1": a different file.
                raise _NotJson(
                    where or "<root>",
                    f"key {key!r} is a {type(key).__name__}; JSON keys are strings",
                )
            out[key] = _json_copy(item, _child(where, key))
        return out
    if isinstance(value, (list, tuple)):
        return [_json_copy(item, _child(where, i)) for i, item in enumerate(value)]
    raise _NotJson(
        where or "<root>", f"a {type(value).__name__} cannot be written as JSON"
    )


def _child(where: str, part: str | int) -> str:
    if not where:
        return _loc_to_path([part])
    return where + _loc_to_path(["x", part])[1:]


def _dump_json(value: Any, indent: int | None) -> bytes:
    return (json.dumps(value, indent=indent, ensure_ascii=False) + "\n").encode("utf-8")


def _is_part_of(candidate: object, whole: object, depth: int = 0) -> bool:
    """Whether ``candidate`` is (by identity) a container nested inside ``whole``."""
    if depth > 200:
        return False
    children: Any
    if isinstance(whole, dict):
        children = whole.values()
    elif isinstance(whole, list):
        children = whole
    else:
        return False
    return any(
        child is candidate or _is_part_of(candidate, child, depth + 1)
        for child in children
    )


def _declared_keys(model: Any) -> set[str]:
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        keys.add(name)
        for alias in (field.alias, field.validation_alias, field.serialization_alias):
            if isinstance(alias, str):
                keys.add(alias)
    return keys


def _nested_model(annotation: Any) -> Any:
    """The model class a field holds directly or as ``X | None``, else None."""
    import typing

    from pydantic import BaseModel

    def is_model(candidate: Any) -> bool:
        # On 3.10, isinstance(list[int], type) is True and issubclass fails.
        try:
            return isinstance(candidate, type) and issubclass(candidate, BaseModel)
        except TypeError:
            return False

    if is_model(annotation):
        return annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if len(args) == 1 and is_model(args[0]):
        return args[0]
    return None


def _ignores_extras(model: Any) -> bool:
    return model.model_config.get("extra") in (None, "ignore")


def _restore_undeclared(model: Any, old: dict[str, Any], new: dict[str, Any]) -> bool:
    changed = False
    if _ignores_extras(model):
        declared = _declared_keys(model)
        for key, value in old.items():
            if key not in declared and key not in new:
                new[key] = value
                changed = True
    for name, field in model.model_fields.items():
        sub = _nested_model(field.annotation)
        key = field.serialization_alias or field.alias or name
        if (
            sub is not None
            and isinstance(old.get(key), dict)
            and isinstance(new.get(key), dict)
        ):
            changed = _restore_undeclared(sub, old[key], new[key]) or changed
    return changed


def _keep_undeclared(
    model: Any, new: bytes, current: bytes, indent: int | None
) -> bytes:
    """``new`` plus the keys of ``current`` the model does not declare.

    A model with the default ``extra="ignore"`` never sees keys another
    program wrote; writing back only what it declares would delete them.
    """
    try:
        old = json.loads(current.decode("utf-8-sig"))
        fresh = json.loads(new)
    except ValueError:
        return new
    if not (isinstance(old, dict) and isinstance(fresh, dict)):
        return new
    if not _restore_undeclared(model, old, fresh):
        return new
    return _dump_json(fresh, indent)


class _JsonText:
    """Checked JSON text, to be validated by the model in JSON mode."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text
