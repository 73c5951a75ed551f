"""Sessions: `nox` runs tests on every Python, the tests against the lowest
allowed dependency versions, lint, mypy, docs and the build.

`nox -s fast` is the quick check in the current environment (one Python, no
new venv, stress tests left out); `nox -s tests-3.12` the whole suite on one
Python; `nox -s benchmarks` runs the side-by-side benchmarks (not in the
default set). Test sessions run pytest-xdist with one worker per core
(`-n auto`); pass `-- -n 0` to run in one process.

A Python of the matrix that is not installed is skipped with a warning on a
developer's machine and is an error on CI (`CI` set, as `.ci/run` does).
"""

from __future__ import annotations

import glob
import logging
import os
import re
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
# One place for the supported Pythons: the trove classifiers.
PYTHONS = nox.project.python_versions(PYPROJECT)

nox.options.sessions = ["tests", "tests_lowest", "lint", "mypy", "docs", "build"]
# CI must run the whole matrix; a newcomer without pyenv still gets a result.
nox.options.error_on_missing_interpreters = bool(os.environ.get("CI"))
nox.options.reuse_existing_virtualenvs = True
# Say which backend we use instead of letting nox look for uv on every
# session; nox still probes once, and its "uv binary not found." reads like
# an error to a newcomer, so that one line is filtered out.
nox.options.default_venv_backend = "virtualenv"


class _WithoutUvProbeNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "uv binary not found."


logging.getLogger("nox").addFilter(_WithoutUvProbeNoise())

# The lowest versions the package allows, one `name==version` a line,
# generated from pyproject's `>=` bounds; tests/test_packaging.py keeps it equal.
LOWEST = ROOT / ".ci" / "constraints-lowest.txt"
# Test-only packages that cannot be installed beside the lowest versions
# (mcp 2.x needs pydantic>=2.12), and the tests that need them; those tests
# run in every other test session.
NOT_WITH_LOWEST = ("mcp",)
# Tests and pages that use the SDK without "mcp" in their names.
NEEDS_MCP_NAMED = ("resilient_tool",)
NEEDS_MCP = tuple(
    f"tests/test_docs.py::test_page_examples_run[docs/{page}.md]"
    for page in ("adoption", "liveness", "resilient", "taxonomy")
)


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


def _pytest_args(session: nox.Session) -> list[str]:
    # One xdist worker per core unless the caller chose (`-- -n 0` for none).
    args = list(session.posargs)
    if not any(a == "-n" or a.startswith(("-n", "--numprocesses")) for a in args):
        args = ["-n", "auto", *args]
    return args


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    _install(session, "tests")
    session.run("pytest", *_pytest_args(session), env={"PYTHONDONTWRITEBYTECODE": "1"})


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()


@nox.session(python=PYTHONS[0])
def tests_lowest(session: nox.Session) -> None:
    """The tests against exactly the lowest versions pyproject allows."""
    pinned = {
        _name(line): line.strip()
        for line in LOWEST.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    extras = ",".join(
        extra
        for extra in PYPROJECT["project"]["optional-dependencies"]
        # `all` repeats every other extra, mcp among them.
        if extra not in NOT_WITH_LOWEST and extra != "all"
    )
    tests = [
        req
        for req in nox.project.dependency_groups(PYPROJECT, "tests")
        if _name(req) not in pinned and _name(req) not in NOT_WITH_LOWEST
    ]
    # The SDK is released in step with the API: take the API's lowest.
    sdk = pinned["opentelemetry-api"].replace("-api", "-sdk")
    tests = [req for req in tests if _name(req) != "opentelemetry-sdk"] + [sdk]
    session.install("-c", str(LOWEST), f".[{extras}]", *tests)
    session.run("pip", "list", "--format=freeze", silent=False)
    session.run(
        "pytest",
        *_pytest_args(session),
        "-k",
        " and ".join(f"not {name}" for name in NOT_WITH_LOWEST + NEEDS_MCP_NAMED),
        *(f"--deselect={test}" for test in NEEDS_MCP),
        env={"PYTHONDONTWRITEBYTECODE": "1"},
    )


@nox.session(python=False)
def fast(session: nox.Session) -> None:
    """The suite in the current environment, without the stress tests.

    No new virtualenv: it installs the package (editable) and the test group
    into the Python that runs nox, which is why the README runs it inside
    the quick start's venv.
    """
    requirements = nox.project.dependency_groups(PYPROJECT, "tests")
    # sys.executable: "python" on PATH may be a pyenv interpreter put there
    # by _expose_pyenv_interpreters, not the venv that runs nox.
    python = sys.executable
    session.run(python, "-m", "pip", "install", "--quiet", "-e", ".", *requirements)
    session.run(
        python, "-m", "pytest", *_pytest_args(session), "-q", "-m", "not stress",
        env={"PYTHONDONTWRITEBYTECODE": "1"},
    )  # fmt: skip


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
