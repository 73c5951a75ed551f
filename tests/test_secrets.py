"""Secrets never leave the process.

Hypothesis plants generated secrets (token-shaped strings of every common
family, and random values under secret key names) in function arguments and
locals, env-like mappings, argv lists, URLs, metadata and exception text; the
tests drive retry, error_boundary, resilient, the default log hook,
configure_logging (text and JSON), audit_event, Event.to_dict/repr, the crash
handler (a real child process) and the CLI, and assert that no planted secret
appears anywhere in what they write.

The audit ("secrets in logs") found: JSON tracebacks showing frame locals,
raw exception text in tracebacks and retry notes, and a redact_text that
missed most token shapes. Each has a regression test named after it.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import logging
import os
import string
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import paios_reliability as pr
from paios_reliability import cli
from paios_reliability._core.events import emit
from paios_reliability._core.redaction import (
    REDACTED,
    is_secret_key,
    json_safe,
    redact_text,
)
from paios_reliability.testing import capture_events, set_testing
from strategies import secret_keys

ROOT = Path(__file__).resolve().parent.parent
HYPOTHESIS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PIPELINE = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- generated secrets --------------------------------------------------------------

ALNUM = string.ascii_letters + string.digits
B64URL = ALNUM + "_-"
UPPER_DIGITS = string.ascii_uppercase + string.digits


def chars(
    alphabet: str, size: int, max_size: int | None = None
) -> st.SearchStrategy[str]:
    return st.text(alphabet=alphabet, min_size=size, max_size=max_size or size)


def joined(*parts: st.SearchStrategy[str] | str) -> st.SearchStrategy[str]:
    strategies = [st.just(p) if isinstance(p, str) else p for p in parts]
    return st.tuples(*strategies).map("".join)


# Real keys always mix digits or capitals in; the random body gets both.
MIXED = joined(
    chars(ALNUM, 1),
    chars(B64URL, 14, 40),
    chars(string.digits, 1),
    chars(string.ascii_uppercase, 1),
)

TOKEN_FAMILIES: dict[str, st.SearchStrategy[str]] = {
    "openai": joined(st.sampled_from(["sk-", "sk-proj-", "sk-svcacct-"]), MIXED),
    "anthropic": joined("sk-ant-api03-", MIXED),
    "github": joined("gh", st.sampled_from("pousr"), "_", chars(ALNUM, 36)),
    "github_pat": joined("github_pat_", chars(ALNUM, 22), "_", chars(ALNUM, 59)),
    "gitlab": joined("glpat-", chars(ALNUM, 1), chars(B64URL, 19)),
    "slack": joined(
        "xox",
        st.sampled_from("abpr"),
        "-",
        chars(string.digits, 10, 13),
        "-",
        chars(string.digits, 10, 13),
        "-",
        chars(ALNUM, 24),
    ),
    "aws": joined(st.sampled_from(["AKIA", "ASIA"]), chars(UPPER_DIGITS, 16)),
    "google": joined("AIza", chars(B64URL, 35)),
    "jwt": joined(
        "eyJ",
        chars(B64URL, 10, 40),
        ".eyJ",
        chars(B64URL, 10, 60),
        ".",
        chars(B64URL, 10, 43),
    ),
    "huggingface": joined("hf_", chars(ALNUM, 34)),
    "stripe": joined(st.sampled_from(["sk_live_", "rk_test_"]), chars(ALNUM, 24)),
    "npm": joined("npm_", chars(ALNUM, 36)),
}
token_secrets = st.sampled_from(sorted(TOKEN_FAMILIES)).flatmap(
    lambda f: TOKEN_FAMILIES[f]
)
# A shapeless value: only the name it sits under gives it away. It starts with
# a letter and holds no separator, so every form below can carry it.
shapeless_values = joined(chars(ALNUM, 1), chars(ALNUM + "!#$%*+./:?@^_~", 11, 30))
url_passwords = joined(chars(ALNUM, 1), chars(ALNUM + "-_.~!$*+", 9, 24))


def text_key(key: str) -> str:
    """A secret key as it appears in text: no spaces (``x token`` -> ``x_token``)."""
    return key.replace(" ", "_")


@dataclass(frozen=True)
class Plant:
    """One secret and the text that carries it."""

    secret: str
    text: str


NAMED_FORMS: tuple[Callable[[str, str], str], ...] = (
    lambda k, v: f"{k}={v}",
    lambda k, v: f"{k}: {v}",
    lambda k, v: f'"{k}": "{v}"',
    lambda k, v: f"{{'{k}': '{v}', 'ok': 1}}",
    lambda k, v: f"--{k}={v}",
    lambda k, v: f"--{k} {v} --verbose",
    lambda k, v: repr(["tool", "run", f"--{k}", v, "-v"]),
    lambda k, v: f"GET https://api.example.com/v1/items?page=2&{k}={v}&sort=asc",
    lambda k, v: f"export {k.upper()}={v}",
    lambda k, v: f"{k}={v!r}",
)
TOKEN_FORMS: tuple[Callable[[str], str], ...] = (
    lambda t: t,
    lambda t: f"key {t} rejected",
    lambda t: f"Authorization: Bearer {t}",
    lambda t: f"curl -H 'Authorization: Bearer {t}' https://api.example.com",
    lambda t: f"env={{'PATH': '/usr/bin', 'GH': '{t}'}}",
    lambda t: repr(["deploy", "--key-file", "/tmp/k", t]),
    lambda t: f"https://api.example.com/hook?x={t}",
    lambda t: f"({t})",
)


@st.composite
def plants(draw: st.DrawFn) -> Plant:
    kind = draw(st.sampled_from(["token", "named", "url"]))
    if kind == "token":
        secret = draw(token_secrets)
        return Plant(secret, draw(st.sampled_from(TOKEN_FORMS))(secret))
    if kind == "url":
        secret = draw(url_passwords)
        user = draw(chars(string.ascii_lowercase, 1, 8))
        scheme = draw(st.sampled_from(["https", "postgresql", "redis", "amqp"]))
        return Plant(secret, f"{scheme}://{user}:{secret}@db.internal:5432/app")
    key = text_key(draw(secret_keys()))
    secret = draw(shapeless_values)
    return Plant(secret, draw(st.sampled_from(NAMED_FORMS))(key, secret))


FILLER = st.sampled_from(
    [
        "backend reset",
        "max_tokens=123",
        "after 3 attempts;",
        "status: 503",
        "see https://example.com/docs?page=2",
        "input_tokens: 812",
        "run_id=r-42",
        "\n",
    ]
)


@st.composite
def planted_texts(draw: st.DrawFn) -> tuple[str, list[str]]:
    """Ordinary text with 1-4 secrets planted in it: ``(text, secrets)``."""
    found = draw(st.lists(plants(), min_size=1, max_size=4))
    parts: list[str] = []
    for plant in found:
        parts.extend(draw(st.lists(FILLER, max_size=2)))
        parts.append(plant.text)
    parts.extend(draw(st.lists(FILLER, max_size=2)))
    return " ".join(parts), [p.secret for p in found]


@st.composite
def planted_contexts(draw: st.DrawFn) -> tuple[dict[str, Any], list[str]]:
    """Metadata as callers pass it: env mappings, argv lists, URLs, headers."""
    named = draw(shapeless_values)
    env_secret = draw(shapeless_values)
    token = draw(token_secrets)
    flag_secret = draw(shapeless_values)
    password = draw(url_passwords)
    key = draw(secret_keys())
    context = {
        key: named,
        "env": {"PATH": "/usr/bin", text_key(draw(secret_keys())).upper(): env_secret},
        "argv": ["tool", f"--{text_key(draw(secret_keys()))}", flag_secret, "-v"],
        "url": f"https://bob:{password}@db.internal/app",
        "headers": {"Accept": "application/json", "X-Request": f"Bearer {token}"},
        "max_tokens": 123,
    }
    return context, [named, env_secret, token, flag_secret, password]


def assert_no_secret(secrets: list[str], **channels: str) -> None:
    for channel, text in channels.items():
        for secret in secrets:
            assert secret not in text, f"secret leaked into {channel}: {text!r}"


# -- redact_text ------------------------------------------------------------------------


@HYPOTHESIS
@given(planted=planted_texts())
def test_redact_text_masks_every_planted_secret(planted: tuple[str, list[str]]) -> None:
    text, secrets = planted
    once = redact_text(text)
    assert_no_secret(secrets, redacted=once)
    assert REDACTED in once


@HYPOTHESIS
@given(planted=planted_texts())
def test_redact_text_is_idempotent_and_never_grows_a_secret_back(
    planted: tuple[str, list[str]],
) -> None:
    text, secrets = planted
    once = redact_text(text)
    twice = redact_text(once)
    assert twice == once
    assert_no_secret(secrets, twice=twice)


@HYPOTHESIS
@given(text=st.text(max_size=300))
def test_redact_text_is_idempotent_on_any_text(text: str) -> None:
    once = redact_text(text)
    assert redact_text(once) == once


PROSE_WORDS = st.sampled_from(
    [
        "the", "worker", "finished", "step", "3", "of", "7", "after", "1.25",
        "seconds;", "retrying", "in", "0.4s", "passed", "authority", "keyboard",
        "monkey", "design", "session", "tokens", "tokenizer", "basic", "checks",
        "ran", "Note:", "status: ok", "max_tokens=123", "input_tokens: 812",
        "output_tokens=77", "token_count=5", "retries=3", "attempt=2",
        "session_id=run-7", "timeout=30.0", "https://example.com/a/b?page=2&q=x",
        "http://localhost:8080/health", "12:00:01", "key", "keys", "(see", "docs)",
        "a-b-c", "x_y_z", "sk-learn", "--verbose", "--max-tokens 5", "--",
    ]
)  # fmt: skip


@HYPOTHESIS
@given(words=st.lists(PROSE_WORDS, max_size=40), sep=st.sampled_from([" ", "\n", ", "]))
def test_redact_text_keeps_ordinary_text_intact(words: list[str], sep: str) -> None:
    text = sep.join(words)
    assert redact_text(text) == text


def test_redact_text_keeps_token_counts() -> None:
    text = "max_tokens=123 input_tokens: 812 token_count=4 tokenizer=cl100k"
    assert redact_text(text) == text
    assert json_safe({"max_tokens": 123, "max_token": 9, "token_type": "bearer"}) == {
        "max_tokens": 123,
        "max_token": 9,
        "token_type": "bearer",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("token=sk-SECRET123", "token=[REDACTED]"),
        ("key sk-proj-Q7pXv2LmN8rT4wZ6yB1cD3eF end", "key [REDACTED] end"),
        ("sk-ant-api03-Hk5Jm7Np9Qr2St4Uv6Wx8Yz0", "[REDACTED]"),
        ("ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8", "[REDACTED]"),
        ("github_pat_11ABCDEFG0123456789_abcdefghijklmnop", "[REDACTED]"),
        ("xoxb-2048-4096-Zq8Wn3Lk5Pj7", "[REDACTED]"),
        ("aws AKIAIOSFODNN7EXAMPLE", "aws [REDACTED]"),
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln", "[REDACTED]"),
        ("https://user:pass@host/db", "https://user:[REDACTED]@host/db"),
        ("Authorization: Bearer abc.def", "Authorization: [REDACTED]"),
        ("--password=X1", "--password=[REDACTED]"),
        ("--token X1 --verbose", "--token [REDACTED] --verbose"),
        ("['--token', 'X1']", "['--token', [REDACTED]]"),
        ("/v1?api_key=K1&page=2", "/v1?api_key=[REDACTED]&page=2"),
        ("Cookie: a=1; b=2\nnext", "Cookie: [REDACTED]\nnext"),
        ("client_secret: {'a': 1} ok", "client_secret: [REDACTED] ok"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----", "-----BEGIN RSA PRIVATE KEY-----[REDACTED]"),
        ("https://hooks.slack.com/services/T0/B0/XX", "https://hooks.slack.com/services/[REDACTED]"),
        ("Basic dXNlcjpwYXNz", "Basic [REDACTED]"),
        ("basic checks failed", "basic checks failed"),
        ("basic max_tokens=123", "basic max_tokens=123"),
        ("sk-learn-based", "sk-learn-based"),
    ],
)  # fmt: skip
def test_secrets_in_logs_redact_text_knows_the_common_token_shapes(
    text: str, expected: str
) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("session", True), ("flask.session", True), ("sessionid", True),
        ("PHPSESSID", True), ("session_key", True), ("session_id", False),
        ("private_key", True), ("privateKey", True), ("client_secret", True),
        ("set-cookie", True), ("credentials", True), ("apikey", True),
        ("passwd", True), ("db_pass", True), ("MYSQL_PWD", True), ("PWD", False),
        ("jwt", True), ("X-Amz-Signature", True), ("auth", True),
        ("author", False), ("passenger", False), ("design", False),
        ("token_count", False), ("max_token", False), ("access_token_expires_in", False),
        ("refresh_token", True), ("GITHUB_TOKEN", True), ("sentry_dsn", True),
    ],
)  # fmt: skip
def test_secret_key_names(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


def test_json_safe_redacts_the_value_after_a_secret_flag_in_argv() -> None:
    argv = ["deploy", "--token", "T1", "--password", "P1", "--name", "n", "-v"]
    assert json_safe(argv) == [
        "deploy", "--token", REDACTED, "--password", REDACTED, "--name", "n", "-v",
    ]  # fmt: skip


# -- every channel: fixed secrets, real capture fixtures ---------------------------------

FIXED = {
    "openai": "sk-proj-Q7pXv2LmN8rT4wZ6yB1cD3eF",
    "github": "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
    "aws": "AKIAQ3EGRZ7PLEXAMPLE",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwcm9iZSJ9.c2lnbmF0dXJl",
    "url": "Url-Pa55word-7",
    "flag": "Cli-T0ken-sp",
    "named": "Shapeless-Client-Value",
    "local": "sk-LOCAL-SECRET-4242",
}
FIXED_MESSAGE = (
    f"backend reset, token={FIXED['openai']} gh {FIXED['github']} aws {FIXED['aws']} "
    f"jwt {FIXED['jwt']} via https://alice:{FIXED['url']}@db/app "
    f"argv={['deploy', '--token', FIXED['flag']]!r} client_secret={FIXED['named']}"
)


def fails_with(message: str) -> Callable[..., None]:
    def call(api_key: str, env: dict[str, str], argv: list[str]) -> None:
        local_secret = api_key  # a frame local: must never be shown
        raise ConnectionResetError(message + ("" if local_secret else "!"))

    return call


def test_secrets_in_logs_default_hook_lines_tracebacks_and_notes(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """The audit saw token=sk-SECRET123 ten times on one server's stderr."""
    caplog.set_level(logging.DEBUG)
    call = fails_with(FIXED_MESSAGE)

    @pr.error_boundary(fallback="fallback")
    @pr.retry(attempts=3)
    def tool(api_key: str, env: dict[str, str], argv: list[str]) -> None:
        call(api_key, env, argv)

    with set_testing(True):
        assert (
            tool(
                FIXED["local"],
                {"DB_PASSWORD": FIXED["named"]},
                ["--token", FIXED["flag"]],
            )
            == "fallback"
        )
    out, err = capfd.readouterr()
    assert "Traceback (most recent call last)" in caplog.text  # the traceback is there
    if sys.version_info >= (3, 11):  # tracebacks print exception notes from 3.11
        assert (
            "attempt 1: ConnectionResetError: backend reset, token=[REDACTED]"
            in caplog.text
        )
    assert_no_secret(list(FIXED.values()), caplog=caplog.text, stdout=out, stderr=err)


