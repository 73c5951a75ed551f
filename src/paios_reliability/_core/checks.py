"""Checks of the arguments users pass to constructors, with one wording."""

from __future__ import annotations

__all__ = ["check_count", "check_name", "check_number", "check_optional_number"]

_INFINITY = float("inf")


def check_name(owner: str, name: object) -> str:
    """``name`` if it is a non-empty string, else ``ValueError``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{owner} name must be a non-empty string, got {name!r}")
    return name


def check_number(owner: str, label: str, value: object, *, zero: bool = False) -> float:
    """A finite number > 0 (or >= 0 with ``zero``) as a float, else ``ValueError``.

    For seconds, rates, ratios and sizes alike; a bool is not a number here.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (value >= 0 if zero else value > 0)
        or value == _INFINITY
    ):
        bound = ">= 0" if zero else "> 0"
        raise ValueError(
            f"{owner}({label}=...) must be a finite number {bound}, got {value!r}"
        )
    return float(value)


def check_optional_number(
    owner: str, label: str, value: object, *, zero: bool = False
) -> float | None:
    """Like :func:`check_number`, but ``None`` passes."""
    return None if value is None else check_number(owner, label, value, zero=zero)


def check_count(owner: str, label: str, value: object, *, minimum: int = 1) -> int:
    """An int >= ``minimum``, else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(
            f"{owner}({label}=...) must be an int >= {minimum}, got {value!r}"
        )
    return value
