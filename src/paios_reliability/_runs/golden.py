"""Golden runs: record a run's output once, replay it and compare hashes.

``paios_reliability.testing.golden``. A deterministic agent step (a prompt
builder, a parser, a planner over recorded tool results) should give the
same output on every run, in every process, on every supported Python: the
golden file holds the :func:`~paios_reliability.stable_hash` of the output
(volatile keys such as timestamps and ids excluded) and the output itself,
so a mismatch can say *which* part changed. ``paios-reliability replay
check`` runs the same comparison in CI.

::

    from paios_reliability.testing import golden

    golden.record("tests/golden/plan.json", "myapp.plan:golden_run")
    result = golden.check("tests/golden/plan.json", "myapp.plan:golden_run",
                          times=5, processes=2)
    assert result.ok, result.explain()
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .._core.exceptions import ConfigError

__all__ = ["GoldenResult", "check", "load_target", "record"]

Target = str | Callable[[], Any]
_FORMAT = 1
_MAX_TIMES = 1000


@dataclass(frozen=True, slots=True)
class GoldenResult:
    """The outcome of :func:`check`.

    Attributes:
        path: The golden file.
        expected: The recorded hash.
        hashes: The hash of each replay, in order (in-process ones first).
        changed: For a mapping output, the top-level keys whose value
            changed in the first differing replay (added and removed keys
            included); empty otherwise.
        first_mismatch: The first differing replay's output, or ``None``.
    """

    path: str
    expected: str
    hashes: tuple[str, ...]
    changed: tuple[str, ...] = ()
    first_mismatch: Any = None

    @property
    def ok(self) -> bool:
        """Every replay hashed to the recorded hash."""
        return all(h == self.expected for h in self.hashes)

    def explain(self) -> str:
        """One paragraph for a test failure or a CI log."""
        bad = sum(h != self.expected for h in self.hashes)
        if not bad:
            return (
                f"{self.path}: {len(self.hashes)} replay(s) match {self.expected[:12]}"
            )
        text = (
            f"{self.path}: {bad} of {len(self.hashes)} replay(s) differ from "
            f"{self.expected[:12]}"
        )
        if self.changed:
            text += f"; changed keys: {', '.join(self.changed)}"
        return text


def load_target(spec: str) -> Callable[[], Any]:
    """The function named by ``module:attr`` (importable from the cwd too).

    Raises:
        ConfigError: ``USAGE_ERROR`` when it cannot be imported or called.
    """
    from .._core.imports import import_object

    obj = import_object(spec, form="target must be module:function", what="target")
    if not callable(obj):
        raise ConfigError(f"target {spec!r} is not callable", code="USAGE_ERROR")
    fn: Callable[[], Any] = obj
    return fn


def _resolve(target: Target) -> Callable[[], Any]:
    return load_target(target) if isinstance(target, str) else target


def _hash(output: Any) -> str:
    from .._data.signed import stable_hash

    return stable_hash(output)


def _run_and_hash(spec: str) -> tuple[str, Any]:
    # Runs in a worker process: import the target afresh there.
    output = load_target(spec)()
    return _hash(output), json.loads(json.dumps(output, default=str))


def record(path: str | os.PathLike[str], target: Target) -> str:
    """Run ``target`` once and write its output and hash to ``path`` atomically.

    Returns:
        The hash written.

    Raises:
        ConfigError: ``USAGE_ERROR`` for a target that cannot be loaded.
    """
    from .._data.atomic import atomic_write
    from .._data.signed import canonical_json

    output = _resolve(target)()
    digest = _hash(output)
    body = {
        "format": _FORMAT,
        "hash": digest,
        "output": json.loads(canonical_json(output, exclude=())),
    }
    atomic_write(path, json.dumps(body, indent=2, sort_keys=True) + "\n")
    return digest


def _read(path: str) -> tuple[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            body = json.load(f)
    except OSError as exc:
        raise ConfigError(
            f"cannot read golden file {path}: {exc.strerror or exc}", code="USAGE_ERROR"
        ) from exc
    except ValueError as exc:
        raise ConfigError(
            f"golden file {path} is not JSON: {exc}", code="CONFIG_INVALID"
        ) from exc
    if (
        not isinstance(body, dict)
        or body.get("format") != _FORMAT
        or not isinstance(body.get("hash"), str)
    ):
        raise ConfigError(
            f"golden file {path} is not a format-{_FORMAT} golden record "
            "(write it with golden.record or `replay check --record`)",
            code="CONFIG_INVALID",
        )
    return body["hash"], body.get("output")


def _changed(expected: Any, actual: Any) -> tuple[str, ...]:
    if not isinstance(expected, Mapping) or not isinstance(actual, Mapping):
        return ()
    keys = sorted(set(expected) | set(actual), key=str)

    def alone(data: Mapping[Any, Any], key: Any) -> dict[Any, Any]:
        # Hashed as a one-key mapping, so volatile keys drop out as they do
        # for the whole output.
        return {key: data[key]} if key in data else {}

    return tuple(
        str(k) for k in keys if _hash(alone(expected, k)) != _hash(alone(actual, k))
    )


def check(
    path: str | os.PathLike[str],
    target: Target,
    *,
    times: int = 3,
    processes: int = 0,
) -> GoldenResult:
    """Replay ``target`` and compare every output's hash with the golden one.

    Args:
        path: The golden file written by :func:`record`.
        target: The run: a function without arguments, or ``module:attr``
            (needed for ``processes``, which import it afresh).
        times: Replays in this process.
        processes: Replays in that many fresh worker processes (spawned,
            so nothing is inherited), one each.

    Raises:
        ConfigError: ``USAGE_ERROR`` for a bad target or count, a missing
            file; ``CONFIG_INVALID`` for a file that is not a golden record.
    """
    name = os.fspath(path)
    if not (0 <= times <= _MAX_TIMES and 0 <= processes <= _MAX_TIMES) or (
        times + processes == 0
    ):
        raise ConfigError(
            f"times and processes must be 0..{_MAX_TIMES}, not both 0; "
            f"got {times} and {processes}",
            code="USAGE_ERROR",
        )
    if processes and not isinstance(target, str):
        raise ConfigError(
            "replays in other processes need the target as 'module:function'",
            code="USAGE_ERROR",
        )
    expected, golden_output = _read(name)
    fn = _resolve(target)
    results: list[tuple[str, Any]] = []
    for _ in range(times):
        output = fn()
        results.append((_hash(output), output))
    if processes:
        import multiprocessing

        assert isinstance(target, str)  # checked above
        with multiprocessing.get_context("spawn").Pool(min(processes, 8)) as pool:
            results.extend(pool.map(_run_and_hash, [target] * processes))
    mismatch = next((out for h, out in results if h != expected), None)
    first_bad = next((i for i, (h, _) in enumerate(results) if h != expected), None)
    return GoldenResult(
        path=name,
        expected=expected,
        hashes=tuple(h for h, _ in results),
        changed=_changed(golden_output, mismatch) if first_bad is not None else (),
        first_mismatch=mismatch,
    )