def test_secrets_in_logs_retry_notes_are_redacted() -> None:
    call = fails_with(FIXED_MESSAGE)
    with set_testing(True), pytest.raises(ConnectionResetError) as info:
        pr.retry(attempts=2)(call)(FIXED["local"], {}, [])
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "attempt 1: ConnectionResetError" in notes
    assert_no_secret(list(FIXED.values()), notes=notes)


def test_secrets_in_logs_stdlib_last_resort_prints_only_redacted_text() -> None:
    """The plainest logging a host can ask for prints only redacted text.

    (Without any logging set up nothing is printed at all: the library's
    logger has a NullHandler, so lastResort stays silent; issue 16.)
    """
    script = textwrap.dedent(
        f"""
        import logging
        logging.basicConfig()
        import paios_reliability as pr

        @pr.error_boundary(fallback=None)
        def handler(api_key):
            raise ConnectionResetError({FIXED_MESSAGE!r})

        handler({FIXED["local"]!r})
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "paios_reliability.error_boundary.caught" in result.stderr
    assert "ConnectionResetError: backend reset, token=[REDACTED]" in result.stderr
    assert_no_secret(list(FIXED.values()), stderr=result.stderr, stdout=result.stdout)


@pytest.mark.parametrize("json_mode", [True, False])
def test_secrets_in_logs_configure_logging_shows_no_frame_locals(
    json_mode: bool,
) -> None:
    """dict_tracebacks showed "locals": {"api_key": "'sk-LOCAL-SECRET'"}."""
    import structlog

    stream = io.StringIO()
    with redirected_stderr(stream), pr.configure_logging(json=json_mode, level="DEBUG"):
        try:
            fails_with("boom")(FIXED["local"], {}, [])
        except ConnectionResetError:
            structlog.get_logger("agent").exception("tool_failed")
    text = stream.getvalue()
    assert "ConnectionResetError: boom" in text or '"exc_value": "boom"' in text
    assert FIXED["local"] not in text
    if json_mode:
        (line,) = [json.loads(x) for x in text.splitlines()]
        frames = line["exception"][0]["frames"]
        assert frames
        assert all(not f.get("locals") for f in frames)  # 22.x: "locals": null


# -- every channel: Hypothesis-planted secrets --------------------------------------------


@contextlib.contextmanager
def redirected_stderr(stream: io.StringIO) -> Iterator[None]:
    old, sys.stderr = sys.stderr, stream
    try:
        yield
    finally:
        sys.stderr = old


@contextlib.contextmanager
def captured_log_text() -> Iterator[io.StringIO]:
    """Every record, through a plain stdlib Formatter (message + exc_text) and
    the structured payload the default hook attaches."""
    stream = io.StringIO()

    class Handler(logging.StreamHandler):  # type: ignore[type-arg]
        def emit(self, record: logging.LogRecord) -> None:
            super().emit(record)
            payload = getattr(record, "paios_event", None)
            if payload is not None:
                stream.write(json.dumps(payload, default=repr) + "\n")

    handler = Handler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        with pr.set_log_summary(None):  # every line written, none summarised away
            yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def events_text(events: Any) -> str:
    return "\n".join(
        itertools.chain.from_iterable(
            (json.dumps(e.to_dict()), repr(e)) for e in events
        )
    )


@PIPELINE
@given(planted=planted_texts(), context=planted_contexts())
def test_retry_boundary_and_resilient_write_no_planted_secret(
    planted: tuple[str, list[str]], context: tuple[dict[str, Any], list[str]]
) -> None:
    message, secrets = planted
    metadata, context_secrets = context
    secrets = secrets + context_secrets
    call = fails_with(message)

    @pr.error_boundary(fallback=None)
    @pr.retry(attempts=2)
    def guarded(api_key: str, env: dict[str, str], argv: list[str]) -> None:
        call(api_key, env, argv)

    @pr.resilient(name="tool", retry={"attempts": 2}, fallback="fallback")
    def tool(api_key: str, env: dict[str, str], argv: list[str]) -> None:
        call(api_key, env, argv)

    notes = ""
    with captured_log_text() as logs, capture_events() as events, set_testing(True):
        guarded(secrets[0], metadata["env"], metadata["argv"])
        tool(secrets[0], metadata["env"], metadata["argv"])
        try:
            pr.retry(attempts=2)(call)(secrets[0], metadata["env"], metadata["argv"])
        except ConnectionResetError as exc:
            notes = "\n".join(getattr(exc, "__notes__", []))
        try:
            call(secrets[0], metadata["env"], metadata["argv"])
        except ConnectionResetError as exc:
            emit(
                "probe",
                "failed",
                level="error",
                subject=metadata["url"],
                exc=exc,
                **metadata,
            )
    assert "Traceback" in logs.getvalue()
    assert_no_secret(
        secrets, logs=logs.getvalue(), notes=notes, events=events_text(events)
    )


@PIPELINE
@given(planted=planted_texts(), json_mode=st.booleans())
def test_configure_logging_writes_no_planted_secret(
    planted: tuple[str, list[str]], json_mode: bool
) -> None:
    import structlog

    message, secrets = planted
    stream = io.StringIO()
    with (
        redirected_stderr(stream),
        pr.configure_logging(json=json_mode, level="DEBUG"),
        pr.set_log_summary(None),
    ):
        pr.error_boundary(fallback=None)(fails_with(message))(secrets[0], {}, [])
        try:
            fails_with(message)(secrets[0], {}, [])
        except ConnectionResetError:
            structlog.get_logger("agent").exception("failed", detail=message)
        logging.getLogger("thirdparty").warning("retrying: %s", message)
    text = stream.getvalue()
    assert text.count("ConnectionResetError") >= 2
    assert_no_secret(secrets, stderr=text)


@HYPOTHESIS
@given(planted=planted_texts(), context=planted_contexts())
def test_audit_event_and_event_views_hold_no_planted_secret(
    planted: tuple[str, list[str]], context: tuple[dict[str, Any], list[str]]
) -> None:
    message, secrets = planted
    metadata, context_secrets = context
    try:
        try:
            raise OSError(message)
        except OSError as cause:
            raise RuntimeError(message) from cause
    except RuntimeError as exc:
        record = pr.audit_event(exc, **metadata)
        event = pr.Event(
            name="paios_reliability.probe.x", subject=message, fields=metadata, exc=exc
        )
    assert record["context"]["max_tokens"] == 123
    assert_no_secret(
        secrets + context_secrets,
        audit=json.dumps(record),
        to_dict=json.dumps(event.to_dict()),
        repr=repr(event),
    )


CRASH_CHILD = """
import json, sys
import paios_reliability as pr

secrets = json.loads(open(sys.argv[2], encoding="utf-8").read())
store = pr.EventStore(sys.argv[1])
pr.install_crash_handler(store, service="probe")

def handler(api_key, env, argv):
    local_copy = api_key
    raise ConnectionResetError(secrets["message"])

handler(secrets["secrets"][0], secrets["env"], secrets["argv"])
"""


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(planted=planted_texts(), context=planted_contexts())
def test_crash_handler_records_and_stderr_hold_no_planted_secret(
    planted: tuple[str, list[str]], context: tuple[dict[str, Any], list[str]]
) -> None:
    message, secrets = planted
    metadata, context_secrets = context
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "observability.sqlite")
        data = os.path.join(tmp, "secrets.json")
        Path(data).write_text(
            json.dumps(
                {
                    "message": message,
                    "secrets": secrets,
                    "env": metadata["env"],
                    "argv": metadata["argv"],
                }
            ),
            encoding="utf-8",
        )
        result = subprocess.run(
            [sys.executable, "-c", CRASH_CHILD, db, data],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        store = pr.EventStore(db)
        try:
            (crash,) = store.query(category="crash", action="uncaught_exception")
        finally:
            store.close()
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr  # still printed...
    assert "ConnectionResetError" in crash.metadata["traceback"]  # ...and recorded
    assert_no_secret(
        secrets + context_secrets,
        record=json.dumps(dict(crash.metadata)),
        stderr=result.stderr,
        stdout=result.stdout,
    )


_modules = itertools.count()


@PIPELINE
@given(planted=planted_texts())
def test_cli_error_line_holds_no_planted_secret(planted: tuple[str, list[str]]) -> None:
    message, secrets = planted
    name = f"_secrets_registry_{next(_modules)}"
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, f"{name}.py").write_text(
            f"def registry():\n    raise ConnectionResetError({message!r})\n",
            encoding="utf-8",
        )
        sys.path.insert(0, tmp)
        err = io.StringIO()
        try:
            with (
                redirected_stderr(err),
                contextlib.redirect_stdout(io.StringIO()) as out,
            ):
                status = cli.main(["health", "--registry", f"{name}:registry"])
        finally:
            sys.path.remove(tmp)
            sys.modules.pop(name, None)
    assert status != 0
    assert err.getvalue().startswith("paios-reliability: error: ")
    assert_no_secret(secrets, stderr=err.getvalue(), stdout=out.getvalue())


# -- the probe: a fixed set of scenarios, one number -------------------------------------


def test_secrets_probe_finds_no_leak() -> None:
    """benchmarks/secrets_probe.py counted 170 leaks before; it must count none."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "secrets_probe.py"), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report == {"leaks": 0, "found": []}


def test_a_traceback_longer_than_the_limit_keeps_its_end_redacted() -> None:
    from paios_reliability._core.redaction import redacted_traceback

    try:
        raise ValueError("x" * 50_000 + f" token={FIXED['named']}")
    except ValueError as exc:
        text = redacted_traceback(exc, limit=1000)
    assert text.startswith("...\n")
    assert len(text) <= 1004
    assert text.endswith("token=[REDACTED]\n")
    assert FIXED["named"] not in text


def test_unprintable_exceptions_still_get_a_redacted_line() -> None:
    class Hostile(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    event = pr.Event(name="paios_reliability.x.y", exc=Hostile())
    assert event.to_dict()["error"] == "<unprintable Hostile>"
    assert "Hostile" in repr(event)
