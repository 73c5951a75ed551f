"""The house rules of the source tree, checked on the code rather than in prose.

Private packages form floors, bottom to top::

    _core < _data < _stores < _policies < _runs < _observe < _ops < cli

A module may import its own floor and the floors below it, never one above,
wherever the import stands (module level, inside a function, under
``TYPE_CHECKING``). The public modules (``paios_reliability``, ``testing``,
``mcp``, ``_pytest_plugin``, ``__main__``) sit on top and may import anything;
``paios_reliability.typing`` (the protocols) may be imported by anyone, but
only under ``TYPE_CHECKING``, so it never loads at run time below the surface.
``cli``, the top floor, is a client of the library and may also use the public
modules.
See docs/architecture.md.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import paios_reliability

PACKAGE = Path(paios_reliability.__file__).parent
FLOORS = (
    "_core",
    "_data",
    "_stores",
    "_policies",
    "_runs",
    "_observe",
    "_ops",
    "_web",
    "cli",
)
TOP = ("__init__", "__main__", "_pytest_plugin", "mcp", "testing")
TYPING = "typing"


@dataclass(frozen=True)
class Import:
    source: str  # dotted module that imports, relative to the package
    target: str  # dotted module imported, relative to the package
    line: int
    type_checking: bool
    path: str = ""

    def where(self) -> str:
        return f"{self.path or self.source.replace('.', '/') + '.py'}:{self.line}"


def _module_name(path: Path) -> list[str]:
    return list(path.relative_to(PACKAGE).with_suffix("").parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, type_checking: bool) -> Iterator[tuple[ast.AST, bool]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield stmt, True
                yield from _walk(stmt, True)
            for stmt in child.orelse:
                yield stmt, type_checking
                yield from _walk(stmt, type_checking)
        else:
            yield child, type_checking
            yield from _walk(child, type_checking)


def _imports_of(path: Path) -> Iterator[Import]:
    parts = _module_name(path)
    is_package = parts[-1] == "__init__"
    package = parts[:-1]  # the package the module's relative imports start from
    source = ".".join(parts[:-1] if is_package and parts[:-1] else parts)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node, type_checking in _walk(tree, False):
        targets: list[list[str]] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                if node.level - 1 > len(package):
                    raise AssertionError(f"{path}: import above the package")
                base = package[: len(package) - (node.level - 1)]
                module = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "paios_reliability":
                module = node.module.split(".")[1:]
            else:
                continue
            if node.module:
                targets.append(module)
            # ``from . import clock`` / ``from .._core import events``: each name
            # may be a module of that package.
            for alias in node.names:
                candidate = [*module, alias.name]
                if (PACKAGE.joinpath(*candidate).with_suffix(".py")).exists() or (
                    PACKAGE.joinpath(*candidate) / "__init__.py"
                ).exists():
                    targets.append(candidate)
            if not node.module:
                targets.append(module)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                dotted = alias.name.split(".")
                if dotted[0] == "paios_reliability":
                    targets.append(dotted[1:])
        for target in targets:
            line = getattr(node, "lineno", 0)
            yield Import(
                source,
                ".".join(target) or "__init__",
                line,
                type_checking,
                str(path.relative_to(PACKAGE)),
            )


def _all_imports() -> list[Import]:
    return [i for path in sorted(PACKAGE.rglob("*.py")) for i in _imports_of(path)]


def _floor(module: str) -> str:
    return module.split(".", maxsplit=1)[0] if module else "__init__"


def _rank(module: str) -> int | None:
    floor = _floor(module)
    return FLOORS.index(floor) if floor in FLOORS else None


def layer_violations(imports: list[Import]) -> list[str]:
    problems = []
    for imp in imports:
        source_floor, target_floor = _floor(imp.source), _floor(imp.target)
        if source_floor == target_floor:
            continue
        if target_floor == TYPING:
            if not imp.type_checking and source_floor not in TOP:
                problems.append(
                    f"{imp.where()} imports paios_reliability.typing at run time; "
                    "import it under `if TYPE_CHECKING:`"
                )
            continue
        source_rank, target_rank = _rank(imp.source), _rank(imp.target)
        if source_floor in (*TOP, TYPING):
            continue
        if source_floor == FLOORS[-1] and target_floor in TOP:
            continue  # the command line is a client of the public surface
        if source_rank is None:
            problems.append(
                f"{imp.where()}: {imp.source} is in no floor; add it to a private "
                "package (see docs/architecture.md) or to the public modules"
            )
            continue
        if target_rank is None:
            problems.append(
                f"{imp.where()}: {source_floor} imports the public module "
                f"{imp.target}; a private floor imports only floors below it"
            )
        elif target_rank > source_rank:
            problems.append(
                f"{imp.where()}: {source_floor} imports {imp.target}, which is in "
                f"the higher floor {target_floor} "
                f"(order: {' < '.join(FLOORS)})"
            )
    return problems


def cycles_in(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle a depth-first walk of ``graph`` meets, as closed paths."""
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def package_cycles(imports: list[Import]) -> list[list[str]]:
    graph: dict[str, set[str]] = {}
    for imp in imports:
        a, b = _floor(imp.source), _floor(imp.target)
        if a != b and a in FLOORS and b in FLOORS:
            graph.setdefault(a, set()).add(b)
    return cycles_in(graph)


