"""The public surface: complete, sorted, lazy, and cheap to import."""

from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import paios_reliability

INIT = Path(paios_reliability.__file__)
HEAVY = ("pydantic", "tenacity", "structlog", "redis", "wrapt", "asyncio", "sqlite3")


def _type_checking_imports() -> set[str]:
    tree = ast.parse(INIT.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.If)
            and isinstance(node.test, ast.Name)
            and node.test.id == "TYPE_CHECKING"
        ):
            for stmt in node.body:
                # The stdlib's typing, not our own .typing (level 1).
                if isinstance(stmt, ast.ImportFrom) and (
                    stmt.level or stmt.module != "typing"
                ):
                    names.update(alias.asname or alias.name for alias in stmt.names)
    return names


def test_all_is_sorted_and_unique() -> None:
    assert paios_reliability.__all__ == sorted(set(paios_reliability.__all__))


def test_all_matches_lazy_table_and_type_checking_imports() -> None:
    public = set(paios_reliability.__all__) - {"__version__"}
    assert public == set(paios_reliability._LAZY)
    assert public == _type_checking_imports()


@pytest.mark.parametrize(
    "name", sorted(set(paios_reliability.__all__) - {"__version__"})
)
def test_every_public_name_resolves_to_its_module(name: str) -> None:
    module = importlib.import_module(
        f"paios_reliability.{paios_reliability._LAZY[name]}"
    )
    assert getattr(paios_reliability, name) is getattr(module, name)


def test_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        paios_reliability.no_such_name  # noqa: B018


def test_version_comes_from_metadata() -> None:
    from importlib.metadata import version

    assert paios_reliability.__version__ == version("paios-reliability")


def test_dir_lists_public_names() -> None:
    assert set(paios_reliability.__all__) <= set(dir(paios_reliability))


def test_import_loads_no_heavy_module() -> None:
    code = (
        "import sys, paios_reliability; "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""


def test_private_modules_are_not_public() -> None:
    for name in paios_reliability.__all__:
        assert not name.startswith("_") or name == "__version__"


def test_package_is_typed() -> None:
    assert (INIT.parent / "py.typed").exists()


def test_public_callables_have_docstrings() -> None:
    missing = [
        name
        for name in paios_reliability.__all__
        if name != "__version__"
        and (inspect.isclass(obj := getattr(paios_reliability, name)) or callable(obj))
        and not inspect.getdoc(obj)
    ]
    assert missing == []
