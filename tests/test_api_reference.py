"""The API reference lists every public name once, under its public path.

The reference was one 1.4 MB page (``automodule`` with ``:imported-members:``)
that linked private modules ~65 times (issue 20, "A newcomer's first hour").
It is now ``docs/api.md`` plus one page per concern under ``docs/api/``, each
with explicit directives. These checks read the Markdown only (no Sphinx
build), so a new public name cannot be left out of the reference.
"""

from __future__ import annotations

import importlib
import re
from collections import defaultdict
from pathlib import Path

import paios_reliability
import paios_reliability.mcp
import paios_reliability.testing
import paios_reliability.typing

DOCS = Path(__file__).parent.parent / "docs"
PAGES = [DOCS / "api.md", *sorted((DOCS / "api").glob("*.md"))]
DIRECTIVE = re.compile(
    r"^\.\. (?P<kind>(?:py:|auto)[a-z]+)::[ \t]+(?P<target>\S+)", re.M
)
# Directives that name no object (they only set the context of the page).
CONTEXT = {"py:currentmodule"}
PUBLIC_MODULES = [
    paios_reliability,
    paios_reliability.testing,
    paios_reliability.typing,
    paios_reliability.mcp,
]


def _directives() -> list[tuple[str, str, str]]:
    """(page, kind, target) of every directive on the API pages."""
    found = []
    for page in PAGES:
        name = str(page.relative_to(DOCS))
        for match in DIRECTIVE.finditer(page.read_text("utf-8")):
            kind = match.group("kind")
            if kind in CONTEXT:
                continue
            found.append((name, kind, match.group("target")))
    return found


def _resolve(target: str) -> object:
    """The object a dotted path names, importing as far as modules go."""
    parts = target.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(target)


def test_every_public_name_is_documented_on_exactly_one_page() -> None:
    pages: dict[str, list[str]] = defaultdict(list)
    for page, _, target in _directives():
        pages[target].append(page)
    for module in PUBLIC_MODULES:
        for name in module.__all__:
            path = f"{module.__name__}.{name}"
            assert len(pages[path]) == 1, (
                f"{path} is public ({module.__name__}.__all__) and must have one "
                f"directive on one page of docs/api/, found on {pages[path] or 'none'}"
            )


def test_the_reference_names_no_private_module() -> None:
    for page, kind, target in _directives():
        private = [
            p for p in target.split(".") if p.startswith("_") and p != "__version__"
        ]
        assert not private, f"{page}: `.. {kind}:: {target}` names a private module"
        # automodule documents whatever a module holds; list the names instead.
        assert kind != "automodule", f"{page}: `.. automodule:: {target}`"


def test_every_directive_names_an_existing_object() -> None:
    for page, kind, target in _directives():
        try:
            _resolve(target)
        except (ImportError, AttributeError) as exc:
            raise AssertionError(f"{page}: `.. {kind}:: {target}`: {exc}") from exc


def test_the_index_lists_every_page() -> None:
    index = (DOCS / "api.md").read_text("utf-8")
    toctree = re.search(r"^```\{toctree\}\n(.*?)^```", index, re.M | re.S)
    assert toctree, "docs/api.md has no toctree"
    listed = {line for line in toctree.group(1).splitlines() if line.startswith("api/")}
    on_disk = {f"api/{page.stem}" for page in PAGES[1:]}
    assert listed == on_disk
    for page in on_disk:
        assert f"{{doc}}`{page}`" in index, (
            f"docs/api.md does not say what {page} holds"
        )
