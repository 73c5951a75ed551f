"""Signed files and stable content hashes.

:func:`write_signed` stores a JSON document with an HMAC-SHA256 over its exact
bytes, written atomically; :func:`read_signed` checks the HMAC (in constant
time) *before* parsing anything and raises :class:`IntegrityError` for a
tampered, truncated or foreign file.

:func:`stable_hash` hashes canonical JSON (sorted keys, no whitespace, UTF-8),
ignoring volatile keys (durations, timestamps, ids) at any depth, so two runs
that did the same thing hash the same, in any process and on any Python.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import decimal
import enum
import fnmatch
import functools
import hashlib
import hmac
import json
import math
import os
import re
import uuid
from collections.abc import Collection, Mapping
from pathlib import PurePath
from typing import Any

from .._core.events import emit
from .._core.exceptions import IntegrityError
from .atomic import (
    FileTooLargeError,
    NotARegularFileError,
    atomic_write,
    read_regular_file,
)

__all__ = [
    "VOLATILE_KEYS",
    "canonical_json",
    "read_signed",
    "stable_hash",
    "write_signed",
]

#: Keys :func:`stable_hash` ignores by default, at any depth (case-insensitive
#: shell patterns): durations, timestamps and generated identifiers.
VOLATILE_KEYS: frozenset[str] = frozenset(
    {
        # durations
        "duration",
        "duration_*",
        "*_duration",
        "elapsed",
        "elapsed_*",
        "latency",
        "latency_*",
        "*_ms",
        "*_ns",
        "*_seconds",
        # timestamps
        "time",
        "*_time",
        "timestamp",
        "*_timestamp",
        "ts",
        "date",
        "datetime",
        "*_at",
        # generated identifiers
        "id",
        "*_id",
        "uuid",
        "nonce",
        "pid",
    }
)

_FORMAT = "paios-signed/1"
_ALG = "HMAC-SHA256"
_MAX_HEADER = 4096
#: Default cap on the size of a file :func:`read_signed` reads.
MAX_SIGNED_BYTES = 64 * 1024 * 1024
_MAX_DEPTH = 200


@functools.lru_cache(maxsize=64)
def _matcher(patterns: frozenset[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile(
        "|".join(fnmatch.translate(p) for p in sorted(patterns)), re.IGNORECASE
    )


def _key_text(key: object) -> str:
    # As json.dumps would write the key, so a JSON round trip hashes the same.
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, (bool, int, float)):
        return json.dumps(key)
    raise TypeError(f"mapping keys must be str, int, float, bool or None, got {key!r}")


def _normalise(value: Any, skip: re.Pattern[str] | None, depth: int = 0) -> Any:
    """A JSON-ready copy of ``value`` with a single canonical form per content."""
    if depth > _MAX_DEPTH:
        raise ValueError(f"value nested deeper than {_MAX_DEPTH} levels")
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return (
            "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        )
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            text = _key_text(key)
            if skip is not None and skip.fullmatch(text):
                continue
            if text in out:
                raise TypeError(f"keys collide once written as JSON strings: {text!r}")
            out[text] = _normalise(item, skip, depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [_normalise(v, skip, depth + 1) for v in value]
    if isinstance(value, (set, frozenset)):
        items = [_normalise(v, skip, depth + 1) for v in value]
        return sorted(items, key=_dumps)
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, enum.Enum):
        return _normalise(value.value, skip, depth + 1)
    if isinstance(value, (decimal.Decimal, uuid.UUID, PurePath)):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _normalise(
            {f.name: getattr(value, f.name) for f in dataclasses.fields(value)},
            skip,
            depth + 1,
        )
    dump = getattr(value, "model_dump", None)  # pydantic v2, without importing it
    if callable(dump) and not isinstance(value, type):
        return _normalise(dump(mode="json"), skip, depth + 1)
    if hasattr(value, "get_secret_value"):
        raise TypeError("refusing to serialise a secret (SecretStr) into JSON")
    raise TypeError(f"cannot represent {type(value).__name__} as canonical JSON")


def _dumps(value: Any) -> str:
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )


def canonical_json(obj: Any, *, exclude: Collection[str] = ()) -> bytes:
    """The canonical UTF-8 JSON bytes of ``obj`` (sorted keys, no spaces).

    Tuples become lists, sets sorted lists, datetimes ISO strings, bytes
    base64, dataclasses and pydantic models dicts, non-finite floats the
    strings ``"NaN"``/``"Infinity"``/``"-Infinity"``. Keys matching an
    ``exclude`` pattern are dropped at any depth.

    Raises:
        TypeError: For a value with no JSON form (or a secret).
        ValueError: For a value nested more than 200 levels deep.
    """
    skip = _matcher(frozenset(exclude))
    try:
        text = _dumps(_normalise(obj, skip))
    except RecursionError as exc:  # pragma: no cover - caught by the depth limit
        raise ValueError("value nested too deeply for canonical JSON") from exc
    return text.encode("utf-8", "surrogatepass")


def stable_hash(obj: Any, *, exclude: Collection[str] = VOLATILE_KEYS) -> str:
    """SHA-256 (hex) of the canonical JSON of ``obj``, ignoring volatile keys.

    Key order, tuple-vs-list and a JSON round trip do not change the hash;
    any change of a non-excluded value does. The result is the same in every
    process and on every supported Python version.

    Args:
        obj: JSON-like data (see :func:`canonical_json` for other types).
        exclude: Case-insensitive shell patterns of keys to ignore at any
            depth. Default :data:`VOLATILE_KEYS`; pass ``()`` to hash
            everything, or ``VOLATILE_KEYS | {"mine"}`` to extend it.
    """
    return hashlib.sha256(canonical_json(obj, exclude=exclude)).hexdigest()


def _key_bytes(key: bytes | str) -> bytes:
    raw = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    if not raw:
        raise ValueError("the signing key must not be empty")
    return raw


def write_signed(
    path: str | os.PathLike[str],
    obj: Any,
    key: bytes | str,
    *,
    mode: int | None = None,
) -> None:
    """Write ``obj`` as JSON with an HMAC-SHA256 signature, atomically.

    The file is a one-line JSON header (format, algorithm, signature) and the
    canonical JSON of ``obj``; the signature covers exactly those payload
    bytes. See :func:`atomic_write` for the durability guarantee.

    Args:
        path: The file to write.
        obj: JSON-like data (see :func:`canonical_json`).
        key: The secret key (bytes, or text encoded as UTF-8); not empty.
        mode: Permission bits (default: kept from the existing file).
    """
    payload = canonical_json(obj)
    signature = hmac.new(_key_bytes(key), payload, hashlib.sha256).hexdigest()
    header = json.dumps(
        {"format": _FORMAT, "alg": _ALG, "signature": signature},
        sort_keys=True,
        separators=(",", ":"),
    ).encode("ascii")
    atomic_write(path, header + b"\n" + payload + b"\n", mode=mode)
    emit("signed_file", "written", level="debug", subject=os.fspath(path))


def read_signed(
    path: str | os.PathLike[str],
    key: bytes | str,
    *,
    max_bytes: int = MAX_SIGNED_BYTES,
) -> Any:
    """Read a file written by :func:`write_signed`, verifying its signature.

    The HMAC is checked in constant time before the payload is parsed. Only
    a regular file is read (a FIFO or device at the path is refused without
    blocking), and at most ``max_bytes`` of it.

    Args:
        path: The signed file.
        key: The secret key it was signed with.
        max_bytes: The largest file read (default 64 MiB).

    Returns:
        The stored JSON value (tuples come back as lists, datetimes as
        strings: it is JSON).

    Raises:
        IntegrityError: The file is tampered, truncated, signed with another
            key, not a signed file, not a regular file (a FIFO, socket or
            device) or larger than ``max_bytes``.
        FileNotFoundError: The file does not exist.
        OSError: Another failure to read it (``IsADirectoryError``,
            ``PermissionError``...).
    """
    name = os.fspath(path)
    secret = _key_bytes(key)

    def fail(why: str) -> IntegrityError:
        emit("signed_file", "rejected", level="error", subject=name, reason=why)
        return IntegrityError(
            f"signed file {name} failed verification: {why}",
            context={"path": name},
        )

    try:
        data = read_regular_file(name, max_bytes=max_bytes)
    except (NotARegularFileError, FileTooLargeError) as exc:
        raise fail(str(exc.strerror)) from exc

    head, sep, rest = data.partition(b"\n")
    if not sep or len(head) > _MAX_HEADER:
        raise fail("no signature header (truncated or not a signed file)")
    if not rest.endswith(b"\n"):
        raise fail("truncated (no final newline)")
    payload = rest[:-1]
    try:
        header = json.loads(head.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        header = None
    if not isinstance(header, dict) or header.get("format") != _FORMAT:
        raise fail("not a paios signed file (bad header)")
    if header.get("alg") != _ALG:
        raise fail(f"unsupported algorithm {str(header.get('alg'))[:40]!r}")
    claimed = header.get("signature")
    if not isinstance(claimed, str):
        raise fail("bad signature field")
    expected = hmac.new(secret, payload, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(
        expected.encode("ascii"), claimed.encode("utf-8", "replace")
    ):
        raise fail("signature mismatch (tampered, truncated or another key)")
    try:
        return json.loads(payload.decode("utf-8", "surrogatepass"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise fail("signed payload is not JSON") from None
