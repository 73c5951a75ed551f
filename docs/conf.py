"""Sphinx configuration (MyST Markdown pages, API reference from docstrings)."""

from __future__ import annotations

import inspect
from importlib.metadata import version as _version
from typing import Any

from sphinx.pycode import ModuleAnalyzer

import paios_reliability
import paios_reliability.testing

project = "paios_reliability"
author = "paios_reliability developers"
copyright = "2026, paios_reliability developers"
release = _version("paios-reliability")

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "README.md"]
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
# Show `Counter`, not `paios_reliability._observe.metrics.Counter`: readers
# use the public names only.
python_use_unqualified_type_names = True
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False


# Public names are defined in private modules (`paios_reliability._observe.
# metrics.Counter`) and re-exported. Before autodoc runs, give each public
# class and function the module users import it from, as trio and attrs do:
# the reference then documents `paios_reliability.Counter` and annotations in
# signatures link to it, never to a private path. Only the docs build does
# this; `import paios_reliability` is unchanged.
_DEFINED_IN: dict[str, str] = {}  # public path -> private module, for viewcode


def _rehome(public: str, names: list[str], source: Any) -> None:
    for name in names:
        obj = getattr(source, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if obj.__module__.startswith("paios_reliability._"):
            _DEFINED_IN[f"{public}.{name}"] = obj.__module__
            obj.__module__ = public


# The exceptions already say `paios_reliability` at run time (for tracebacks
# and pickling); their source is found through the lazy-import table.
for _name, _module in paios_reliability._LAZY.items():
    if _module.startswith("_"):
        _DEFINED_IN[f"paios_reliability.{_name}"] = f"paios_reliability.{_module}"
_rehome("paios_reliability", paios_reliability.__all__, paios_reliability)
_rehome(
    "paios_reliability.testing",
    paios_reliability.testing.__all__,
    paios_reliability.testing,
)
_golden = paios_reliability.testing.golden
_rehome("paios_reliability.testing.golden", _golden.__all__, _golden)


def _follow_imported(app: Any, modname: str, fullname: str) -> str | None:
    """Link "[source]" of a rehomed name to the module that defines it."""
    if not modname or not fullname:
        return None
    return _DEFINED_IN.get(f"{modname}.{fullname.partition('.')[0]}")


def _constant_doc(*event: Any) -> None:
    """A re-exported constant: its doc comment from the module that defines it.

    Without this autodoc finds no comment in `paios_reliability/__init__.py`
    and shows the docstring of the value's type (`frozenset`, `tuple`).
    The event passes (app, what, name, obj, options, lines).
    """
    _, what, name, _, _, lines = event
    public, _, attr = name.rpartition(".")
    if what != "data" or public != "paios_reliability":
        return
    first = f"paios_reliability.{paios_reliability._LAZY[attr]}"
    for module in [first, *sorted(set(_DEFINED_IN.values()))]:
        found = ModuleAnalyzer.for_module(module).find_attr_docs().get(("", attr))
        if found:
            lines[:] = list(found)
            return


def _is_private_class(base: Any) -> bool:
    module = getattr(base, "__module__", "")
    return module.startswith("paios_reliability") and base.__name__.startswith("_")


def _public_bases(app: Any, name: str, obj: Any, options: Any, bases: list) -> None:
    """Under "Bases", show a private helper class (`_Metric`) as its own bases."""
    public: list[Any] = []
    pending = list(bases)
    while pending:
        base = pending.pop(0)
        if _is_private_class(base):
            pending[:0] = base.__bases__
        elif base not in public:
            public.append(base)
    bases[:] = public


def setup(app: Any) -> None:
    app.connect("viewcode-follow-imported", _follow_imported)
    app.connect("autodoc-process-docstring", _constant_doc)
    app.connect("autodoc-process-bases", _public_bases)


html_theme = "furo"
html_title = "paios_reliability"
