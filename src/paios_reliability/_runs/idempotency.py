"""Idempotency: run a side effect once per key, replay its result afterwards.

One record per key in a :class:`~paios_reliability.typing.StateStore`::

    {"s": "running", "o": holder, "x": lease_expires_ns, "a": started_ns}
    {"s": "done" | "error", "o": holder, "x": expires_ns, "a": stored_ns,
     "v": text | "b": base64 | "e": {"t": type, "m": message, "c": code}}

The first caller *claims* the key (one atomic ``store.update``) and runs the
function while a background thread renews its claim; duplicates that arrive
meanwhile poll until the record is done (bounded by ``wait``). A claimant that
dies stops renewing, its claim expires after ``lease_ttl`` and the next caller
takes over. A failure releases the claim (or stores the error with
``cache_errors=True``), so a retry runs the function again.
"""

from __future__ import annotations

import base64
import functools
import inspect
import random
from collections.abc import Awaitable, Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, ParamSpec, TypeVar, cast

from .._core.clock import get_clock
from .._core.dispatch import (
    callable_name,
    is_async_callable,
    through_method_descriptors,
)
from .._core.effects import arun_effects, run_effects
from .._core.events import emit
from .._core.exceptions import LockConflictError
from .._stores import (
    NS,
    StoreUnavailableError,
    adrive,
    check_name,
    check_number,
    drive,
    now_ns,
    resolve_store,
    seconds_to_ns,
    ttl_seconds,
)
from .._stores._renewal import renew
from .._stores.engine import Steps, report_lost_write
from .idempotency_steps import (
    _GONE,
    _HIT,
    _JSON,
    _RENEWED,
    _RUN,
    Serializer,
    _Claim,
    _error_info,
    _holder,
    _rebuild_error,
    abandon_step,
    claim_step,
    finish_step,
    idempotency_key,
    renew_step,
)

if TYPE_CHECKING:
    from ..typing import Clock, StateStore

__all__ = ["IdempotencyStore", "idempotent"]

P = ParamSpec("P")
T = TypeVar("T")

_PRIMITIVE = "idempotency"
_POLL_MIN = 0.002
_POLL_MAX = 0.05
# Storing the outcome after the function ran: at most this many writes, the
# pauses between them doubling from the first up to the last.
_FINISH_ATTEMPTS = 6
_FINISH_PAUSE = 0.05
_FINISH_PAUSE_MAX = 1.0


class _Drive(NamedTuple):
    """A step machine to run on a key's record, with :func:`drive` or :func:`adrive`."""

    steps: Steps[Any]
    key: str
    undo: Callable[[Any], tuple[Any, Any]] | None = None
    catch: tuple[type[Exception], ...] = ()


