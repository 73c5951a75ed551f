"""Checks of the arguments users pass to constructors, with one wording."""

from __future__ import annotations

__all__ = ["check_count", "check_name", "check_optional_seconds", "check_seconds"]


def check_name(owner: str, name: object) -> str:
    """``name`` if it is a non-empty string, else ``ValueError``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{owner} name must be a non-empty string, got {name!r}")
    return name


def check_seconds(
    owner: str, label: str, value: object, *, zero: bool = False
) -> float:
    """A finite number of seconds > 0 (or >= 0 with ``zero``), else ``ValueError``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (value >= 0 if zero else value > 0)
        or value == float("inf")
    ):
        bound = ">= 0" if zero else "> 0"
        raise ValueError(
            f"{owner}({label}=...) must be a finite number {bound}, got {value!r}"
        )
    return float(value)


def check_optional_seconds(
    owner: str, label: str, value: object, *, zero: bool = False
) -> float | None:
    """Like :func:`check_seconds`, but ``None`` passes."""
    return None if value is None else check_seconds(owner, label, value, zero=zero)


def check_count(owner: str, label: str, value: object, *, minimum: int = 1) -> int:
    """An int >= ``minimum``, else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(
            f"{owner}({label}=...) must be an int >= {minimum}, got {value!r}"
        )
    return value
