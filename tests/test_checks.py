"""The shared check of positive numbers that constructors use."""

from __future__ import annotations

import math

import pytest

from paios_reliability._core.checks import positive_number


@pytest.mark.parametrize(
    "value", [True, False, 0, -1, -0.5, math.nan, math.inf, "1", None]
)
def test_anything_but_a_finite_number_above_zero_is_refused_naming_owner_and_label(
    value: object,
) -> None:
    with pytest.raises(ValueError) as info:
        positive_number("Thing", "every", value, unit=" of seconds")
    assert str(info.value) == (
        f"Thing(every=...) must be a positive number of seconds, got {value!r}"
    )


@pytest.mark.parametrize(("value", "expected"), [(1, 1.0), (0.25, 0.25), (10**6, 1e6)])
def test_a_positive_number_comes_back_as_a_float(value: float, expected: float) -> None:
    result = positive_number("Thing", "every", value)
    assert result == expected
    assert type(result) is float


def test_zero_passes_only_when_allowed() -> None:
    assert positive_number("Thing", "grace", 0, allow_zero=True) == 0.0
    with pytest.raises(ValueError, match="grace"):
        positive_number("Thing", "grace", 0)
    with pytest.raises(ValueError) as info:
        positive_number("Thing", "grace", -1, unit=" of seconds", allow_zero=True)
    assert (
        str(info.value) == "Thing(grace=...) must be a number of seconds >= 0, got -1"
    )
