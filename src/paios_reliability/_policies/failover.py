"""Failover chains: ``failover([primary, secondary, ...])``.

Providers fail over: when one LLM provider, mirror or region is down, the
next one answers. Each entry sits behind its own circuit breaker, so an entry
that keeps failing is skipped at no cost (no call, no timeout) until its
breaker lets a probe through. Only the failures ``on`` accepts fail over (by
default the transient ones): a bad request is the caller's bug, and sending
it to every provider would only repeat it. When every entry failed or was
skipped, one :class:`FailoverExhaustedError` carries every entry's failure.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._core.dispatch import callable_name, is_async_callable
from .._core.effects import arun_effects, run_effects
from .._core.events import emit
from .._core.exceptions import CircuitOpenError, FailoverExhaustedError
from .._core.taxonomy import is_retryable

if TYPE_CHECKING:
    from ..typing import StateStore
    from .breaker import CircuitBreaker
    from .retry_policy import RetryOn

__all__ = ["Failover", "failover"]


def _describe(exc: BaseException) -> str:
    from .retry_run import _describe as describe

    return describe(exc)


class Failover:
    """What :func:`failover` returns: call it like the entries (see there)."""

    __slots__ = ("_calls", "_predicate", "breakers", "is_async", "labels", "name")

    def __init__(
        self,
        entries: Sequence[Callable[..., Any] | tuple[str, Callable[..., Any]]],
        *,
        on: RetryOn,
        name: str,
        breaker: Mapping[str, Any] | bool,
        store: StateStore | None,
    ) -> None:
        from .breaker import CircuitBreaker
        from .retry_policy import _predicate

        given: object = entries
        if (
            isinstance(given, (str, bytes))
            or not isinstance(given, Sequence)
            or not given
        ):
            raise ValueError(
                f"failover(...) takes a non-empty list of callables, got {entries!r}"
            )
        label_of_chain: object = name
        if not isinstance(label_of_chain, str) or not label_of_chain:
            raise ValueError(
                f"failover(name=...) must be a non-empty string, got {name!r}"
            )
        labels: list[str] = []
        fns: list[Callable[..., Any]] = []
        for i, entry in enumerate(entries):
            item: object = entry
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
                label, fn = item
            else:
                label, fn = "", item
            if not callable(fn):
                raise TypeError(
                    f"failover entry {i} must be a callable or a (name, callable) "
                    f"pair, got {entry!r}"
                )
            labels.append(label or callable_name(fn))
            fns.append(fn)
        if len(set(labels)) != len(labels):
            raise ValueError(
                f"failover entries need distinct names, got {labels!r} "
                "(pass (name, callable) pairs)"
            )
        kinds = {is_async_callable(fn) for fn in fns}
        if len(kinds) != 1:
            raise TypeError(
                "failover entries must be all sync or all async (coroutine) functions"
            )
        self.is_async = kinds.pop()
        self.name = name
        self.labels = tuple(labels)
        predicate = _predicate(on)
        self._predicate: Callable[[Exception], bool] = (
            is_retryable if predicate is None else predicate
        )
        options: dict[str, Any] = {}
        if breaker is not False and breaker is not True:
            if not isinstance(breaker, Mapping):
                raise TypeError(
                    "failover(breaker=...) takes True, False or a dict of "
                    f"CircuitBreaker options, got {breaker!r}"
                )
            options = dict(breaker)
        if store is not None:
            options["store"] = store
        breakers: list[CircuitBreaker | None] = [
            None
            if breaker is False
            else CircuitBreaker(f"failover:{name}:{label}", **options)
            for label in labels
        ]
        self.breakers = tuple(breakers)
        self._calls = tuple(
            fn if b is None else b(fn) for fn, b in zip(fns, breakers, strict=True)
        )

    def __repr__(self) -> str:
        return f"failover({list(self.labels)!r}, name={self.name!r})"

    # -- the chain, written once for the sync and async drivers -------------------

    def _skipped(self, index: int, exc: Exception) -> bool:
        breaker = self.breakers[index]
        return (
            breaker is not None
            and isinstance(exc, CircuitOpenError)
            and exc.breaker_name == breaker.name
        )

    def _failed(
        self, index: int, exc: Exception, failures: list[tuple[str, BaseException]]
    ) -> None:
        """Record an entry's failure; re-raise it when ``on`` rejects it."""
        from .boundary import never_a_fallback

        label = self.labels[index]
        skipped = self._skipped(index, exc)
        if not skipped and (never_a_fallback(exc) or not self._predicate(exc)):
            raise exc
        failures.append((label, exc))
        emit(
            "failover",
            "entry_failed",
            level="info",
            subject=self.name,
            exc=None if skipped else exc,
            entry=label,
            index=index,
            skipped=skipped,
        )

    def _answered(self, index: int, failures: list[tuple[str, BaseException]]) -> None:
        if failures:
            emit(
                "failover",
                "answered",
                level="info",
                subject=self.name,
                entry=self.labels[index],
                index=index,
                failed=[label for label, _ in failures],
            )

    def _exhausted(
        self, failures: list[tuple[str, BaseException]]
    ) -> FailoverExhaustedError:
        parts = "; ".join(f"{label}: {_describe(exc)}" for label, exc in failures)
        emit(
            "failover",
            "exhausted",
            level="warning",
            subject=self.name,
            failed=[label for label, _ in failures],
        )
        return FailoverExhaustedError(
            f"failover {self.name!r}: every entry failed ({parts})",
            failures=tuple(failures),
            context={"failover": self.name},
        )

    def _chain(
        self, failures: list[tuple[str, BaseException]]
    ) -> Generator[Callable[..., Any], Any, Any]:
        """Yields each entry to call in turn; returns the first answer."""
        for index, call in enumerate(self._calls):
            try:
                result = yield call
            except Exception as exc:  # noqa: BLE001 - decided by `on`
                self._failed(index, exc, failures)
                continue
            self._answered(index, failures)
            return result
        raise self._exhausted(failures) from failures[-1][1]

    # -- drivers ------------------------------------------------------------------

    def _run(
        self, failures: list[tuple[str, BaseException]], args: Any, kwargs: Any
    ) -> Any:
        return run_effects(self._chain(failures), lambda call: call(*args, **kwargs))

    async def _arun(
        self, failures: list[tuple[str, BaseException]], args: Any, kwargs: Any
    ) -> Any:
        async def perform(call: Callable[..., Awaitable[Any]]) -> Any:
            return await call(*args, **kwargs)

        return await arun_effects(self._chain(failures), perform)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Try the entries in order with these arguments (await it when async)."""
        if self.is_async:
            return self._arun([], args, kwargs)
        return self._run([], args, kwargs)

    def fallback_with_args(
        self, exc: Exception, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> Any:
        """As a ``resilient(fallback=...)``: the stack failed with ``exc``; go on.

        ``exc`` counts as the first failure (of the primary, the decorated
        function): a failure ``on`` rejects is re-raised unchanged, otherwise
        the entries are tried with the call's own arguments.
        """
        from .boundary import never_a_fallback

        if never_a_fallback(exc) or not self._predicate(exc):
            raise exc
        failures: list[tuple[str, BaseException]] = [("primary", exc)]
        if self.is_async:
            return self._arun(failures, args, dict(kwargs))
        return self._run(failures, args, dict(kwargs))


def failover(
    entries: Sequence[Callable[..., Any] | tuple[str, Callable[..., Any]]],
    *,
    on: RetryOn = is_retryable,
    name: str = "failover",
    breaker: Mapping[str, Any] | bool = True,
    store: StateStore | None = None,
) -> Failover:
    """Try ``entries`` in order until one answers; each behind its own breaker.

    ``chain = failover([primary, secondary])`` is called like the entries
    (``chain(*args)``, or ``await chain(*args)`` for coroutine functions):
    the first entry that returns answers. An entry that fails with an error
    ``on`` accepts (default :func:`is_retryable`: timeouts, connection
    errors, 429/5xx) hands over to the next; any other error is re-raised
    unchanged at once. Each entry has its own :class:`CircuitBreaker`
    (``failover:<name>:<entry>``): an entry whose breaker is open is skipped
    without being called. When every entry failed or was skipped,
    :class:`FailoverExhaustedError` carries ``failures`` (every entry's name
    and exception, in order) and the last one as ``__cause__``.

    As ``resilient(fallback=failover([...]))`` the decorated function is the
    primary: when its stack fails with an error ``on`` accepts, the entries
    are tried with the call's arguments; an error ``on`` rejects propagates
    unchanged (a chain of providers is no place to hide a bad request).

    Entries are independent (no state is shared between calls); thread-safe
    as far as the entries and breakers are. ``KeyboardInterrupt``,
    ``SystemExit`` and cancellation are never failed over.

    Events (``paios_reliability.failover.*``): ``entry_failed`` (info;
    ``entry``, ``index``, ``skipped``), ``answered`` (info; when an entry
    after a failure answered: ``entry``, ``failed``), ``exhausted`` (warning).
    A first entry that answers emits nothing.

    Args:
        entries: Callables, or ``(name, callable)`` pairs, all sync or all async.
        on: Which failures fail over: an exception class, a tuple of them or
            a predicate (as in :func:`retry`).
        name: Names the chain in events, errors and breaker names.
        breaker: ``True`` (default breakers), ``False`` (none) or a dict of
            :class:`CircuitBreaker` options for every entry's breaker.
        store: Where the breakers keep their state (share it between
            processes with an SQLite or Redis store).

    Raises:
        ValueError: No entries, an empty name, or two entries with one name.
        TypeError: A non-callable entry, or sync and async entries mixed.
    """
    return Failover(entries, on=on, name=name, breaker=breaker, store=store)
