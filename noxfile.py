"""Sessions: `nox` runs tests on every Python, lint, mypy and docs.

`nox -s benchmarks` runs the side-by-side benchmarks (not in the default set).
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import nox

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
ROOT = Path(__file__).parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")

nox.options.sessions = ["tests", "lint", "mypy", "docs"]
nox.options.error_on_missing_interpreters = True
nox.options.reuse_existing_virtualenvs = True


def _expose_pyenv_interpreters() -> None:
    """Put pyenv's real interpreters on PATH ahead of its shims.

    A pyenv shim named `python3.10` exists even when that version is not
    activated, and then fails; nox must find the real binaries instead.
    """
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found = []
    for version in PYTHONS:
        candidates = sorted(
            glob.glob(os.path.join(root, "versions", f"{version}.*", "bin")),
            key=lambda p: [
                int(x) for x in Path(p).parent.name.split(".") if x.isdigit()
            ],
        )
        if candidates:
            found.append(candidates[-1])
    if found:
        os.environ["PATH"] = os.pathsep.join([*found, os.environ.get("PATH", "")])


_expose_pyenv_interpreters()


def _install(session: nox.Session, *groups: str) -> None:
    requirements: list[str] = []
    for group in groups:
        requirements += nox.project.dependency_groups(PYPROJECT, group)
    session.install(".", *requirements)


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    _install(session, "tests")
    session.run("pytest", *session.posargs, env={"PYTHONDONTWRITEBYTECODE": "1"})


@nox.session(python="3.12")
def lint(session: nox.Session) -> None:
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    paths = ["src", "tests", "benchmarks", "noxfile.py", "docs/conf.py"]
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)


@nox.session(python="3.12")
def mypy(session: nox.Session) -> None:
    _install(session, "typing")
    session.run("mypy", "--strict", "src", "tests/typing")


@nox.session(python="3.12")
def docs(session: nox.Session) -> None:
    _install(session, "docs")
    session.run(
        "sphinx-build", "-W", "--keep-going", "-q", "-b", "html",
        "docs", "docs/_build/html",
    )  # fmt: skip


@nox.session(python="3.12")
def benchmarks(session: nox.Session) -> None:
    _install(session, "bench")
    for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        session.run("python", str(script), *session.posargs)