def test_every_module_is_on_a_floor_or_public() -> None:
    for path in PACKAGE.rglob("*.py"):
        top = _module_name(path)[0]
        assert top in (*FLOORS, *TOP, TYPING), (
            f"{path.relative_to(PACKAGE)} is in no floor; "
            f"put it under one of {FLOORS} (docs/architecture.md)"
        )


def test_no_private_package_imports_a_higher_floor() -> None:
    problems = layer_violations(_all_imports())
    assert not problems, "\n".join(problems)


def test_no_import_cycles_between_private_packages() -> None:
    cycles = package_cycles(_all_imports())
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_scan_sees_imports_inside_functions() -> None:
    # The real tree: _runs/idempotency.py imports _core.taxonomy inside a
    # function; a scan that saw only module-level imports would miss it.
    edges = {
        (i.source, i.target) for i in _imports_of(PACKAGE / "_runs" / "idempotency.py")
    }
    assert ("_runs.idempotency", "_core.taxonomy") in edges


@pytest.mark.parametrize(
    ("source", "target", "type_checking", "complaint"),
    [
        ("_core.clock", "_policies.retry", False, "higher floor _policies"),
        ("_stores._sqlite", "_runs.locks", True, "higher floor _runs"),
        ("_policies.breaker", "testing", False, "public module testing"),
        ("_core.events", "typing", False, "typing at run time"),
        ("_observe.alerts", "_ops.process", False, "higher floor _ops"),
    ],
)
def test_the_rule_catches_an_upward_import(
    source: str, target: str, type_checking: bool, complaint: str
) -> None:
    problems = layer_violations([Import(source, target, 1, type_checking)])
    assert len(problems) == 1
    assert complaint in problems[0]


@pytest.mark.parametrize(
    ("source", "target", "type_checking"),
    [
        ("_policies.retry", "_core.clock", False),
        ("_runs.locks", "_stores._renewal", False),
        ("_core.events", "typing", True),
        ("mcp", "_policies.resilient", False),
        ("__init__", "_ops.process", False),
        ("cli.doctor", "_observe.health", False),
        ("cli.demo", "__init__", False),
        ("testing", "typing", False),
    ],
)
def test_the_rule_lets_downward_imports_through(
    source: str, target: str, type_checking: bool
) -> None:
    assert layer_violations([Import(source, target, 1, type_checking)]) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    imports = [
        Import("_data.atomic", "_stores._sqlite", 1, False),
        Import("_stores._sqlite", "_data.database", 1, False),
    ]
    assert package_cycles(imports) == [["_data", "_stores", "_data"]]


def module_cycles(imports: list[Import]) -> list[list[str]]:
    """Cycles between modules through run-time imports (TYPE_CHECKING ones excluded)."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if imp.source != imp.target and not imp.type_checking:
            graph.setdefault(imp.source, set()).add(imp.target)
    return cycles_in(graph)


def test_no_import_cycles_between_modules() -> None:
    # A package's __init__ importing its own modules is not a cycle unless one
    # of them imports the package back; a lazy import inside a function still
    # counts, since it ties the two modules together all the same.
    cycles = module_cycles(_all_imports())
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_module_cycle_check_finds_the_old_taxonomy_cycle() -> None:
    imports = [
        Import("_core.exceptions", "_core.taxonomy", 122, False),
        Import("_core.taxonomy", "_core.exceptions", 42, False),
    ]
    assert module_cycles(imports) == [
        ["_core.exceptions", "_core.taxonomy", "_core.exceptions"]
    ]


# -- module size ---------------------------------------------------------------------

# A module a reader can hold in their head: at most this many lines, unless it
# is one cohesive class, listed here with the reason.
MAX_MODULE_LINES = 700
ONE_COHESIVE_CLASS = {
    "_observe/eventstore.py": "the EventStore class: writer, queries, retention",
}


def _long_modules(root: Path, limit: int) -> dict[str, int]:
    sizes = {
        path.relative_to(root).as_posix(): len(path.read_text().splitlines())
        for path in root.rglob("*.py")
    }
    return {name: n for name, n in sizes.items() if n > limit}


def test_no_module_is_longer_than_a_reader_can_hold() -> None:
    long = _long_modules(PACKAGE, MAX_MODULE_LINES)
    assert set(long) <= set(ONE_COHESIVE_CLASS), (
        f"modules over {MAX_MODULE_LINES} lines: "
        f"{ {k: v for k, v in long.items() if k not in ONE_COHESIVE_CLASS} }; "
        "split them by concern (a pure move), see docs/architecture.md"
    )


def test_the_size_check_sees_a_long_module(tmp_path: Path) -> None:
    (tmp_path / "short.py").write_text("x = 1\n" * 10)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "long.py").write_text("x = 1\n" * 11)
    assert _long_modules(tmp_path, 10) == {"sub/long.py": 11}