class IdempotencyStore:
    """Run each keyed operation once; later calls with the key get its result.

    - The first call with a key runs the function and stores its result
      (serialized; JSON by default) for ``ttl`` seconds.
    - Repeats within ``ttl`` return the stored result without running.
    - A duplicate arriving while the first still runs waits for it (polling,
      at most ``wait`` seconds and never past an enclosing ``deadline``)
      instead of running twice, then returns the stored result.
    - A call that raises stores nothing (a retry runs again), unless
      ``cache_errors=True``: then the error is stored and replayed.
    - A caller that dies mid-call (``kill -9``) stops renewing its claim; the
      claim expires after ``lease_ttl`` and the next caller runs.

    Works on every store; the guarantee holds across threads
    (:class:`MemoryStore`), processes (:class:`SQLiteStore`) and hosts
    (:class:`RedisStore`). Records expire by the store's TTL (``ttl`` plus a
    minute of margin), so they clean themselves up.

    Args:
        store: Where records live (default: a private :class:`MemoryStore`).
        ttl: Seconds a result is kept and replayed (default 24 h).
        wait: Longest wait for a concurrent duplicate to finish (default 30 s).
        lease_ttl: Seconds a running claim lives without renewal (default
            15 s; renewed every ``lease_ttl / 3`` while the function runs).
            Keep it below ``wait``: then a duplicate waiting on a claimant
            that died outlasts the dead claim and runs.
        cache_errors: Store exceptions too and raise them again on repeats.
        serializer: ``dumps``/``loads`` pair (``json`` by default; ``pickle``
            for arbitrary objects on a trusted store).
        clock: Time source (default: the process clock at call time).

    Events (``paios_reliability.idempotency.*``): ``hit``, ``claimed``,
    ``stored``, ``abandoned``, ``waiting`` (debug); ``conflict`` (info);
    ``taken_over`` (warning: a claimant died); ``lost``, ``renew_failed``,
    ``release_failed``, ``record_lost`` (error: the result of a call that
    ran could not be stored, see :meth:`run`).
    """

    def __init__(
        self,
        store: StateStore | None = None,
        *,
        ttl: float = 86_400.0,
        wait: float = 30.0,
        lease_ttl: float = 15.0,
        cache_errors: bool = False,
        serializer: Serializer | None = None,
        clock: Clock | None = None,
    ) -> None:
        owner = "IdempotencyStore"
        self.store = resolve_store(store)
        self.ttl = check_number(owner, "ttl", ttl)
        self.wait = check_number(owner, "wait", wait, zero=True)
        self.lease_ttl = check_number(owner, "lease_ttl", lease_ttl)
        self.cache_errors = bool(cache_errors)
        self.serializer: Serializer = serializer if serializer is not None else _JSON()
        for method in ("dumps", "loads"):
            if not callable(getattr(self.serializer, method, None)):
                raise TypeError(
                    f"serializer must have dumps() and loads(), got {serializer!r}"
                )
        self._clock = clock
        self._store_ttl = ttl_seconds(max(self.ttl, self.lease_ttl))

    def __repr__(self) -> str:
        return f"IdempotencyStore({self.store!r}, ttl={self.ttl!r})"

    def _now(self) -> int:
        return now_ns(get_clock(self._clock), self.store.shared)

    @staticmethod
    def _store_key(key: str) -> str:
        return f"{_PRIMITIVE}:{check_name('idempotency key:', key)}"

    # -- the claim loop, shared by run() and arun() ------------------------------

    def _claim_steps(
        self, key: str, holder: str
    ) -> Generator[tuple[str, Any], Any, tuple[str, Any]]:
        """Yields ("update", step) / ("sleep", s); returns (_RUN, holder) or (_HIT, record)."""
        from .._policies.timeout import remaining

        clock = get_clock(self._clock)
        patience = self.wait
        left = remaining()
        if left is not None:
            patience = min(patience, left)
        give_up = clock.monotonic() + patience
        lease_ns = seconds_to_ns(self.lease_ttl)
        pause = _POLL_MIN
        announced = False
        while True:
            step = functools.partial(
                claim_step, now=self._now(), holder=holder, lease_ns=lease_ns
            )
            outcome = yield ("update", step)
            if outcome[0] == _RUN:
                if outcome[1] is not None:
                    emit(
                        _PRIMITIVE,
                        "taken_over",
                        level="warning",
                        subject=key,
                        previous=outcome[1],
                    )
                emit(_PRIMITIVE, "claimed", level="debug", subject=key)
                return _RUN, holder
            if outcome[0] == _HIT:
                emit(_PRIMITIVE, "hit", level="debug", subject=key)
                return _HIT, outcome[1]
            _, running, expires = outcome
            left = give_up - clock.monotonic()
            if left <= 0:
                held_for = max(0.0, (expires - self._now()) / NS)
                emit(_PRIMITIVE, "conflict", subject=key, holder=running)
                raise LockConflictError(
                    f"a call with idempotency key {key!r} is still running in "
                    f"{running} (waited {patience:.3f}s)",
                    key=key,
                    holder=running,
                    retry_after=held_for,
                )
            if not announced:
                announced = True
                emit(_PRIMITIVE, "waiting", level="debug", subject=key, holder=running)
            yield ("sleep", min(pause * random.uniform(0.5, 1.0), left))  # noqa: S311
            pause = min(_POLL_MAX, pause * 1.5)

    def _replay(self, key: str, record: Mapping[str, Any]) -> Any:
        if record["s"] == "error":
            raise _rebuild_error(record.get("e") or {}, key)
        if "b" in record:
            return self.serializer.loads(base64.b64decode(record["b"]))
        return self.serializer.loads(record["v"])

    def _payload(self, fn: Callable[..., Any], result: Any) -> dict[str, Any]:
        try:
            data = self.serializer.dumps(result)
        except Exception as exc:  # pickle's PicklingError, a RecursionError...
            raise TypeError(
                f"the result of {callable_name(fn)} cannot be stored by "
                f"{type(self.serializer).__name__}: {exc}; return JSON data or pass "
                "serializer=pickle (trusted stores only)"
            ) from exc
        if isinstance(data, (bytes, bytearray)):
            return {"b": base64.b64encode(bytes(data)).decode("ascii")}
        if isinstance(data, str):
            return {"v": data}
        raise TypeError(
            f"serializer.dumps() must return str or bytes, got {type(data).__name__}"
        )

    def _finish(
        self, claim: _Claim, status: str, payload: Mapping[str, Any]
    ) -> Callable[[], Callable[[Any], tuple[Any, bool]]]:
        """A maker of the step that stores the outcome (fresh time per write)."""
        ttl_ns = seconds_to_ns(self.ttl)
        return lambda: functools.partial(
            finish_step,
            now=self._now(),
            holder=claim.holder,
            status=status,
            payload=payload,
            ttl_ns=ttl_ns,
        )

    def _start(self, key: str, holder: str) -> _Claim:
        claim = _Claim(key, self._store_key(key), holder)
        lease_ns = seconds_to_ns(self.lease_ttl)

        def renew_claim() -> bool:
            try:
                outcome = self.store.update(
                    claim.store_key,
                    functools.partial(
                        renew_step,
                        now=self._now(),
                        holder=claim.holder,
                        lease_ns=lease_ns,
                    ),
                    ttl=self._store_ttl,
                )
            except StoreUnavailableError as exc:
                report_lost_write(_PRIMITIVE, "renew_failed", key, exc)
                return True
            if outcome == _RENEWED:
                return True
            if outcome == _GONE and not claim.ending:
                emit(_PRIMITIVE, "lost", level="error", subject=key)
            return False

        claim.renewal = renew(self.store, self.lease_ttl / 3, renew_claim)
        return claim

    @staticmethod
    def _stop(claim: _Claim) -> None:
        renewal, claim.renewal = claim.renewal, None
        if renewal is not None:
            renewal.cancel()

    def _ending_steps(
        self,
        claim: _Claim,
        make_step: Callable[[], Callable[[Any], tuple[Any, Any]]],
        attempts: int,
    ) -> Generator[tuple[str, Any], Any, tuple[bool, Any]]:
        """Write the claim's end after ``fn`` ran; never raises a store error.

        The claim stays renewed meanwhile, so duplicates keep waiting. Within
        ``lease_ttl`` (and the enclosing deadline; at least one write) and
        ``attempts`` writes, a retryable store error is retried; after that
        the write is given up and ``(False, None)`` returned (with an error
        event: ``record_lost`` when a result was to be stored, else
        ``release_failed``). Otherwise ``(True, reply)``.
        """
        from .._core.taxonomy import classify
        from .._policies.timeout import remaining

        claim.ending = True
        clock = get_clock(self._clock)
        budget = self.lease_ttl
        left = remaining()
        if left is not None:
            budget = min(budget, left)
        give_up = clock.monotonic() + budget
        pause = _FINISH_PAUSE
        attempt = 0
        while True:
            attempt += 1
            try:
                reply = yield ("update", make_step())
            except Exception as exc:  # noqa: BLE001 - the side effect happened
                error: Exception = exc
            else:
                return True, reply
            left = give_up - clock.monotonic()
            if attempt >= attempts or left <= 0 or not classify(error).retryable:
                emit(
                    _PRIMITIVE,
                    "record_lost" if attempts > 1 else "release_failed",
                    level="error",
                    subject=claim.key,
                    exc=error,
                    attempts=attempt,
                )
                return False, None
            yield ("sleep", min(pause, left))
            pause = min(_FINISH_PAUSE_MAX, pause * 2)

    # -- the call, in bodies shared by run() and arun() ---------------------------
    #
    # Each body yields a _Drive (a step machine to run on the key's record);
    # _perform runs it with drive(), _aperform with adrive(). run() and arun()
    # call the function, re-raise its error and replay a stored outcome
    # themselves, outside the bodies: an exception raised through a generator
    # is not always the one that comes out (a StopIteration turns into a
    # RuntimeError).

    def _perform(self, op: _Drive) -> Any:
        return drive(
            op.steps,
            self.store,
            op.key,
            ttl=self._store_ttl,
            clock=get_clock(self._clock),
            undo=op.undo,
            catch=op.catch,
        )

    async def _aperform(self, op: _Drive) -> Any:
        return await adrive(
            op.steps,
            self.store,
            op.key,
            ttl=self._store_ttl,
            clock=get_clock(self._clock),
            finish_on_cancel=True,
            undo=op.undo,
            catch=op.catch,
        )

    def _claiming(self, key: str) -> Generator[_Drive, Any, _Claim | Mapping[str, Any]]:
        """Claim ``key``: the running claim, or the stored record to replay.

        Interrupted or cancelled while claiming, the claim it may have taken
        is dropped again.
        """
        store_key = self._store_key(key)
        holder = _holder()
        outcome, value = yield _Drive(
            self._claim_steps(key, holder), store_key, undo=self._abandon(holder)
        )
        if outcome == _HIT:
            return cast(Mapping[str, Any], value)
        return self._start(key, value)

    def _ending(
        self,
        claim: _Claim,
        make_step: Callable[[], Callable[[Any], tuple[Any, Any]]],
        attempts: int,
    ) -> Generator[_Drive, Any, tuple[bool, Any]]:
        """Write the claim's end (see :meth:`_ending_steps`), then stop renewing it."""
        steps = self._ending_steps(claim, make_step, attempts)
        try:
            ended: tuple[bool, Any] = yield _Drive(
                steps, claim.store_key, catch=(Exception,)
            )
        finally:
            self._stop(claim)
        return ended

    def _failing(
        self, claim: _Claim, exc: BaseException | None
    ) -> Generator[_Drive, Any, None]:
        """End a call that left no result: store its error, or drop the claim.

        The error is stored only with ``cache_errors`` (and never a
        ``BaseException`` such as a cancellation). One write: the claim would
        expire by itself, and the caller should get the error now rather than
        after store retries.
        """
        if isinstance(exc, Exception) and self.cache_errors:
            make_step = self._finish(claim, "error", {"e": _error_info(exc)})
            stored, _ = yield from self._ending(claim, make_step, 1)
            if stored:
                emit(_PRIMITIVE, "stored", level="debug", subject=claim.key, error=True)
            return
        abandon = self._abandon(claim.holder)
        stored, _ = yield from self._ending(claim, lambda: abandon, 1)
        if stored:
            emit(_PRIMITIVE, "abandoned", level="debug", subject=claim.key)

    def _succeeding(
        self, claim: _Claim, fn: Callable[..., Any], result: T
    ) -> Generator[_Drive, Any, T]:
        """Store ``fn``'s result, then return it.

        A result the serializer refuses is not stored: the claim is dropped
        (one write) and the TypeError raised; so is a claim whose
        serialization was interrupted (Ctrl-C).
        """
        try:
            payload = self._payload(fn, result)
        except BaseException as exc:  # noqa: BLE001 - dropped, then re-raised
            refused: BaseException | None = exc
        else:
            refused = None
        if refused is not None:
            yield from self._failing(claim, None)
            raise refused
        make_step = self._finish(claim, "done", payload)
        stored, won = yield from self._ending(claim, make_step, _FINISH_ATTEMPTS)
        if stored:
            emit(
                _PRIMITIVE, "stored", level="debug", subject=claim.key, first=bool(won)
            )
        return result

    def _abandon(self, holder: str) -> Callable[[Any], tuple[Any, bool]]:
        return functools.partial(abandon_step, holder=holder)

    # -- sync -----------------------------------------------------------------------

    def run(
        self, key: str, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Call ``fn(*args, **kwargs)`` once for ``key``; replay its result after.

        Once ``fn`` has run, a store error never reaches the caller: the
        outcome write is retried (within ``lease_ttl`` and the enclosing
        deadline, a few times, the claim kept alive meanwhile); if the store
        still cannot take it, ``fn``'s result is returned anyway and an
        ``idempotency.record_lost`` error event is emitted. A duplicate that
        arrives after the unrenewed claim expired then runs ``fn`` again, as
        after a crash.

        Interrupted (Ctrl-C) while claiming, the claim it may have taken is
        dropped again, so duplicates are not kept waiting for ``lease_ttl``.

        Returns:
            ``fn``'s result (the first call's, deserialized, on repeats).

        Raises:
            LockConflictError: A duplicate is still running after ``wait``.
            StoreUnavailableError: The store cannot be reached to claim the
                key; ``fn`` was not run.
            TypeError: The result cannot be serialized (``fn`` did run;
                nothing is stored).
            Exception: Whatever ``fn`` raised (or the stored error, with
                ``cache_errors=True``).
        """
        claim = run_effects(self._claiming(key), self._perform)
        if not isinstance(claim, _Claim):
            return cast(T, self._replay(key, claim))
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            run_effects(self._failing(claim, exc), self._perform)
            raise
        return run_effects(self._succeeding(claim, fn, result), self._perform)

    # -- async ----------------------------------------------------------------------

    async def arun(
        self,
        key: str,
        fn: Callable[P, Awaitable[T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """:meth:`run` for a coroutine function, without blocking the event loop.

        Cancelled while claiming, it waits for the store update in flight and
        drops the claim it may have taken before the cancellation propagates.
        """
        claim = await arun_effects(self._claiming(key), self._aperform)
        if not isinstance(claim, _Claim):
            return cast(T, self._replay(key, claim))
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            await arun_effects(self._failing(claim, exc), self._aperform)
            raise
        return await arun_effects(self._succeeding(claim, fn, result), self._aperform)

    # -- management -----------------------------------------------------------------

    def forget(self, key: str) -> None:
        """Delete the record of ``key`` (the next call runs again)."""
        self.store.delete(self._store_key(key))

    def decorate(
        self, key: str | Callable[..., str] | None = None
    ) -> Callable[[Callable[P, T]], Callable[P, T]]:
        """The :func:`idempotent` decorator bound to this store's settings."""

        @through_method_descriptors
        def decorator(fn: Callable[P, T]) -> Callable[P, T]:
            derive = _key_function(fn, key)
            if is_async_callable(fn):
                afn = cast(Callable[P, Awaitable[Any]], fn)
                arun = self.arun

                @functools.wraps(fn)
                async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                    return await arun(derive(*args, **kwargs), afn, *args, **kwargs)

                return cast(Callable[P, T], async_wrapper)

            run = self.run

            @functools.wraps(fn)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
                return run(derive(*args, **kwargs), fn, *args, **kwargs)

            return wrapper

        return decorator


