"""The run-time names of :mod:`typing` that a hook's modules need, without typing.

Importing :mod:`typing` costs a short-lived hook process ~3 ms, a fifth of
its start-up budget (``benchmarks/hook_startup.py``), for names that do
nothing at run time. The modules a hook loads (the core, the database, atomic
files, ``ConfigFile``, ``hook``) take these from here and keep every other
typing name under ``if TYPE_CHECKING:``; type checkers see typing's own.

At run time ``overload`` returns the stub, which the implementation then
replaces, and ``cast`` returns its value. For a generic class, see
``ConfigFile``: a ``Generic`` base for type checkers, ``__class_getitem__``
at run time.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: that import is what this module avoids
if TYPE_CHECKING:
    from typing import cast, overload
else:

    def overload(fn):
        return fn

    def cast(_type, value):
        return value


__all__ = ["TYPE_CHECKING", "cast", "overload"]
