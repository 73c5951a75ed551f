"""Optimistic concurrency: versioned records and compare-and-set on any store.

A versioned record is ``{"v": version, "d": value}`` under ``cas:<key>``. A
key that was never written has version 0. Every successful write adds one to
the version, including a write of ``None`` (a tombstone), so a version number
is never reused while the record lives and an old read can never be mistaken
for a new one (no ABA).

The pattern for users' own records::

    current = get_versioned(store, "budget:team-a")
    new = {**(current.value or {}), "spent": ...}
    result = compare_and_set(store, "budget:team-a", current.version, new)
    if not result.ok:
        ...  # someone else wrote first: re-read and try again

Values are JSON: they are copied through a JSON round trip on every store
(tuples come back as lists), so a memory store behaves like Redis.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._core.events import emit
from .._stores import check_name, check_number, resolve_store

if TYPE_CHECKING:
    from ..typing import StateStore

__all__ = [
    "CASResult",
    "Versioned",
    "acompare_and_set",
    "aget_versioned",
    "compare_and_set",
    "get_versioned",
]

_PRIMITIVE = "cas"
#: How long a versioned record lives after its last write, by default (30 days).
DEFAULT_TTL = 30 * 86_400.0


@dataclass(frozen=True, slots=True)
class Versioned:
    """A value and the version it was read at (0 and ``None``: never written).

    Attributes:
        value: The stored JSON value (``None`` if absent or a tombstone).
        version: Pass it to :func:`compare_and_set` as ``expected_version``.
    """

    value: Any
    version: int


@dataclass(frozen=True, slots=True)
class CASResult:
    """What :func:`compare_and_set` did.

    Attributes:
        ok: Whether ``new_value`` was written (the version matched).
        version: The version stored now: the new one when ``ok``, otherwise
            the one that beat you (re-read and retry with it).
        value: The value stored now (yours when ``ok``, the winner's if not).
    """

    ok: bool
    version: int
    value: Any


def _copy(value: Any) -> Any:
    """A JSON round trip: validates the value and detaches it from the caller."""
    try:
        text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"compare_and_set() values must be JSON (dicts, lists, str, numbers, "
            f"bools, None): {exc}"
        ) from exc
    return json.loads(text)


def store_key(key: str) -> str:
    """Where a versioned record lives in the store."""
    return f"{_PRIMITIVE}:{check_name('compare_and_set key:', key)}"


def cas_step(data: Any, expected: int, new_value: Any) -> tuple[Any, CASResult]:
    """The pure compare-and-set step (runs inside ``store.update``)."""
    version = 0 if data is None else int(data["v"])
    current = None if data is None else data.get("d")
    if version != expected:
        return data, CASResult(False, version, current)
    return {"v": version + 1, "d": new_value}, CASResult(True, version + 1, new_value)


def _check(expected_version: object, ttl: object) -> tuple[int, float]:
    if (
        isinstance(expected_version, bool)
        or not isinstance(expected_version, int)
        or expected_version < 0
    ):
        raise ValueError(
            f"expected_version must be an int >= 0 (0: the record must not exist), "
            f"got {expected_version!r}"
        )
    return expected_version, check_number("compare_and_set", "ttl", ttl)


def _store(store: StateStore | None, function: str) -> StateStore:
    """``store`` checked: a compare-and-set on a private throwaway store always wins."""
    if store is None:
        raise TypeError(
            f"{function}() needs a store shared by every writer, got None "
            "(a fresh private MemoryStore per call would let every writer win)"
        )
    return resolve_store(store)


def _report(key: str, expected: int, result: CASResult) -> CASResult:
    if result.ok:
        emit(_PRIMITIVE, "written", level="debug", subject=key, version=result.version)
    else:
        emit(
            _PRIMITIVE,
            "conflict",
            level="debug",
            subject=key,
            expected=expected,
            version=result.version,
        )
    return CASResult(result.ok, result.version, _copy(result.value))


def compare_and_set(
    store: StateStore,
    key: str,
    expected_version: int,
    new_value: Any,
    *,
    ttl: float = DEFAULT_TTL,
) -> CASResult:
    """Write ``new_value`` under ``key`` only if its version is still ``expected_version``.

    Atomic on every store (it is one ``store.update``): of several writers
    that read the same version, exactly one succeeds; the others get
    ``ok=False`` with the winner's version and value, and nothing changes.

    Args:
        store: Any :class:`~paios_reliability.typing.StateStore`.
        key: The record's name (stored as ``cas:<key>``).
        expected_version: The version you read (:func:`get_versioned`); 0
            means "only if the record does not exist yet".
        new_value: JSON data; ``None`` writes a tombstone (the version still
            counts up).
        ttl: Seconds the record lives after this write (default 30 days).

    Returns:
        A :class:`CASResult`.

    Raises:
        TypeError: ``new_value`` is not JSON, or ``store`` is ``None`` or
            not a store.
        ValueError: A negative or non-int ``expected_version``, bad ``ttl``.
        StoreUnavailableError: The store cannot be reached.
    """
    expected, seconds = _check(expected_version, ttl)
    value = _copy(new_value)
    name = store_key(key)
    result = _store(store, "compare_and_set").update(
        name, lambda data: cas_step(data, expected, value), ttl=seconds
    )
    return _report(key, expected, result)


async def acompare_and_set(
    store: StateStore,
    key: str,
    expected_version: int,
    new_value: Any,
    *,
    ttl: float = DEFAULT_TTL,
) -> CASResult:
    """:func:`compare_and_set` without blocking the event loop."""
    expected, seconds = _check(expected_version, ttl)
    value = _copy(new_value)
    name = store_key(key)
    result = await _store(store, "acompare_and_set").aupdate(
        name, lambda data: cas_step(data, expected, value), ttl=seconds
    )
    return _report(key, expected, result)


def _versioned(data: Any) -> Versioned:
    if data is None:
        return Versioned(None, 0)
    return Versioned(_copy(data.get("d")), int(data["v"]))


def get_versioned(store: StateStore, key: str) -> Versioned:
    """Read ``key``'s value and version (``Versioned(None, 0)`` if never written).

    Raises:
        TypeError: ``store`` is ``None`` or not a store.
        StoreUnavailableError: The store cannot be reached.
    """
    return _versioned(_store(store, "get_versioned").get(store_key(key)))


async def aget_versioned(store: StateStore, key: str) -> Versioned:
    """:func:`get_versioned` without blocking the event loop."""
    return _versioned(await _store(store, "aget_versioned").aget(store_key(key)))
