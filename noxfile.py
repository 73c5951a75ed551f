"""Sessions: `nox` runs tests on every Python, lint, mypy and docs.

`nox -s benchmarks` runs the side-by-side benchmarks (not in the default set).
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
# One place for the supported Pythons: the trove classifiers.
PYTHONS = nox.project.python_versions(PYPROJECT)

nox.options.sessions = ["tests", "lint", "mypy", "docs", "build"]
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
    paths = ["src", "tests", "benchmarks", "examples", "noxfile.py", "docs/conf.py"]
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
def build(session: nox.Session) -> None:
    """Build sdist and wheel, check them, and smoke-test the wheel alone."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "build"))
    dist = ROOT / "dist"
    for old in dist.glob("*"):
        old.unlink()
    session.run("python", "-m", "build", "--outdir", str(dist))
    session.run("twine", "check", "--strict", *map(str, dist.glob("*")))
    wheel = next(dist.glob("*.whl"))
    session.install("--force-reinstall", str(wheel))
    tmp = session.create_tmp()
    session.chdir(tmp)  # no source tree on the path
    session.run("python", "-c", "import paios_reliability, sys; "
                "assert 'site-packages' in paios_reliability.__file__, paios_reliability.__file__")  # fmt: skip
    session.run("paios-reliability", "doctor")


@nox.session(python="3.12")
def benchmarks(session: nox.Session) -> None:
    _install(session, "bench")
    for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        session.run("python", str(script), *session.posargs)
