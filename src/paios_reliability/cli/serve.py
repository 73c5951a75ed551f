"""``paios-reliability serve``: health endpoints, status API and dashboard."""

from __future__ import annotations

import argparse
import contextlib
import os
from typing import Any

from ._common import add_source_arguments, sources_from

__all__ = ["register"]

_EPILOG = """\
routes: /healthz /readyz /metrics /api/status /api/events /api/events/stream /
(all read-only GETs; see docs/dashboard.md). Sources as for `status`.

A bind other than loopback needs a token: --token-file PATH, or the
PAIOS_DASHBOARD_TOKEN environment variable (never on the command line,
where every local user can read it). Clients then send
`Authorization: Bearer <token>`.

exit codes: 0 stopped, 10 bad usage (e.g. a public bind without a token).
"""


def _read_token(args: argparse.Namespace) -> str | None:
    if args.token_file:
        from .._core.exceptions import ConfigError

        try:
            with open(args.token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read --token-file {args.token_file}: {exc.strerror or exc}",
                code="USAGE_ERROR",
            ) from exc
        if not token:
            raise ConfigError(
                f"--token-file {args.token_file} is empty", code="USAGE_ERROR"
            )
        return token
    return os.environ.get("PAIOS_DASHBOARD_TOKEN") or None


def _cmd_serve(args: argparse.Namespace) -> int:
    from .._web.app import serve

    sources = sources_from(args)

    def ready(port: int) -> None:
        print(f"serving on http://{args.host}:{port}/", flush=True)

    token = _read_token(args)
    with contextlib.suppress(KeyboardInterrupt):
        serve(sources, host=args.host, port=args.port, token=token, ready=ready)
    return 0


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the ``serve`` command."""
    serve = sub.add_parser(
        "serve",
        help="health endpoints, status API and live dashboard over HTTP",
        description="Serve /healthz, /readyz, /metrics, the status API and the "
        "dashboard (needs the 'dashboard' extra).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1")
    serve.add_argument("--port", type=int, default=8765, help="default 8765; 0: any")
    serve.add_argument("--token-file", metavar="PATH", help="file holding the token")
    add_source_arguments(serve)
    serve.set_defaults(handler=_cmd_serve)
