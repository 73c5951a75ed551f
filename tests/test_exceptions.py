"""The exception tree: shape, builtin mix-ins, attributes, pickling across processes."""

from __future__ import annotations

import copy
import multiprocessing
import pickle
from collections.abc import Mapping
from typing import Any

import pytest

import paios_reliability as pr
from paios_reliability._core import exceptions as _exceptions

# class -> its direct bases, exactly as DESIGN.md draws the tree
TREE: dict[type[BaseException], tuple[type[BaseException], ...]] = {
    pr.ReliabilityError: (Exception,),
    pr.TransientError: (pr.ReliabilityError,),
    pr.PermanentError: (pr.ReliabilityError,),
    pr.TimeoutExceeded: (pr.TransientError, TimeoutError),
    pr.CircuitOpenError: (pr.TransientError,),
    pr.RateLimitedError: (pr.TransientError,),
    pr.BulkheadFullError: (pr.RateLimitedError,),
    pr.LockConflictError: (pr.TransientError,),
    pr.ConfigError: (pr.PermanentError, ValueError),
    pr.CredentialError: (pr.PermanentError,),
    pr.CredentialMissingError: (pr.CredentialError,),
    pr.CredentialExpiredError: (pr.CredentialError,),
    pr.PolicyDeniedError: (pr.PermanentError,),
    pr.ApprovalRequiredError: (pr.PolicyDeniedError,),
    pr.CapabilityDeniedError: (pr.PolicyDeniedError,),
    pr.IntegrityError: (pr.PermanentError,),
}
ATTRIBUTES = (
    "args", "message", "code", "retryable", "context", "retry_after", "breaker_name",
    "seconds", "key", "holder", "path", "errors",
)  # fmt: skip


def samples() -> list[pr.ReliabilityError]:
    """One instance of every class, every attribute set to a non-default value."""
    ctx = {"tool": "search", "attempt": 3, "nested": {"ids": [1, 2]}}
    return [
        pr.ReliabilityError("root", code="CUSTOM_CODE", retryable=True, context=ctx),
        pr.TransientError("flaky", context=ctx),
        pr.PermanentError("nope", code="HTTP_GONE"),
        pr.TimeoutExceeded("too slow", seconds=2.5, context=ctx),
        pr.CircuitOpenError(breaker_name="github", retry_after=12.5, context=ctx),
        pr.RateLimitedError("slow down", retry_after=0.25, code="HTTP_TOO_MANY_REQUESTS"),
        pr.BulkheadFullError("full", retry_after=1.0),
        pr.LockConflictError(key="job-7", holder="worker-2", retry_after=3.0),
        pr.ConfigError(path="/etc/app.json", errors=[("db.port", "must be an int"), ("name", "required")]),
        pr.CredentialError("unusable"),
        pr.CredentialMissingError("no github token", context={"name": "github"}),
        pr.CredentialExpiredError("expired"),
        pr.PolicyDeniedError("denied"),
        pr.ApprovalRequiredError("needs a human"),
        pr.CapabilityDeniedError("no shell"),
        pr.IntegrityError("bad signature", context={"path": "state.json"}),
    ]  # fmt: skip


def attributes(exc: BaseException) -> dict[str, Any]:
    out: dict[str, Any] = {"type": type(exc)}
    for name in ATTRIBUTES:
        if hasattr(exc, name):
            value = getattr(exc, name)
            out[name] = dict(value) if isinstance(value, Mapping) else value
    return out


# -- the tree ----------------------------------------------------------------------------


def test_tree_is_complete() -> None:
    public = {
        getattr(pr, n)
        for n in pr.__all__
        if isinstance(getattr(pr, n), type)
        and issubclass(getattr(pr, n), BaseException)
    }
    assert set(TREE) <= public
    # Primitives may add errors, but only under the two branches, with a code.
    for cls in public - set(TREE):
        assert issubclass(cls, (pr.TransientError, pr.PermanentError)), cls
        assert pr.CATALOG[cls.default_code].retryable is issubclass(
            cls, pr.TransientError
        )


@pytest.mark.parametrize(
    ("cls", "bases"), TREE.items(), ids=lambda v: getattr(v, "__name__", "")
)
def test_direct_bases(
    cls: type[BaseException], bases: tuple[type[BaseException], ...]
) -> None:
    assert cls.__bases__ == bases
    assert issubclass(cls, pr.ReliabilityError)
    assert cls.__module__ == "paios_reliability"
    assert cls.__name__ in (_exceptions.__doc__ or "")  # the docstring draws it


def test_builtin_mixins_are_caught_by_existing_handlers() -> None:
    with pytest.raises(TimeoutError):
        raise pr.TimeoutExceeded("t")
    with pytest.raises(OSError):  # TimeoutError is an OSError
        raise pr.TimeoutExceeded("t")
    with pytest.raises(ValueError):
        raise pr.ConfigError("c")
    with pytest.raises(pr.RateLimitedError):
        raise pr.BulkheadFullError("b")
    assert isinstance(pr.TimeoutExceeded(), pr.TransientError)
    assert isinstance(pr.ConfigError(), pr.PermanentError)
    assert not isinstance(pr.CircuitOpenError(breaker_name="b"), TimeoutError)


