"""CATALOG: stable codes in exit-code families, user rules, and the docs table."""

from __future__ import annotations

import errno
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
)

import paios_reliability as pr
from paios_reliability import CATALOG
from paios_reliability._core.catalog import Catalog
from strategies import StatusError

DOCS = Path(__file__).parent.parent / "docs" / "taxonomy.md"
START, END = "<!-- catalog:start -->", "<!-- catalog:end -->"

FAMILIES = {
    range(10, 20): "input, validation, configuration",
    range(20, 30): "transient",
    range(30, 40): "policy, authentication, credentials",
    range(40, 50): "internal, integrity, resources, interruption",
}
# Codes whose family is part of the contract, checked one by one.
EXPECTED_FAMILY = {
    "USAGE_ERROR": 10, "VALIDATION_ERROR": 10, "MALFORMED_DATA": 10, "CONFIG_INVALID": 10,
    "CONFIG_MISSING": 10, "HTTP_BAD_REQUEST": 10, "HTTP_NOT_FOUND": 10,
    "HTTP_UNPROCESSABLE": 10, "FILE_NOT_FOUND": 10, "DEPENDENCY_MISSING": 10,
    "TRANSIENT": 20, "TIMEOUT": 20, "CONNECTION_RESET": 20, "CONNECTION_REFUSED": 20,
    "HTTP_TOO_MANY_REQUESTS": 20, "HTTP_SERVICE_UNAVAILABLE": 20, "DB_LOCKED": 20,
    "CIRCUIT_OPEN": 20, "RATE_LIMITED": 20, "BULKHEAD_FULL": 20, "LOCK_CONFLICT": 20,
    "UNCLASSIFIED": 20, "DNS_FAILURE": 20,
    "HTTP_UNAUTHORIZED": 30, "HTTP_FORBIDDEN": 30, "CREDENTIAL_ERROR": 30,
    "CREDENTIAL_MISSING": 30, "CREDENTIAL_EXPIRED": 30, "POLICY_DENIED": 30,
    "APPROVAL_REQUIRED": 30, "CAPABILITY_DENIED": 30, "PERMISSION_DENIED": 30,
    "PROGRAMMING_ERROR": 40, "INTEGRITY_ERROR": 40, "DB_CORRUPT": 40,
    "DB_NOT_A_DATABASE": 40, "DISK_FULL": 40, "INTERRUPTED": 40, "CANCELLED": 40,
    "SYSTEM_EXIT": 40, "RELIABILITY_ERROR": 40,
}  # fmt: skip
RECOVERIES = {
    "retry", "retry_after", "wait_for_lock", "reduce_load", "fail_fast", "fix_input",
    "fix_config", "fix_code", "refresh_credentials", "request_approval",
    "restore_backup", "free_resources", "escalate", "abort",
}  # fmt: skip


class VendorError(Exception):
    pass


class VendorTimeout(VendorError):
    pass


# -- the table -----------------------------------------------------------------------


def test_at_least_fifty_stable_codes() -> None:
    assert len(CATALOG) >= 50
    assert len({e.code for e in CATALOG}) == len(CATALOG)


@pytest.mark.parametrize("entry", list(CATALOG), ids=lambda e: e.code)
def test_every_entry_is_well_formed(entry: pr.CatalogEntry) -> None:
    assert re.fullmatch(r"[A-Z][A-Z0-9_]*", entry.code)
    assert entry.kind in ("transient", "permanent")
    assert entry.recovery in RECOVERIES
    assert entry.summary.strip()
    assert "\n" not in entry.summary
    assert "|" not in entry.summary  # it goes into a Markdown table
    assert 10 <= entry.exit_code <= 49
    # transient codes are exactly the 20-29 family
    assert (entry.kind == "transient") == (20 <= entry.exit_code <= 29)
    assert entry.retryable is (entry.kind == "transient")
    assert CATALOG[entry.code] is entry
    assert CATALOG.get(entry.code) is entry
    assert entry.code in CATALOG


