"""write_signed / read_signed (HMAC-SHA256) and stable_hash."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import decimal
import enum
import hmac
import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, SecretStr

from hostile_files import HOSTILE_KINDS, finishes, hostile
from paios_reliability import IntegrityError, read_signed, stable_hash, write_signed
from paios_reliability._data.signed import VOLATILE_KEYS, canonical_json
from paios_reliability.testing import capture_events

KEY = b"k" * 32
DOC = {"run": "r1", "steps": [{"name": "fetch", "ok": True}, {"name": "n", "v": 1.5}]}
# Pinned: the canonical form (and so every stored hash) must never drift
# between releases, processes or Python versions.
GOLDEN = {"b": [1, 2.5, None, True, "é"], "a": {"z": "x", "y": []}}
GOLDEN_JSON = b'{"a":{"y":[],"z":"x"},"b":[1,2.5,null,true,"\xc3\xa9"]}'
GOLDEN_HASH = "b319daec5bae9574dce393b0c29c0b377516b0cedd6a80c04c60994d98c7ae70"


# -- signed files ---------------------------------------------------------------------


def test_round_trip_and_layout(tmp_path: Path) -> None:
    path = tmp_path / "state.signed"
    write_signed(path, DOC, KEY)
    assert read_signed(path, KEY) == DOC
    header, payload, end = path.read_bytes().split(b"\n")
    assert end == b""
    assert payload == canonical_json(DOC)
    meta = json.loads(header)
    assert meta["format"] == "paios-signed/1"
    assert meta["alg"] == "HMAC-SHA256"
    assert meta["signature"] == hmac.new(KEY, payload, "sha256").hexdigest()
    write_signed(path, {"k": "v"}, "text key")  # str keys are UTF-8
    assert read_signed(path, "text key") == {"k": "v"}
    assert [p.name for p in tmp_path.iterdir()] == ["state.signed"]


def test_mode_is_kept_or_set(tmp_path: Path) -> None:
    path = tmp_path / "s"
    write_signed(path, 1, KEY, mode=0o600)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    write_signed(path, 2, KEY)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def test_tampering_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "s"
    write_signed(path, DOC, KEY)
    good = path.read_bytes()
    header_end = good.index(b"\n")
    for index in [*range(header_end + 1, len(good) - 1, 7), 2, header_end - 3]:
        path.write_bytes(_flip(good, index))
        with pytest.raises(IntegrityError) as info:
            read_signed(path, KEY)
        assert info.value.code == "INTEGRITY_ERROR"
        assert str(path) in str(info.value)
    path.write_bytes(good)
    with capture_events() as events, pytest.raises(IntegrityError, match="mismatch"):
        read_signed(path, b"another key")
    assert events.of("signed_file.rejected")[0].level == "error"


def test_every_truncation_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "s"
    write_signed(path, {"a": [1, 2, 3]}, KEY)
    good = path.read_bytes()
    for length in range(len(good)):
        path.write_bytes(good[:length])
        with pytest.raises(IntegrityError):
            read_signed(path, KEY)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"", "no signature header"),
        (b'{"format":"other/1"}\n{}\n', "bad header"),
        (
            b'{"alg":"MD5","format":"paios-signed/1","signature":"00"}\n{}\n',
            "unsupported",
        ),
        (
            b'{"alg":"HMAC-SHA256","format":"paios-signed/1","signature":5}\n{}\n',
            "bad signature",
        ),
        (b"\xff" * 10000, "no signature header"),
    ],
    ids=["empty", "foreign", "alg", "sigtype", "binary"],
)
def test_not_signed_files(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "s"
    path.write_bytes(content)
    with pytest.raises(IntegrityError, match=needle):
        read_signed(path, KEY)


def test_compare_is_constant_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    used: list[bool] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        used.append(True)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    write_signed(tmp_path / "s", 1, KEY)
    assert read_signed(tmp_path / "s", KEY) == 1
    assert used == [True]


def test_missing_file_and_bad_key(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_signed(tmp_path / "none", KEY)
    with pytest.raises(ValueError, match="empty"):
        write_signed(tmp_path / "s", 1, b"")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("kind", sorted(set(HOSTILE_KINDS) - {"directory"}))
def test_a_special_file_is_refused_without_blocking(tmp_path: Path, kind: str) -> None:
    with hostile(kind, tmp_path / "state.signed") as path:
        before = os.lstat(path)
        with capture_events() as events, pytest.raises(IntegrityError) as info:
            finishes(lambda: read_signed(path, KEY))
        assert str(path) in str(info.value)
        assert HOSTILE_KINDS[kind] in str(info.value)
        assert len(events.of("signed_file.rejected")) == 1
        with pytest.raises(FileExistsError, match=HOSTILE_KINDS[kind]):
            finishes(lambda: write_signed(path, DOC, KEY))
        after = os.lstat(path)
        assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)


def test_a_directory_and_an_oversized_file(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError):
        read_signed(tmp_path, KEY)
    path = tmp_path / "big.signed"
    write_signed(path, {"blob": "x" * 5000}, KEY)
    with pytest.raises(IntegrityError, match="limit"):
        read_signed(path, KEY, max_bytes=4096)
    assert read_signed(path, KEY, max_bytes=path.stat().st_size) == {"blob": "x" * 5000}
    with path.open("r+b") as fh:
        fh.truncate(64 * 1024 * 1024 + 1)  # the default limit, plus one (sparse)
    with pytest.raises(IntegrityError, match="67108865 bytes"):
        read_signed(path, KEY)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(raw=st.binary(max_size=400))
def test_any_bytes_give_integrity_error(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "fuzz"
    path.write_bytes(raw)
    with pytest.raises(IntegrityError):
        read_signed(path, KEY)
    assert path.read_bytes() == raw


# -- stable_hash --------------------------------------------------------------------------


def test_golden_canonical_form() -> None:
    assert canonical_json(GOLDEN) == GOLDEN_JSON
    assert stable_hash(GOLDEN) == GOLDEN_HASH


@pytest.mark.parametrize(
    "python",
    [
        sys.executable,
        *(
            p
            for p in (
                "/root/.pyenv/versions/3.10.13/bin/python",
                "/root/.pyenv/versions/3.12.1/bin/python",
                "/root/.pyenv/versions/3.13.0/bin/python",
            )
            if os.path.exists(p)
        ),
    ],
)
def test_hash_is_the_same_in_other_processes(python: str) -> None:
    code = (
        "import json, sys; from paios_reliability._data.signed import stable_hash; "
        "print(stable_hash(json.loads(sys.argv[1])))"
    )
    src = str(Path(__file__).parent.parent / "src")
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": src}
    out = subprocess.run(
        [python, "-c", code, json.dumps(GOLDEN)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=120,
    )
    assert out.stdout.strip() == GOLDEN_HASH


def test_volatile_keys_are_ignored_at_any_depth() -> None:
    a = {
        "result": "ok",
        "duration_ms": 12,
        "steps": [{"tool": "x", "started_at": "2024-01-01", "elapsed": 1.0, "id": 7}],
        "meta": {"trace_id": "abc", "Timestamp": 1, "nested": {"latency": 3}},
    }
    b = {
        "result": "ok",
        "duration_ms": 99,
        "steps": [{"tool": "x", "started_at": "2025-05-05", "elapsed": 9.0, "id": 8}],
        "meta": {"trace_id": "zzz", "Timestamp": 2, "nested": {"latency": 4}},
    }
    assert stable_hash(a) == stable_hash(b)
    assert stable_hash(a, exclude=()) != stable_hash(b, exclude=())
    b["steps"][0]["tool"] = "y"  # type: ignore[index]
    assert stable_hash(a) != stable_hash(b)


def test_exclude_replaces_or_extends_the_default() -> None:
    a = {"x": 1, "noise": 1, "duration": 1}
    b = {"x": 1, "noise": 2, "duration": 2}
    assert stable_hash(a) != stable_hash(b)
    assert stable_hash(a, exclude=VOLATILE_KEYS | {"noise"}) == stable_hash(
        b, exclude=VOLATILE_KEYS | {"noise"}
    )
    assert stable_hash(a, exclude={"noise"}) != stable_hash(b, exclude={"noise"})
    assert stable_hash(a, exclude={"no*", "dur*"}) == stable_hash(
        b, exclude={"no*", "dur*"}
    )


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    when: dt.datetime


class Model(BaseModel):
    name: str
    tags: set[str]


def test_other_types_have_one_canonical_form() -> None:
    when = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    value: dict[Any, Any] = {
        "tuple": (1, 2),
        "set": {3, 1, 2},
        "bytes": b"\x00\x01",
        "when": when,
        "day": dt.date(2024, 1, 2),
        "delta": dt.timedelta(seconds=90),
        "enum": Color.RED,
        "dec": decimal.Decimal("1.10"),
        "uuid": uuid.UUID(int=1),
        "path": PurePosixPath("/a/b"),
        "point": Point(1, when),
        "model": Model(name="m", tags={"b", "a"}),
        "nan": float("nan"),
        "inf": float("-inf"),
        1: "int key",
        None: "none key",
    }
    doc = json.loads(canonical_json(value, exclude=()))
    assert doc["tuple"] == [1, 2]
    assert doc["set"] == [1, 2, 3]
    assert doc["bytes"] == "AAE="
    assert doc["when"] == "2024-01-02T03:04:05+00:00"
    assert doc["delta"] == 90.0
    assert doc["enum"] == "red"
    assert doc["dec"] == "1.10"
    assert doc["path"] == "/a/b"
    assert doc["point"] == {"x": 1, "when": "2024-01-02T03:04:05+00:00"}
    assert doc["model"]["tags"] in (["a", "b"], ["b", "a"])
    assert doc["nan"] == "NaN"
    assert doc["inf"] == "-Infinity"
    assert doc["1"] == "int key"
    assert doc["null"] == "none key"
    assert stable_hash({"t": (1, 2)}) == stable_hash({"t": [1, 2]})


def test_unrepresentable_values_are_refused() -> None:
    with pytest.raises(TypeError, match="secret"):
        stable_hash({"token": SecretStr("s")}, exclude=())
    with pytest.raises(TypeError, match="cannot represent"):
        stable_hash({"x": object()})
    with pytest.raises(TypeError, match="collide"):
        stable_hash({1: "a", "1": "b"})
    with pytest.raises(TypeError, match="keys must be"):
        stable_hash({(1, 2): "a"})
    deep: Any = []
    for _ in range(500):
        deep = [deep]
    with pytest.raises(ValueError, match="nested deeper"):
        stable_hash(deep)


json_data = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


def _reversed_dicts(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reversed_dicts(v) for k, v in reversed(list(value.items()))}
    if isinstance(value, list):
        return tuple(_reversed_dicts(v) for v in value)
    return value


def _add_noise(value: Any, noise: int) -> Any:
    if isinstance(value, dict):
        out = {k: _add_noise(v, noise) for k, v in value.items()}
        out["duration_ms"] = noise
        out["request_id"] = f"req-{noise}"
        return out
    if isinstance(value, list):
        return [_add_noise(v, noise) for v in value]
    return value


@settings(max_examples=200, deadline=None)
@given(value=json_data, noise=st.integers())
def test_stable_hash_invariants(value: Any, noise: int) -> None:
    base = stable_hash(value, exclude=())
    assert stable_hash(_reversed_dicts(value), exclude=()) == base  # order, tuples
    assert stable_hash(json.loads(json.dumps(value)), exclude=()) == base  # round trip
    assert stable_hash(_add_noise(value, noise)) == stable_hash(value)
    assert stable_hash({"wrapped": value}, exclude=()) != base
    assert len(base) == 64


@settings(max_examples=100, deadline=None)
@given(a=json_data, b=json_data)
def test_different_content_hashes_differently(a: Any, b: Any) -> None:
    if canonical_json(a) != canonical_json(b):
        assert stable_hash(a, exclude=()) != stable_hash(b, exclude=())
    else:
        assert stable_hash(a, exclude=()) == stable_hash(b, exclude=())


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(value=json_data)
def test_signed_round_trip_of_any_json(tmp_path: Path, value: Any) -> None:
    path = tmp_path / "any"
    write_signed(path, value, KEY)
    assert read_signed(path, KEY) == json.loads(json.dumps(value))


@pytest.mark.parametrize("driver", ["sync", "async"])
async def test_signed_from_sync_and_async_code(tmp_path: Path, driver: str) -> None:
    path = tmp_path / "s"
    if driver == "sync":
        write_signed(path, DOC, KEY)
        got = read_signed(path, KEY)
    else:
        await asyncio.to_thread(write_signed, path, DOC, KEY)
        got = await asyncio.to_thread(read_signed, path, KEY)
    assert got == DOC
