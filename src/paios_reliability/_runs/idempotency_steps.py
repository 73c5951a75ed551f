"""What an idempotency record is made of: keys, payloads and the pure steps on it.

The steps (claim, finish, abandon, renew) are pure functions of the stored
record and the time, run atomically by any store; the payloads keep a
result or an error in a form every process can read back.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from .._core.exceptions import PermanentError, ReliabilityError
from .._stores._renewal import Renewal

if TYPE_CHECKING:
    pass


_RUN, _HIT, _WAIT = "run", "hit", "wait"
_RENEWED, _FINISHED, _GONE = "renewed", "finished", "gone"

__all__ = ["Serializer", "idempotency_key"]


class Serializer(Protocol):
    """Turns results into text or bytes and back (``json`` and ``pickle`` fit).

    The default is JSON, which anyone can read and no one can exploit; pass
    ``serializer=pickle`` only for a store no untrusted party can write.
    """

    def dumps(self, obj: Any, /) -> str | bytes: ...

    def loads(self, data: Any, /) -> Any: ...


class _JSON:
    """The default serializer: compact JSON, no NaN."""

    @staticmethod
    def dumps(obj: Any, /) -> str:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False)

    @staticmethod
    def loads(data: Any, /) -> Any:
        return json.loads(data)


def idempotency_key(
    run_id: str, step_id: str, operation: str, inputs: Any = None
) -> str:
    """A stable key for one operation of one step of one run.

    The SHA-256 (hex) of the canonical JSON of the four parts (sorted keys,
    no whitespace, UTF-8; see :func:`~paios_reliability.stable_hash`, but
    nothing is excluded: every input counts). The same arguments give the
    same key in every process, on every host and every supported Python.

    Args:
        run_id: The workflow run.
        step_id: The step within the run.
        operation: What the step does (e.g. ``"send_email"``).
        inputs: The operation's JSON-like inputs.

    Raises:
        TypeError: ``inputs`` has no JSON form.
    """
    from .._data.signed import canonical_json

    for label, part in (
        ("run_id", run_id),
        ("step_id", step_id),
        ("operation", operation),
    ):
        if not isinstance(part, str):
            raise TypeError(f"idempotency_key() {label} must be a str, got {part!r}")
    import hashlib

    document = {
        "inputs": inputs,
        "operation": operation,
        "run": run_id,
        "step": step_id,
    }
    return hashlib.sha256(canonical_json(document, exclude=())).hexdigest()


# -- the pure steps --------------------------------------------------------------------


def claim_step(
    data: Any, now: int, holder: str, lease_ns: int
) -> tuple[Any, tuple[Any, ...]]:
    """Claim the key, or report a stored result or a live claim."""
    if data is not None and data["x"] > now:
        if data["s"] == "running":
            return data, (_WAIT, data["o"], data["x"])
        return data, (_HIT, data)
    previous = data["o"] if data is not None and data["s"] == "running" else None
    record = {"s": "running", "o": holder, "x": now + lease_ns, "a": now}
    return record, (_RUN, previous)


def finish_step(
    data: Any,
    now: int,
    holder: str,
    *,
    status: str,
    payload: Mapping[str, Any],
    ttl_ns: int,
) -> tuple[Any, bool]:
    """Store the outcome; the first finisher wins if a claim was taken over.

    Returns ``(record, first)``: ``first`` is false when another holder's
    outcome was already stored (a retried write that had landed is ours).
    """
    if data is not None and data["s"] != "running" and data["x"] > now:
        return data, data.get("o") == holder
    return {"s": status, "o": holder, "x": now + ttl_ns, "a": now, **payload}, True


def abandon_step(data: Any, holder: str) -> tuple[Any, bool]:
    """Drop this holder's claim (nothing is stored; a retry runs again)."""
    if data is not None and data["s"] == "running" and data["o"] == holder:
        return None, True
    return data, False


def renew_step(data: Any, now: int, holder: str, lease_ns: int) -> tuple[Any, str]:
    """Extend a live claim of this holder.

    Returns ``(record, outcome)``: ``"renewed"``; ``"finished"`` when the
    record is this holder's stored outcome (a renewal that raced the finish:
    nothing lost); ``"gone"`` when the claim expired or was taken over.
    """
    if data is not None and data["o"] == holder and data["x"] > now:
        if data["s"] == "running":
            return {**data, "x": now + lease_ns}, _RENEWED
        return data, _FINISHED
    return data, _GONE


# -- payloads ---------------------------------------------------------------------------


def _error_info(exc: BaseException) -> dict[str, Any]:
    cls = type(exc)
    info: dict[str, Any] = {"t": f"{cls.__module__}.{cls.__qualname__}", "m": str(exc)}
    if isinstance(exc, ReliabilityError):
        info["c"] = exc.code
    return info


def _rebuild_error(info: Mapping[str, Any], key: str) -> Exception:
    """The stored error again: its own class if already imported, else PermanentError.

    Only modules already in ``sys.modules`` are looked at: a record never
    makes this process import anything.
    """
    type_name, message = str(info.get("t", "")), str(info.get("m", ""))
    module_name, _, qualname = type_name.rpartition(".")
    target: Any = sys.modules.get(module_name)
    for part in qualname.split("."):
        target = getattr(target, part, None) if target is not None else None
    if isinstance(target, type) and issubclass(target, Exception):
        try:
            rebuilt = target(message)
        except Exception:  # noqa: BLE001 - needs other arguments: use the fallback
            rebuilt = None
        if rebuilt is not None and str(rebuilt) == message:
            return rebuilt
    code = info.get("c")
    return PermanentError(
        f"{type_name}: {message} (stored by an earlier call with this idempotency key)",
        code=code if isinstance(code, str) else None,
        context={"idempotency_key": key, "original_type": type_name},
    )


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(6)}"


class _Claim:
    """One claimed key while its function runs: renews until finished."""

    __slots__ = ("ending", "holder", "key", "renewal", "store_key")

    def __init__(self, key: str, store_key: str, holder: str) -> None:
        self.key = key
        self.store_key = store_key
        self.holder = holder
        self.renewal: Renewal | None = None
        # Set before the write that ends the claim: a renewal in flight may
        # land after it and find the claim gone, which is then no loss.
        self.ending = False