def _key_function(
    fn: Callable[..., Any], key: str | Callable[..., str] | None
) -> Callable[..., str]:
    if isinstance(key, str):
        check_name("idempotency key:", key)
        fixed = key
        return lambda *args, **kwargs: fixed
    if key is not None and not callable(key):
        raise TypeError(f"idempotent(key=...) must be a str or a callable, got {key!r}")
    name = callable_name(fn)
    signature = inspect.signature(fn)

    def arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)

    if key is not None:
        derive = key

        def by_name(*args: Any, **kwargs: Any) -> str:
            # By name, defaults applied: ``lambda order_id, **_: ...`` works
            # however the caller passed ``order_id``.
            made: object = derive(**arguments(args, kwargs))
            if not isinstance(made, str) or not made:
                raise TypeError(
                    f"the idempotency key function returned {made!r}, not a non-empty str"
                )
            return made

        return by_name

    def from_arguments(*args: Any, **kwargs: Any) -> str:
        try:
            return idempotency_key("", name, "call", arguments(args, kwargs))
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"cannot derive an idempotency key from the arguments of {name} "
                f"({exc}); pass key=... to idempotent()"
            ) from exc

    return from_arguments


def idempotent(
    store: StateStore | None,
    *,
    key: str | Callable[..., str] | None = None,
    ttl: float = 86_400.0,
    wait: float = 30.0,
    lease_ttl: float = 15.0,
    cache_errors: bool = False,
    serializer: Serializer | None = None,
    clock: Clock | None = None,
) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Make a sync or async function run once per idempotency key.

    See :class:`IdempotencyStore` for the guarantees. The wrapped function
    keeps its signature.

    Args:
        store: Where records live (``None``: private memory, this process).
        key: The idempotency key: a fixed string; a function that returns
            one, called with the decorated function's arguments *by name*
            (defaults applied), e.g. ``lambda order_id, **_:
            f"charge:{order_id}"``; or ``None`` to derive it from the
            function's dotted name and all its arguments (which must be JSON).
        ttl: Seconds a result is replayed (default 24 h).
        wait: Longest wait for a concurrent duplicate (default 30 s).
        lease_ttl: Life of a running claim without renewal.
        cache_errors: Store and replay exceptions too.
        serializer: ``dumps``/``loads`` (default JSON).
        clock: Time source.
    """
    return IdempotencyStore(
        store,
        ttl=ttl,
        wait=wait,
        lease_ttl=lease_ttl,
        cache_errors=cache_errors,
        serializer=serializer,
        clock=clock,
    ).decorate(key)