@pytest.mark.parametrize(("code", "family"), sorted(EXPECTED_FAMILY.items()))
def test_codes_sit_in_their_family(code: str, family: int) -> None:
    assert CATALOG[code].exit_code in range(family, family + 10), FAMILIES[
        range(family, family + 10)
    ]


def test_every_family_is_used() -> None:
    used = {e.exit_code // 10 * 10 for e in CATALOG}
    assert used == {10, 20, 30, 40}


@pytest.mark.parametrize(
    "cls",
    [getattr(pr, n) for n in pr.__all__ if isinstance(getattr(pr, n), type) and issubclass(getattr(pr, n), pr.ReliabilityError)],
    ids=lambda c: c.__name__,
)  # fmt: skip
def test_every_exception_class_has_a_catalog_code(
    cls: type[pr.ReliabilityError],
) -> None:
    entry = CATALOG[cls.default_code]
    assert entry.retryable is cls.default_retryable


def test_unknown_codes_get_a_family_exit_code() -> None:
    assert CATALOG.exit_code("NO_SUCH_CODE", retryable=True) == 29
    assert CATALOG.exit_code("NO_SUCH_CODE", retryable=False) == 41
    assert CATALOG.get("NO_SUCH_CODE") is None
    assert "NO_SUCH_CODE" not in CATALOG
    with pytest.raises(KeyError):
        CATALOG["NO_SUCH_CODE"]


def test_to_markdown_lists_every_code_sorted_by_exit_code() -> None:
    lines = CATALOG.to_markdown().splitlines()
    assert lines[:2] == [
        "| code | kind | exit | recovery | summary |",
        "|---|---|---|---|---|",
    ]
    rows = [line.split(" | ") for line in lines[2:]]
    assert [r[0].strip("| `") for r in rows] == [
        e.code for e in sorted(CATALOG, key=lambda e: (e.exit_code, e.code))
    ]
    assert all(len(r) == 5 for r in rows)


def test_docs_table_matches_the_catalog() -> None:
    text = DOCS.read_text()
    assert text.count(START) == 1
    assert text.count(END) == 1
    table = text.split(START, 1)[1].split(END, 1)[0].strip("\n") + "\n"
    assert table == CATALOG.to_markdown(), (
        "docs/taxonomy.md is out of date with CATALOG; regenerate the table "
        "between the catalog markers with `paios-reliability catalog --markdown`"
    )


@pytest.mark.parametrize("name", ["http", "grpc", "jsonrpc", "text"])
def test_issue14_docs_reference_tables_match_the_rules(name: str) -> None:
    from paios_reliability._core.taxonomy import reference_tables

    start, end = f"<!-- rules:{name}:start -->", f"<!-- rules:{name}:end -->"
    text = DOCS.read_text()
    assert (text.count(start), text.count(end)) == (1, 1)
    table = text.split(start, 1)[1].split(end, 1)[0].strip("\n") + "\n"
    assert table == reference_tables()[name], (
        f"docs/taxonomy.md's {name} table is out of date; regenerate it between "
        "its markers from paios_reliability._core.taxonomy.reference_tables()"
    )


def test_issue14_every_reference_table_is_in_the_docs() -> None:
    from paios_reliability._core.taxonomy import reference_tables

    text = DOCS.read_text()
    assert set(reference_tables()) == set(
        re.findall(r"<!-- rules:(\w+):start -->", text)
    )


def test_the_regeneration_command_prints_the_docs_table() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "paios_reliability", "catalog", "--markdown"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == CATALOG.to_markdown()


# -- register(): matching ---------------------------------------------------------------


def test_register_by_type() -> None:
    with CATALOG.register(
        "VENDOR_DOWN", type=VendorError, kind="transient", summary="Vendor SDK failed."
    ):
        failure = pr.classify(VendorTimeout("x"))
        assert (failure.code, failure.kind, failure.retryable) == (
            "VENDOR_DOWN",
            "transient",
            True,
        )
        assert pr.exit_code_for(VendorTimeout()) == 29
        assert pr.classify(ValueError()).code == "PROGRAMMING_ERROR"
    assert pr.classify(VendorTimeout("x")).code == "UNCLASSIFIED"
    assert "VENDOR_DOWN" not in CATALOG


def test_register_by_type_tuple() -> None:
    with CATALOG.register("DB_LOCKED", type=(LookupError, VendorError)):
        assert pr.classify(KeyError("k")).code == "DB_LOCKED"
        assert pr.classify(VendorError()).code == "DB_LOCKED"
        assert pr.classify(TypeError()).code == "PROGRAMMING_ERROR"


def test_register_by_errno() -> None:
    with CATALOG.register("RESOURCE_BUSY", errno=errno.ENOENT):
        assert (
            pr.classify(FileNotFoundError(errno.ENOENT, "gone")).code == "RESOURCE_BUSY"
        )
        assert pr.classify(OSError(errno.EACCES, "no")).code == "PERMISSION_DENIED"


def test_register_by_status() -> None:
    with CATALOG.register("HTTP_SERVICE_UNAVAILABLE", status=404):
        failure = pr.classify(StatusError(404, {"Retry-After": "3"}))
        assert (failure.code, failure.retryable, failure.retry_after) == (
            "HTTP_SERVICE_UNAVAILABLE",
            True,
            3.0,
        )
        assert pr.classify(StatusError(400)).code == "HTTP_BAD_REQUEST"


def test_register_by_message_regex() -> None:
    with CATALOG.register(
        "QUOTA",
        message=r"(?i)quota exceeded",
        kind="transient",
        exit_code=25,
        recovery="retry_after",
        summary="Quota.",
    ):
        assert pr.classify(RuntimeError("Daily QUOTA exceeded for key")).code == "QUOTA"
        assert pr.classify(RuntimeError("something else")).code == "UNCLASSIFIED"
        assert CATALOG["QUOTA"].exit_code == 25
    with CATALOG.register("DB_LOCKED", message=re.compile("^busy$")):
        assert pr.classify(RuntimeError("busy")).code == "DB_LOCKED"
        assert pr.classify(RuntimeError("not busy")).code == "UNCLASSIFIED"


def test_register_by_predicate_and_all_criteria_must_match() -> None:
    seen: list[BaseException] = []

    def is_flaky(exc: BaseException) -> bool:
        seen.append(exc)
        return getattr(exc, "flaky", False) is True

    with CATALOG.register("TRANSIENT", type=ValueError, predicate=is_flaky):
        plain, marked, other = ValueError("a"), ValueError("b"), TypeError("c")
        marked.flaky = True  # type: ignore[attr-defined]
        other.flaky = True  # type: ignore[attr-defined]
        assert pr.classify(plain).code == "PROGRAMMING_ERROR"
        assert pr.classify(marked).code == "TRANSIENT"
        assert pr.classify(other).code == "PROGRAMMING_ERROR"
    assert seen == [
        plain,
        marked,
    ]  # the type check came first; TypeError never got there


def test_user_rules_win_over_builtins_and_our_own_errors() -> None:
    with (
        CATALOG.register(
            "FIX_IT",
            type=ConnectionResetError,
            kind="permanent",
            summary="Never retry resets here.",
        ),
        CATALOG.register("CIRCUIT_OPEN", type=pr.PolicyDeniedError),
    ):
        assert pr.classify(ConnectionResetError()).code == "FIX_IT"
        assert pr.is_retryable(ConnectionResetError()) is False
        assert pr.classify(pr.PolicyDeniedError("no")).code == "CIRCUIT_OPEN"


def test_newest_rule_wins() -> None:
    with CATALOG.register("TRANSIENT", type=VendorError):
        with CATALOG.register("PERMANENT", type=VendorError):
            assert pr.classify(VendorError()).code == "PERMANENT"
        assert pr.classify(VendorError()).code == "TRANSIENT"


def test_restorer_removes_its_rule_and_the_code_it_added() -> None:
    first = CATALOG.register(
        "VENDOR_X", type=VendorError, kind="transient", summary="x"
    )
    second = CATALOG.register("VENDOR_X", type=VendorTimeout)
    first()
    assert "VENDOR_X" in CATALOG  # still used by the second rule
    assert pr.classify(VendorError()).code == "UNCLASSIFIED"
    assert pr.classify(VendorTimeout()).code == "VENDOR_X"
    second()
    assert "VENDOR_X" not in CATALOG
    assert pr.classify(VendorTimeout()).code == "UNCLASSIFIED"
    first()  # harmless twice
    second()


def test_restorer_never_removes_a_builtin_code() -> None:
    restore = CATALOG.register("DB_LOCKED", type=VendorError)
    restore()
    assert "DB_LOCKED" in CATALOG


def test_a_broken_predicate_never_breaks_classify() -> None:
    def broken(exc: BaseException) -> bool:
        raise RuntimeError("bug in the user's rule")

    class Falsy:
        def __bool__(self) -> bool:
            raise RuntimeError("no truth")

    with (
        CATALOG.register("TRANSIENT", type=KeyError),
        CATALOG.register("PERMANENT", predicate=broken),
        CATALOG.register("PERMANENT", predicate=lambda e: Falsy()),  # type: ignore[arg-type,return-value]
    ):
        assert (
            pr.classify(KeyError("k")).code == "TRANSIENT"
        )  # the next rule still applies
        assert pr.classify(ConnectionResetError()).code == "CONNECTION_RESET"


def test_snapshot_drops_everything_added_after_it() -> None:
    restore = CATALOG.snapshot()
    CATALOG.register("LATER", type=VendorError, kind="permanent", summary="later")
    assert "LATER" in CATALOG
    restore()
    assert "LATER" not in CATALOG
    assert pr.classify(VendorError()).code == "UNCLASSIFIED"


def test_register_defaults_for_new_codes() -> None:
    with CATALOG.register("NEW_T", type=VendorError, kind="transient", summary="t"):
        assert (CATALOG["NEW_T"].exit_code, CATALOG["NEW_T"].recovery) == (29, "retry")
    with CATALOG.register("NEW_P", type=VendorError, kind="permanent", summary="p"):
        assert (CATALOG["NEW_P"].exit_code, CATALOG["NEW_P"].recovery) == (
            41,
            "fail_fast",
        )


def test_concurrent_registration_and_classification() -> None:
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        code = f"THREAD_{i}"
        cls = type(f"E{i}", (Exception,), {})
        try:
            for _ in range(50):
                with CATALOG.register(code, type=cls, kind="permanent", summary="t"):
                    assert pr.classify(cls()).code == code
                assert pr.classify(cls()).code == "UNCLASSIFIED"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert not any(c.startswith("THREAD_") for c in (e.code for e in CATALOG))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"code": "X_NEW"}, "at least one of"),
        ({"code": "lower", "type": VendorError, "kind": "permanent", "summary": "s"}, "UPPER_SNAKE_CASE"),
        ({"code": 5, "type": VendorError}, "UPPER_SNAKE_CASE"),
        ({"code": "DB_LOCKED", "type": VendorError, "kind": "permanent"}, "the code exists"),
        ({"code": "DB_LOCKED", "type": VendorError, "summary": "again"}, "the code exists"),
        ({"code": "X_NEW", "type": VendorError}, "needs kind= and summary="),
        ({"code": "X_NEW", "type": VendorError, "kind": "transient"}, "needs kind= and summary="),
        ({"code": "X_NEW", "type": VendorError, "kind": "sometimes", "summary": "s"}, "kind must be"),
        ({"code": "X_NEW", "type": VendorError, "kind": "permanent", "summary": "s", "exit_code": 50}, "10..49"),
        ({"code": "X_NEW", "type": VendorError, "kind": "permanent", "summary": "s", "exit_code": 0}, "10..49"),
        ({"code": "X_NEW", "type": VendorError, "kind": "permanent", "summary": "s", "exit_code": 25}, "permanent code needs"),
        ({"code": "X_NEW", "type": VendorError, "kind": "transient", "summary": "s", "exit_code": 12}, "transient code needs"),
        ({"code": "X_NEW", "type": VendorError, "kind": "permanent", "summary": "s", "recovery": "pray"}, "unknown recovery"),
        ({"code": "X_NEW", "type": VendorError, "kind": "permanent", "summary": "  "}, "summary must not be empty"),
        ({"code": "DB_LOCKED", "type": "ValueError"}, "type must be an exception class"),
        ({"code": "DB_LOCKED", "type": int}, "type must be an exception class"),
        ({"code": "DB_LOCKED", "type": ()}, "type must be an exception class"),
        ({"code": "DB_LOCKED", "errno": "ENOENT"}, "errno must be an int"),
        ({"code": "DB_LOCKED", "errno": True}, "errno must be an int"),
        ({"code": "DB_LOCKED", "status": 700}, "status must be an int in 100..599"),
        ({"code": "DB_LOCKED", "status": "404"}, "status must be an int in 100..599"),
        ({"code": "DB_LOCKED", "message": "(unclosed"}, "bad message regex"),
        ({"code": "DB_LOCKED", "message": 42}, "message must be a str or compiled regex"),
        ({"code": "DB_LOCKED", "predicate": "yes"}, "predicate must be callable"),
    ],
)  # fmt: skip
def test_bad_registrations_are_clear_value_errors(
    kwargs: dict[str, object], message: str
) -> None:
    before = (len(CATALOG), [e.code for e in CATALOG])
    code = kwargs.pop("code")
    with pytest.raises(ValueError, match=re.escape(message)):
        CATALOG.register(code, **kwargs)  # type: ignore[arg-type]
    assert before == (len(CATALOG), [e.code for e in CATALOG])
    assert pr.classify(VendorError()).code == "UNCLASSIFIED"


