"""Sphinx configuration (MyST Markdown pages, API reference from docstrings)."""

from __future__ import annotations

from importlib.metadata import version as _version

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

html_theme = "furo"
html_title = "paios_reliability"
