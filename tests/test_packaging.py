"""What CI relies on: dependency bounds that are tested, and deterministic runs.

- Every runtime dependency and extra has a lower bound, and
  ``.ci/constraints-lowest.txt`` (what ``nox -s tests_lowest`` installs) pins
  exactly those bounds, so the lowest-versions run cannot drift from
  pyproject.toml.
- The ``ci`` Hypothesis profile draws the same examples on every run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest itself needs tomli on 3.10
    import tomli as tomllib

ROOT = Path(__file__).parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOWEST = ROOT / ".ci" / "constraints-lowest.txt"


def declared() -> list[Requirement]:
    project = PYPROJECT["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for group in project["optional-dependencies"].values():
        reqs += [Requirement(r) for r in group]
    return reqs


def lower_bound(req: Requirement) -> str:
    bounds = [s.version for s in req.specifier if s.operator == ">="]
    assert len(bounds) == 1, f"{req}: needs exactly one >= lower bound"
    return bounds[0]


def pinned() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in LOWEST.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==", f"{LOWEST.name}: {line!r} is not a pin"
        pins[req.name.lower()] = spec.version
    return pins


def test_every_dependency_and_extra_has_one_lower_bound() -> None:
    reqs = declared()
    assert {r.name.lower() for r in reqs} >= {"pydantic", "tenacity", "structlog"}
    for req in reqs:
        lower_bound(req)


def test_lowest_constraints_pin_exactly_the_pyproject_bounds() -> None:
    expected = {r.name.lower(): lower_bound(r) for r in declared()}
    assert pinned() == expected


def test_tenacity_bound_excludes_the_versions_without_retrying_name() -> None:
    # tenacity < 9.2 has no `name=` on BaseRetrying: the first transient failure
    # raised TypeError, and resilient(fallback=) then never retried again.
    (tenacity,) = [r for r in declared() if r.name == "tenacity"]
    assert not tenacity.specifier.contains("9.1.4")
    assert tenacity.specifier.contains("9.2.1")


def draw_examples() -> list[tuple[int, str]]:
    seen: list[tuple[int, str]] = []

    @settings(settings.get_profile("ci"))
    @given(st.integers(), st.text())
    def probe(number: int, text: str) -> None:
        seen.append((number, text))

    probe()
    return seen


def test_ci_profile_draws_the_same_examples_on_every_run() -> None:
    first, second = draw_examples(), draw_examples()
    assert len(first) >= 100
    assert first == second


@pytest.mark.parametrize("profile", ["ci", "dev"])
def test_hypothesis_profile_comes_from_the_environment(profile: str) -> None:
    code = (
        "import sys; sys.path.insert(0, 'tests'); import conftest;"
        "from hypothesis import settings;"
        "print(settings.default.derandomize, settings.default.database is None)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "HYPOTHESIS_PROFILE": profile},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == (["True", "True"] if profile == "ci" else ["False", "False"])


def test_ci_entry_point_selects_the_ci_profile() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert "export HYPOTHESIS_PROFILE=ci" in script


def test_ci_entry_point_installs_the_nox_of_the_dev_group() -> None:
    (nox,) = [
        r for r in PYPROJECT["dependency-groups"]["dev"] if str(r).startswith("nox")
    ]
    assert f'pip install --quiet "{nox}"' in (ROOT / ".ci" / "run").read_text()