def test_a_fresh_catalog_rejects_bad_entries() -> None:
    with pytest.raises(ValueError, match="transient code needs"):
        Catalog((("BAD", "transient", 41, "retry", "wrong family"),))
    assert len(Catalog((("GOOD", "permanent", 41, "escalate", "fine"),))) == 1


# -- a state machine: register / restore in any order against a model --------------------

PROBES = [type(f"Probe{i}", (Exception,), {}) for i in range(3)]
CODES = ["DB_LOCKED", "HTTP_GONE", "USER_A", "USER_B"]


class CatalogRules(RuleBasedStateMachine):
    """Rules come and go in any order; classify always follows the newest live rule."""

    registrations = Bundle("registrations")

    def __init__(self) -> None:
        super().__init__()
        self.restore_all = CATALOG.snapshot()
        self.live: list[tuple[int, str, type[Exception]]] = []  # newest first
        self.counter = 0

    @rule(
        target=registrations, code=st.sampled_from(CODES), probe=st.sampled_from(PROBES)
    )
    def register(self, code: str, probe: type[Exception]) -> tuple[int, pr.Restorer]:
        self.counter += 1
        if code in CATALOG:
            restorer = CATALOG.register(code, type=probe)
        else:
            restorer = CATALOG.register(
                code, type=probe, kind="transient", summary="user"
            )
        self.live.insert(0, (self.counter, code, probe))
        return (self.counter, restorer)

    @rule(registration=consumes(registrations))
    def restore(self, registration: tuple[int, pr.Restorer]) -> None:
        ident, restorer = registration
        restorer()
        self.live = [r for r in self.live if r[0] != ident]

    @invariant()
    def classify_follows_the_model(self) -> None:
        for probe in PROBES:
            expected = next(
                (code for _, code, p in self.live if p is probe), "UNCLASSIFIED"
            )
            assert pr.classify(probe()).code == expected

    @invariant()
    def user_codes_exist_exactly_while_used(self) -> None:
        used = {code for _, code, _ in self.live}
        for code in ("USER_A", "USER_B"):
            assert (code in CATALOG) == (code in used)

    def teardown(self) -> None:
        self.restore_all()


TestCatalogRules = CatalogRules.TestCase
TestCatalogRules.settings = settings(
    max_examples=60, stateful_step_count=20, deadline=None
)
