"""The optional extras: apprise alerts, keyring secrets, psutil readings (issue 20).

Real parts only: a real HTTP server that apprise posts to, keyrings.alt's
file-backed keyring (a real keyring backend; the container has no desktop
keychain), real child processes for psutil.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import paios_reliability as pr
from paios_reliability._observe import memory_readings

SECRET = "sk-EXTRASECRET-0123456789"


# -- apprise ---------------------------------------------------------------------------


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, Any]]]
    status = 200

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.received.append((self.path, json.loads(self.rfile.read(length))))
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[
    tuple[int, list[tuple[str, dict[str, Any]]], type[_Receiver]]
]:
    handler = type("Handler", (_Receiver,), {"received": [], "status": 200})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler.received, handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)


def test_finding_apprise_channel_delivers_through_a_dispatcher(receiver: Any) -> None:
    """There was no way to reach the hundreds of services apprise knows."""
    port, received, _ = receiver
    channel = pr.AppriseChannel(f"json://127.0.0.1:{port}/alerts")
    dispatcher = pr.AlertDispatcher([channel])
    try:
        assert dispatcher.alert("critical", "database down", "state.sqlite is corrupt")
        assert dispatcher.flush(timeout=60)
    finally:
        dispatcher.close()
    ((path, body),) = received
    assert path == "/alerts"
    assert body["title"] == "[CRITICAL] database down"
    assert body["message"] == "state.sqlite is corrupt"
    assert body["type"] == "failure"
    assert dispatcher.stats()["apprise"].sent == 1


def test_finding_apprise_failure_is_counted_and_never_shows_the_url(
    receiver: Any,
) -> None:
    port, received, handler = receiver
    handler.status = 500
    channel = pr.AppriseChannel(f"json://user:{SECRET}@127.0.0.1:{port}/alerts")
    with pytest.raises(pr.TransientError) as caught:
        channel.send(pr.Alert(pr.AlertLevel.WARNING, "disk filling up"))
    assert len(received) == 1
    assert caught.value.code == "SERVICE_UNAVAILABLE"
    for text in (str(caught.value), repr(channel)):
        assert SECRET not in text
        assert "json" in text


def test_finding_apprise_rejects_a_bad_url_by_position_without_echoing_it() -> None:
    with pytest.raises(pr.ConfigError) as caught:
        pr.AppriseChannel(["json://127.0.0.1:1/ok", f"nosuchscheme://{SECRET}@x"])
    assert caught.value.code == "CONFIG_INVALID"
    assert "URL #2" in str(caught.value)
    assert SECRET not in str(caught.value)
    with pytest.raises(pr.ConfigError):
        pr.AppriseChannel([])


# -- keyring -----------------------------------------------------------------------------


@pytest.fixture
def file_keyring(tmp_path: Path) -> Iterator[Any]:
    import keyring
    from keyrings.alt.file import PlaintextKeyring

    previous = keyring.get_keyring()
    backend = PlaintextKeyring()
    backend.file_path = str(tmp_path / "keyring.cfg")  # type: ignore[misc]
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(previous)


def _cred(token: str, refresh: str | None = None) -> pr.Credential:
    return pr.Credential(provider="demo", token=token, refresh_token=refresh)  # type: ignore[arg-type]


def test_finding_keyring_store_keeps_only_references_in_the_file(
    tmp_path: Path, file_keyring: Any
) -> None:
    """Tokens could only live in the JSON file."""
    path = tmp_path / "credentials.json"
    store = pr.CredentialStore(path, create=True, secrets="keyring")
    store.set("github", _cred(SECRET, "rt-" + SECRET))
    store.close()
    text = path.read_text("utf-8")
    assert SECRET not in text
    profile = json.loads(text)["profiles"]["github"]
    assert profile["token"].startswith("keyring:paios-reliability:")
    assert profile["refresh_token"].endswith("#github/refresh_token")
    assert (
        file_keyring.get_password(
            "paios-reliability", f"{os.path.abspath(path)}#github/token"
        )
        == SECRET
    )
    # A second process reads the same secrets through the references.
    script = (
        "import sys, keyring; from keyrings.alt.file import PlaintextKeyring;"
        "k = PlaintextKeyring(); k.file_path = sys.argv[2]; keyring.set_keyring(k);"
        "import paios_reliability as pr;"
        "c = pr.CredentialStore(sys.argv[1], secrets='keyring').get('github');"
        "print(c.token.get_secret_value() == sys.argv[3], c.refresh_token is not None)"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(path), file_keyring.file_path, SECRET],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"]


def test_finding_keyring_store_moves_plain_tokens_and_forgets_deleted_profiles(
    tmp_path: Path, file_keyring: Any
) -> None:
    import keyring

    path = tmp_path / "credentials.json"
    plain = pr.CredentialStore(path, create=True)
    plain.set("old", _cred(SECRET))
    plain.set("gone", _cred("tok-gone"))
    plain.close()
    assert SECRET in path.read_text("utf-8")
    store = pr.CredentialStore(path, secrets="keyring")
    assert store.get("old").token.get_secret_value() == SECRET  # plain still read
    store.set("new", _cred("tok-new"))  # the next write moves every token
    assert SECRET not in path.read_text("utf-8")
    assert store.get("old").token.get_secret_value() == SECRET
    username = f"{os.path.abspath(path)}#gone/token"
    assert keyring.get_password("paios-reliability", username) == "tok-gone"
    store.delete("gone")
    assert keyring.get_password("paios-reliability", username) is None
    store.close()


def test_finding_keyring_missing_secret_is_a_clear_error(
    tmp_path: Path, file_keyring: Any
) -> None:
    import keyring

    path = tmp_path / "credentials.json"
    store = pr.CredentialStore(path, create=True, secrets="keyring")
    store.set("api", _cred(SECRET))
    store.close()
    keyring.delete_password("paios-reliability", f"{os.path.abspath(path)}#api/token")
    with pytest.raises(pr.CredentialMissingError) as caught:
        pr.CredentialStore(path, secrets="keyring").get("api")
    assert "'api'" in str(caught.value)
    assert "not in the keyring" in str(caught.value)


@settings(max_examples=25, deadline=None)
@given(
    tokens=st.dictionaries(
        st.text("abcdefghij_", min_size=1, max_size=8),
        st.text(min_size=1, max_size=40).filter(lambda t: not t.startswith("keyring:")),
        min_size=1,
        max_size=4,
    )
)
def test_finding_keyring_round_trips_any_token(
    tmp_path_factory: pytest.TempPathFactory, tokens: dict[str, str]
) -> None:
    import keyring
    from keyrings.alt.file import PlaintextKeyring

    where = tmp_path_factory.mktemp("kr")
    previous = keyring.get_keyring()
    backend = PlaintextKeyring()
    backend.file_path = str(where / "keyring.cfg")  # type: ignore[misc]
    keyring.set_keyring(backend)
    try:
        store = pr.CredentialStore(where / "c.json", create=True, secrets="keyring")
        for name, token in tokens.items():
            store.set(name, _cred(token))
        store.close()
        again = pr.CredentialStore(where / "c.json", secrets="keyring")
        assert {n: again.get(n).token.get_secret_value() for n in tokens} == tokens
        again.close()
    finally:
        keyring.set_keyring(previous)


# -- psutil -----------------------------------------------------------------------------


@pytest.fixture
def child() -> Iterator[subprocess.Popen[str]]:
    """A real process with 4 extra open files and 3 extra threads, then idle."""
    script = (
        "import sys, threading, time\n"
        "files = [open(sys.executable, 'rb') for _ in range(4)]\n"
        "stop = threading.Event()\n"
        "threads = [threading.Thread(target=stop.wait) for _ in range(3)]\n"
        "[t.start() for t in threads]\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
        "stop.set()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    try:
        yield proc
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=60)
        proc.stdout.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="compares with /proc")
def test_finding_psutil_readings_match_proc(
    child: subprocess.Popen[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Off Linux, RSS spawned `ps`, and open files and threads were not read."""
    proc_values = (
        memory_readings.read_rss(child.pid),
        memory_readings.read_open_fds(child.pid),
        memory_readings.read_threads(child.pid),
    )
    monkeypatch.setattr(
        memory_readings, "_LINUX", False
    )  # the path other platforms take
    psutil_values = (
        memory_readings.read_rss(child.pid),
        memory_readings.read_open_fds(child.pid),
        memory_readings.read_threads(child.pid),
    )
    rss_proc, fds_proc, threads_proc = proc_values
    rss_ps, fds_ps, threads_ps = psutil_values
    assert rss_proc is not None
    assert rss_ps is not None
    # The child is idle, so both readings see the same pages (to a page or two).
    assert abs(rss_proc - rss_ps) <= 64 * 1024
    assert fds_proc == fds_ps
    assert fds_proc is not None
    assert fds_proc >= 4 + 3  # stdio and 4 files
    assert threads_proc == threads_ps == 4


def test_finding_psutil_readings_of_a_missing_process_are_unknown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=60)
    for linux in (True, False):
        monkeypatch.setattr(memory_readings, "_LINUX", linux)
        assert memory_readings.read_rss(proc.pid) is None
        assert memory_readings.read_open_fds(proc.pid) is None
        assert memory_readings.read_threads(proc.pid) is None


# -- packaging ---------------------------------------------------------------------------


def test_finding_all_extra_and_sdist_contents() -> None:
    """No `all` extra; the sdist lacked examples/, so its tests failed to collect."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pytest itself needs tomli on 3.10
        import tomli as tomllib

    root = Path(__file__).parent.parent
    project = tomllib.loads((root / "pyproject.toml").read_text("utf-8"))
    extras = project["project"]["optional-dependencies"]
    others = {r for name, reqs in extras.items() if name != "all" for r in reqs}
    assert set(extras["all"]) == others
    include = project["tool"]["hatch"]["build"]["targets"]["sdist"]["include"]
    assert {"src", "tests", "docs", "examples"} <= set(include)
    urls = project["project"]["urls"]
    assert {"Homepage", "Documentation", "Source", "Issues", "Changelog"} <= set(urls)
