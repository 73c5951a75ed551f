"""Checks of the numbers users pass to constructors, with one wording."""

from __future__ import annotations

import math

__all__ = ["positive_number"]


def positive_number(
    owner: str, label: str, value: object, *, unit: str = "", allow_zero: bool = False
) -> float:
    """``value`` as a float, if it is a finite number above 0 (not a bool).

    Args:
        owner: Who takes the value, for the error, e.g. ``"Heartbeat"``.
        label: The argument's name, for the error, e.g. ``"every"``.
        value: What the user passed.
        unit: Added to the error after "number", e.g. ``" of seconds"``.
        allow_zero: Accept 0 as well.

    Raises:
        ValueError: ``"owner(label=...) must be a positive number, got value"``
            (``"... must be a number >= 0, ..."`` with ``allow_zero``).
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not allow_zero)
    ):
        wanted = f"a number{unit} >= 0" if allow_zero else f"a positive number{unit}"
        raise ValueError(f"{owner}({label}=...) must be {wanted}, got {value!r}")
    return float(value)
