"""The public API, snapshotted: a move or refactor cannot drop or alter a name.

Every name in ``paios_reliability.__all__`` is written to
``tests/api_snapshot.txt`` with its signature; for a class, the signature of
its constructor and of each public method, property and class attribute it
defines or inherits from the library. The test fails on any difference.

When a change to the public API is intended, regenerate the snapshot with::

    python tests/test_api_snapshot.py --update

and commit the new file with the change, so the diff shows the API change.
"""

from __future__ import annotations

import difflib
import enum
import inspect
import sys
from pathlib import Path
from typing import Any

import paios_reliability

SNAPSHOT = Path(__file__).with_name("api_snapshot.txt")
REGENERATE = "python tests/test_api_snapshot.py --update"


class _Stable:
    """A default value rendered the same in every process (no addresses, no hash order)."""

    def __init__(self, value: object) -> None:
        self.value = value

    def __repr__(self) -> str:
        value = self.value
        if callable(value) and hasattr(value, "__qualname__"):
            return f"<{type(value).__name__} {value.__qualname__}>"
        if isinstance(value, (set, frozenset)):
            return f"{type(value).__name__}({sorted(map(repr, value))})"
        return repr(value)


def _signature(obj: Any) -> str:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(...)"
    params = [
        p
        if p.default is inspect.Parameter.empty
        else p.replace(default=_Stable(p.default))
        for p in sig.parameters.values()
    ]
    return str(sig.replace(parameters=params))


def _own_library_bases(cls: type) -> list[type]:
    return [
        base
        for base in cls.__mro__
        if (base.__module__ or "").startswith("paios_reliability")
    ]


def _describe_class(name: str, cls: type) -> list[str]:
    # Private bases are how the code is organised, not part of the API.
    bases = ", ".join(
        base.__qualname__
        for base in cls.__bases__
        if base is not object and not base.__qualname__.startswith("_")
    )
    lines = [f"class {name}({bases})"]
    if issubclass(cls, enum.Enum):
        lines += [f"    {member.name} = {member.value!r}" for member in cls]
        return lines
    members: dict[str, str] = {}
    # A protocol's __init__ is typing's placeholder, different per Python.
    dunders = (
        ("__call__",)
        if getattr(cls, "_is_protocol", False)
        else ("__init__", "__call__")
    )
    for owner in reversed(_own_library_bases(cls)):
        for attr, raw in vars(owner).items():
            if attr.startswith("_") and attr not in dunders:
                continue
            if attr.startswith("model_") and attr != "model_config":
                continue  # pydantic's bookkeeping; 2.0 keeps model_fields here
            if isinstance(raw, property):
                members[attr] = f"    property {attr}"
            elif isinstance(raw, (classmethod, staticmethod)):
                kind = type(raw).__name__
                members[attr] = f"    {kind} {attr}{_signature(getattr(cls, attr))}"
            elif inspect.isfunction(raw):
                prefix = "async def" if inspect.iscoroutinefunction(raw) else "def"
                members[attr] = f"    {prefix} {attr}{_signature(raw)}"
            elif type(raw).__name__ == "member_descriptor":
                members[attr] = f"    field {attr}"
            elif attr.isupper() or not callable(raw):
                members[attr] = f"    {attr}: {type(raw).__name__}"
    lines += [members[attr] for attr in sorted(members)]
    return lines


def describe(name: str, obj: Any) -> list[str]:
    """The snapshot lines of one public name."""
    if inspect.isclass(obj):
        return _describe_class(name, obj)
    if inspect.isfunction(obj) or inspect.isbuiltin(obj):
        prefix = "async def" if inspect.iscoroutinefunction(obj) else "def"
        return [f"{prefix} {name}{_signature(obj)}"]
    if callable(obj):
        return [f"{name}: {type(obj).__name__}{_signature(obj)}"]
    return [f"{name}: {type(obj).__name__}"]


def render() -> str:
    lines: list[str] = []
    for name in paios_reliability.__all__:
        if name == "__version__":
            continue
        lines += describe(name, getattr(paios_reliability, name))
    return "\n".join(lines) + "\n"


def test_public_api_matches_the_snapshot() -> None:
    expected = SNAPSHOT.read_text(encoding="utf-8")
    actual = render()
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                "tests/api_snapshot.txt",
                "the code",
            )
        )
        raise AssertionError(
            "The public API changed (- snapshot, + code). If the change is "
            f"intended, run `{REGENERATE}` and commit the snapshot.\n{diff}"
        )


def test_the_snapshot_sees_a_changed_signature() -> None:
    def before(name: str, *, limit: int = 3) -> None: ...

    def after(name: str, *, limit: int = 4) -> None: ...

    assert describe("f", before) != describe("f", after)


def test_the_snapshot_sees_a_dropped_method() -> None:
    class Old:
        def keep(self) -> None: ...

        def drop(self) -> None: ...

    class New:
        def keep(self) -> None: ...

    Old.__module__ = New.__module__ = "paios_reliability.example"
    old, new = describe("C", Old), describe("C", New)
    assert [line for line in old if line not in new] == ["    def drop(self) -> 'None'"]


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        sys.exit(f"usage: {REGENERATE}")
    SNAPSHOT.write_text(render(), encoding="utf-8")
    print(f"wrote {SNAPSHOT} ({len(paios_reliability.__all__)} public names)")