@pytest.mark.parametrize("exc", samples(), ids=lambda e: type(e).__name__)
def test_retryable_follows_the_branch(exc: pr.ReliabilityError) -> None:
    expected = isinstance(exc, pr.TransientError) or type(exc) is pr.ReliabilityError
    assert exc.retryable is expected
    assert pr.is_retryable(exc) is expected


def test_defaults() -> None:
    exc = pr.RateLimitedError()
    assert (exc.code, exc.retryable, exc.retry_after, exc.message, str(exc)) == (
        "RATE_LIMITED", True, None, "", "",
    )  # fmt: skip
    assert dict(exc.context) == {}
    assert pr.TransientError("x", retryable=False).retryable is False
    assert pr.PermanentError("x", retryable=True).retryable is True


def test_generated_messages() -> None:
    assert (
        str(pr.CircuitOpenError(breaker_name="github"))
        == "circuit breaker 'github' is open"
    )
    assert str(pr.LockConflictError(key="job")) == "lock 'job' is held"
    assert str(
        pr.ConfigError(path="app.toml", errors=[("a.b", "required"), ("c", "bad")])
    ) == ("invalid configuration in app.toml: a.b: required; c: bad")
    assert str(pr.ConfigError()) == "invalid configuration"
    assert str(pr.ConfigError("custom", path="x")) == "custom"


def test_config_errors_are_string_pairs() -> None:
    exc = pr.ConfigError(errors=[(("db", 0), 42)])  # type: ignore[list-item]
    assert exc.errors == (("('db', 0)", "42"),)


def test_context_is_a_read_only_copy() -> None:
    source = {"a": 1}
    exc = pr.ReliabilityError("x", context=source)
    source["a"] = 2
    assert exc.context == {"a": 1}
    with pytest.raises(TypeError):
        exc.context["b"] = 2  # type: ignore[index]


def test_repr_and_str() -> None:
    exc = pr.CredentialExpiredError("github token expired")
    assert (
        repr(exc)
        == "CredentialExpiredError('github token expired', code='CREDENTIAL_EXPIRED')"
    )
    assert str(exc) == "github token expired"
    assert (
        repr(pr.TimeoutExceeded(seconds=1.0)) == "TimeoutExceeded('', code='TIMEOUT')"
    )


@pytest.mark.parametrize("exc", samples(), ids=lambda e: type(e).__name__)
def test_exit_code_property(exc: pr.ReliabilityError) -> None:
    assert exc.exit_code == pr.exit_code_for(exc)
    if exc.code in pr.CATALOG:
        assert exc.exit_code == pr.CATALOG[exc.code].exit_code
    assert (20 <= exc.exit_code <= 29) is exc.retryable


def test_exit_code_of_unknown_codes_follows_retryable() -> None:
    assert pr.ReliabilityError("x", code="MINE", retryable=True).exit_code == 29
    assert pr.ReliabilityError("x", code="MINE").exit_code == 41


# -- pickling ------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_every_class_pickles_with_all_attributes(protocol: int) -> None:
    for exc in samples():
        clone = pickle.loads(pickle.dumps(exc, protocol=protocol))
        assert attributes(clone) == attributes(exc)
        assert repr(clone) == repr(exc)
        assert clone.exit_code == exc.exit_code
        with pytest.raises(TypeError):
            clone.context["new"] = 1  # type: ignore[index]


def test_copy_and_deepcopy_keep_attributes() -> None:
    for exc in samples():
        assert attributes(copy.copy(exc)) == attributes(exc)
        assert attributes(copy.deepcopy(exc)) == attributes(exc)


class AppError(pr.TransientError):
    """A user subclass with its own attribute and constructor."""

    default_code = "TRANSIENT"

    def __init__(self, message: str, *, tenant: str) -> None:
        super().__init__(message, context={"tenant": tenant})
        self.tenant = tenant


def test_user_subclasses_pickle_without_calling_init() -> None:
    exc = AppError("boom", tenant="acme")
    clone = pickle.loads(pickle.dumps(exc))
    assert (type(clone), clone.tenant, dict(clone.context), str(clone)) == (
        AppError, "acme", {"tenant": "acme"}, "boom",
    )  # fmt: skip


def test_notes_survive_pickling() -> None:
    exc = pr.IntegrityError("bad")
    exc.__dict__.setdefault("__notes__", []).append("checked at startup")
    clone = pickle.loads(pickle.dumps(exc))
    assert clone.__notes__ == ["checked at startup"]


def _roundtrip_in_child(blob: bytes) -> tuple[list[dict[str, Any]], bytes]:
    """Runs in a fresh interpreter: unpickle, describe, pickle back."""
    excs = pickle.loads(blob)
    described = [
        {k: (repr(v) if k == "type" else v) for k, v in attributes(e).items()}
        for e in excs
    ]
    return described, pickle.dumps(excs)


def test_pickling_across_a_real_process() -> None:
    excs = samples()
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter, nothing inherited
    with ctx.Pool(1) as pool:
        described, blob = pool.apply_async(
            _roundtrip_in_child, (pickle.dumps(excs),)
        ).get(timeout=120)

    expected = [
        {k: (repr(v) if k == "type" else v) for k, v in attributes(e).items()}
        for e in excs
    ]
    assert described == expected
    back = pickle.loads(blob)
    assert [attributes(e) for e in back] == [attributes(e) for e in excs]
