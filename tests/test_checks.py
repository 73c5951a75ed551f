"""The shared checks of numbers that constructors use."""

from __future__ import annotations

import math

import pytest

from paios_reliability._core.checks import check_number, check_optional_number


@pytest.mark.parametrize(
    "value", [True, False, 0, -1, -0.5, math.nan, math.inf, "1", None]
)
def test_anything_but_a_finite_number_above_zero_is_refused_naming_owner_and_label(
    value: object,
) -> None:
    with pytest.raises(ValueError) as info:
        check_number("Thing", "every", value)
    assert str(info.value) == (
        f"Thing(every=...) must be a finite number > 0, got {value!r}"
    )


@pytest.mark.parametrize(("value", "expected"), [(1, 1.0), (0.25, 0.25), (10**6, 1e6)])
def test_a_positive_number_comes_back_as_a_float(value: float, expected: float) -> None:
    result = check_number("Thing", "every", value)
    assert result == expected
    assert type(result) is float


def test_zero_passes_only_when_allowed() -> None:
    assert check_number("Thing", "grace", 0, zero=True) == 0.0
    with pytest.raises(ValueError, match="grace"):
        check_number("Thing", "grace", 0)
    with pytest.raises(ValueError) as info:
        check_number("Thing", "grace", -1, zero=True)
    assert str(info.value) == "Thing(grace=...) must be a finite number >= 0, got -1"
    with pytest.raises(ValueError, match="grace"):
        check_number("Thing", "grace", math.nan, zero=True)


def test_none_passes_only_the_optional_check() -> None:
    assert check_optional_number("Thing", "delay", None) is None
    assert check_optional_number("Thing", "delay", 0, zero=True) == 0.0
    with pytest.raises(ValueError, match="delay"):
        check_number("Thing", "delay", None)
