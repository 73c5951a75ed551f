"""Health endpoints, the status API and the live dashboard, as one ASGI app.

Built on Starlette (extra ``dashboard``); every route is a read-only GET.
Mount it in an existing app (``app.mount("/ops", create_status_app(...))``)
or run it alone with ``paios-reliability serve``.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from .._core.exceptions import ConfigError

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from .._observe.health import HealthRegistry
    from .._observe.metrics import MetricsRegistry
    from .._observe.status_sources import StatusSources

__all__ = ["create_status_app", "is_loopback", "serve"]

_EVENT_PARAMS = frozenset(
    {
        "store",
        "category",
        "action",
        "level",
        "service",
        "trace",
        "since",
        "until",
        "before",
        "after",
        "limit",
        "token",
    }
)
_MAX_LIMIT = 1000
_STREAM_POLL = 0.5
_STREAM_KEEPALIVE = 15.0
_STATE_VALUE = {"closed": 0, "half_open": 1, "open": 2}
_STATUS_VALUE = {"ok": 0, "degraded": 1, "failing": 2}


class _BadRequest(Exception):
    """A query parameter the API cannot use: answered with 400 and the reason."""


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _need_dashboard() -> None:
    try:
        import starlette  # noqa: F401
    except ImportError:
        raise ConfigError(
            "the dashboard needs the 'dashboard' extra: "
            "pip install 'paios-reliability[dashboard]'",
            code="USAGE_ERROR",
        ) from None


def _int_param(
    name: str, raw: str | None, *, low: int, high: int | None = None
) -> int | None:
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise _BadRequest(f"{name} must be an integer, got {raw!r}") from None
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise _BadRequest(f"{name} must be {bound}, got {value}")
    return value


def _time_param(name: str, raw: str | None) -> float | None:
    if raw is None:
        return None
    from .._observe.time_args import parse_time

    try:
        return parse_time(raw)
    except ConfigError:
        raise _BadRequest(
            f"{name} must be an age (30m, 1h, 2d), an ISO time or epoch seconds, "
            f"got {raw!r}"
        ) from None


def _event_filters(query: Mapping[str, str], stores: int) -> dict[str, Any]:
    unknown = sorted(set(query) - _EVENT_PARAMS)
    if unknown:
        raise _BadRequest(
            f"unknown parameter(s): {', '.join(unknown)} "
            f"(known: {', '.join(sorted(_EVENT_PARAMS - {'token'}))})"
        )
    if stores == 0:
        raise _BadRequest("no event store is configured")
    from .._observe.eventstore_schema import LEVELS

    level = query.get("level")
    if level is not None and level not in LEVELS:
        raise _BadRequest(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    store = _int_param("store", query.get("store"), low=0, high=stores - 1) or 0
    before = _int_param("before", query.get("before"), low=1)
    after = _int_param("after", query.get("after"), low=0)
    if before is not None and after is not None:
        raise _BadRequest("give before or after, not both")
    limit = _int_param("limit", query.get("limit"), low=1, high=_MAX_LIMIT) or 100
    return {
        "store": store,
        "category": query.get("category"),
        "action": query.get("action"),
        "level": level,
        "service": query.get("service"),
        "trace_id": query.get("trace"),
        "since": _time_param("since", query.get("since")),
        "until": _time_param("until", query.get("until")),
        "before_id": before,
        "after_id": after,
        "limit": limit,
    }


def _metrics_text(status: Any, registry: MetricsRegistry | None) -> str:
    lines = [
        "# HELP paios_status Overall status: 0 ok, 1 degraded, 2 failing.",
        "# TYPE paios_status gauge",
        f"paios_status {_STATUS_VALUE[status.status]}",
        "# HELP paios_circuit_breaker_state Stored breaker state: 0 closed, "
        "1 half-open, 2 open.",
        "# TYPE paios_circuit_breaker_state gauge",
    ]
    lines.extend(
        f'paios_circuit_breaker_state{{name="{_label(b.name)}"}} '
        f"{_STATE_VALUE.get(b.state, 2)}"
        for b in status.breakers
    )
    lines += [
        "# HELP paios_errors_window Error events in the status window, by code.",
        "# TYPE paios_errors_window gauge",
    ]
    lines.extend(
        f'paios_errors_window{{code="{_label(e.code)}"}} {e.count}'
        for e in status.errors
    )
    lines += [
        "# HELP paios_event_store_events Events in each event store.",
        "# TYPE paios_event_store_events gauge",
    ]
    lines.extend(
        f'paios_event_store_events{{path="{_label(s["path"])}"}} {s["events"]}'
        for s in status.event_stores
    )
    text = "\n".join(lines) + "\n"
    if registry is not None:
        text += registry.to_prometheus_text()
    return text


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def create_status_app(  # noqa: PLR0915 - the routes close over one configuration
    sources: StatusSources | None = None,
    *,
    health: HealthRegistry | None = None,
    metrics: MetricsRegistry | None = None,
    token: str | None = None,
) -> Starlette:
    """The read-only ASGI app: health probes, status API, event API, dashboard.

    Routes (all ``GET``): ``/healthz`` (liveness: 200 while the process
    serves), ``/readyz`` (200, or 503 with the failing checks, from
    ``health`` or the registry named in ``sources``), ``/metrics``
    (Prometheus text: status gauges, then ``metrics``), ``/api/status``
    (the :class:`SystemStatus` JSON), ``/api/events`` (filtered, paged;
    400 with a message for a bad parameter), ``/api/events/stream``
    (server-sent events, resumable with ``Last-Event-ID``) and ``/`` (the
    live dashboard page).

    Args:
        sources: What to read (:func:`load_status_sources`); ``None``: the
            ``reliability.toml`` found from the working directory.
        health: The registry for ``/readyz``; default: ``sources.health``.
        metrics: A registry appended to ``/metrics`` (e.g. ``get_metrics()``
            of the process the app is mounted in).
        token: When set, every route but ``/healthz`` needs
            ``Authorization: Bearer <token>`` (or ``?token=`` for the page
            and the stream, which browsers cannot give headers); 401
            otherwise. Compared in constant time; never logged.

    Raises:
        ConfigError: ``USAGE_ERROR`` without the ``dashboard`` extra.
    """
    _need_dashboard()
    import anyio.to_thread
    from starlette.applications import Starlette
    from starlette.responses import (
        HTMLResponse,
        JSONResponse,
        PlainTextResponse,
        StreamingResponse,
    )
    from starlette.routing import Route

    from .._observe.status import collect_status
    from .._observe.status_events import read_events
    from .._observe.status_sources import load_status_sources

    src = load_status_sources() if sources is None else sources
    registry = health
    if registry is None and src.health:
        from .._observe.health_command import _load_registry

        registry = _load_registry(src.health)
    expected = token.encode() if token else None

    def authorised(request: Request, *, query_ok: bool) -> bool:
        if expected is None:
            return True
        header = request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else ""
        if not given and query_ok:
            given = request.query_params.get("token", "")
        return hmac.compare_digest(given.encode(), expected)

    def guarded(
        handler: Callable[[Request], Awaitable[Response]], *, query_ok: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if not authorised(request, query_ok=query_ok):
                return JSONResponse(
                    {
                        "error": "unauthorized",
                        "detail": "a valid bearer token is needed",
                    },
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
            try:
                return await handler(request)
            except _BadRequest as exc:
                return JSONResponse(
                    {"error": "bad_request", "detail": str(exc)}, status_code=400
                )

        return endpoint

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "alive", "pid": os.getpid()})

    async def readyz(request: Request) -> Response:
        if registry is None:
            return JSONResponse({"status": "ok", "checks": [], "failing": []})
        report = await anyio.to_thread.run_sync(registry.run)
        body = report.to_dict()
        body["failing"] = [
            c["name"] for c in body["checks"] if c["status"] == "failing"
        ]
        return JSONResponse(body, status_code=200 if report.ok else 503)

    async def api_status(request: Request) -> Response:
        status = await anyio.to_thread.run_sync(
            lambda: collect_status(src, health=registry)
        )
        return JSONResponse(status.to_dict())

    async def metrics_endpoint(request: Request) -> Response:
        status = await anyio.to_thread.run_sync(
            lambda: collect_status(src, health=registry)
        )
        return PlainTextResponse(
            _metrics_text(status, metrics),
            media_type="text/plain; version=0.0.4; charset=utf-8",
        )

    async def api_events(request: Request) -> Response:
        filters = _event_filters(request.query_params, len(src.event_stores))
        path = src.event_stores[filters.pop("store")]
        try:
            events = await anyio.to_thread.run_sync(
                lambda: read_events(path, **filters)
            )
        except ConfigError as exc:
            raise _BadRequest(str(exc)) from exc
        items = [e.to_dict() for e in events]
        after = filters["after_id"] is not None
        full = len(events) == filters["limit"]
        cursor: dict[str, Any] = {}
        if full:
            cursor = {"after": events[-1].id} if after else {"before": events[-1].id}
        return JSONResponse({"events": items, "next": cursor or None})

    async def stream(request: Request) -> Response:
        filters = _event_filters(request.query_params, len(src.event_stores))
        path = src.event_stores[filters.pop("store")]
        last = request.headers.get("last-event-id")
        start = _int_param("Last-Event-ID", last, low=0)
        if start is None:
            start = filters["after_id"]
        if start is None:
            newest = await anyio.to_thread.run_sync(lambda: read_events(path, limit=1))
            start = newest[0].id if newest else 0
        filters["limit"] = min(filters["limit"], 500)

        async def frames() -> AsyncIterator[str]:
            after = start
            quiet_since = time.monotonic()
            yield f": stream of {os.path.basename(path)} after id {after}\n\n"
            while True:
                filters["after_id"] = after
                events = await anyio.to_thread.run_sync(
                    lambda: read_events(path, **filters)
                )
                for event in events:
                    after = event.id
                    data = json.dumps(event.to_dict(), default=str)
                    yield f"id: {event.id}\nevent: event\ndata: {data}\n\n"
                if events:
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since > _STREAM_KEEPALIVE:
                    quiet_since = time.monotonic()
                    yield ": keep-alive\n\n"
                if await request.is_disconnected():
                    return
                await anyio.sleep(_STREAM_POLL)

        return StreamingResponse(
            frames(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def page(request: Request) -> Response:
        from ._page import PAGE

        return HTMLResponse(PAGE, headers={"Cache-Control": "no-store"})

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", guarded(readyz), methods=["GET"]),
        Route("/metrics", guarded(metrics_endpoint), methods=["GET"]),
        Route("/api/status", guarded(api_status), methods=["GET"]),
        Route("/api/events", guarded(api_events), methods=["GET"]),
        Route("/api/events/stream", guarded(stream, query_ok=True), methods=["GET"]),
        Route("/", guarded(page, query_ok=True), methods=["GET"]),
    ]
    return Starlette(routes=routes)


def serve(
    sources: StatusSources | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    health: HealthRegistry | None = None,
    ready: Callable[[int], None] | None = None,
) -> None:
    """Run :func:`create_status_app` with uvicorn until interrupted.

    Args:
        host: The address to bind; loopback by default.
        port: The port (0: any free port; see ``ready``).
        token: Needed for any bind that is not loopback.
        ready: Called with the bound port once the server listens.

    Raises:
        ConfigError: ``USAGE_ERROR`` for a non-loopback ``host`` without a
            token, or without the ``dashboard`` extra.
    """
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"binding {host} exposes the status to the network: give a token "
            "(--token-file or $PAIOS_DASHBOARD_TOKEN), or bind 127.0.0.1",
            code="USAGE_ERROR",
        )
    _need_dashboard()
    import uvicorn

    app = create_status_app(sources, health=health, token=token)
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    if ready is not None:
        original = server.startup

        async def startup(sockets: Any = None) -> None:
            await original(sockets=sockets)
            bound = server.servers[0].sockets[0].getsockname()[1]
            ready(int(bound))

        server.startup = startup  # type: ignore[method-assign]
    server.run()
