"""The process's time budget: set by ``@hook``, read by every lock wait.

A hook process has a few seconds in all. A lock wait deep inside the library
(a config file's lock, a credential store's, an SQLite write lock) that
defaulted to 30 s would outlive it; each wait asks :func:`cap_wait` instead,
which shortens it to what is left of the budget. Without a budget (any
process that is not a hook) it changes nothing.
"""

from __future__ import annotations

import time

__all__ = ["cap_wait", "remaining_budget", "set_budget_deadline"]

# Real monotonic seconds: the budget is a promise about wall time to the
# process that started us, which a fake clock cannot move.
_deadline: float | None = None


def set_budget_deadline(deadline: float | None) -> float | None:
    """Set (or clear, with ``None``) the deadline; returns the previous one."""
    global _deadline
    previous, _deadline = _deadline, deadline
    return previous


def remaining_budget() -> float | None:
    """Seconds left of the budget (never negative), or ``None`` if there is none."""
    deadline = _deadline
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())


def cap_wait(timeout: float) -> float:
    """``timeout`` shortened to the remaining budget, if there is one."""
    left = remaining_budget()
    return timeout if left is None else min(timeout, left)
