"""The three arguments of ``__exit__`` and ``__aexit__``, named once.

For type checkers only: import these under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

from types import TracebackType
from typing import TypeAlias

ExcType: TypeAlias = "type[BaseException] | None"
ExcValue: TypeAlias = "BaseException | None"
Traceback: TypeAlias = "TracebackType | None"

__all__ = ["ExcType", "ExcValue", "Traceback"]
