"""systemd's notify protocol, without a dependency.

A service started with ``Type=notify`` or ``WatchdogSec=`` finds the address
of systemd's datagram socket in ``$NOTIFY_SOCKET`` and sends it lines such as
``READY=1`` or ``WATCHDOG=1``. Outside systemd the variable is unset and
every call here is a cheap no-op, so code can call them unconditionally.
"""

from __future__ import annotations

import math
import os
import socket

__all__ = ["sd_notify", "watchdog_interval"]

_MAX_STATUS = 1024


def sd_notify(
    *,
    ready: bool = False,
    stopping: bool = False,
    watchdog: bool = False,
    status: str | None = None,
) -> bool:
    """Tell systemd about this service's state.

    Args:
        ready: ``READY=1``: start-up finished (for ``Type=notify`` units).
        stopping: ``STOPPING=1``: a clean shutdown has begun.
        watchdog: ``WATCHDOG=1``: the service is alive (for ``WatchdogSec=``).
            Send it only from the code whose liveness it vouches for (see
            :class:`~paios_reliability.StallWatchdog`).
        status: ``STATUS=...``: a one-line status shown by ``systemctl status``.

    Returns:
        Whether a message was sent: ``False`` outside systemd (no
        ``$NOTIFY_SOCKET``), with nothing to send, or if the socket refused it
        (then a ``systemd.notify_failed`` event is emitted).

    Raises:
        ValueError: If ``status`` holds a line break or a NUL, or is longer
            than 1024 characters.
    """
    lines: list[str] = []
    if status is not None:
        given: object = status
        if not isinstance(given, str) or any(c in status for c in "\r\n\0"):
            raise ValueError("sd_notify(status=...) must be one line of text")
        if len(status) > _MAX_STATUS:
            raise ValueError(
                f"sd_notify(status=...) is {len(status)} characters; at most {_MAX_STATUS}"
            )
        lines.append(f"STATUS={status}")
    if ready:
        lines.append("READY=1")
    if stopping:
        lines.append("STOPPING=1")
    if watchdog:
        lines.append("WATCHDOG=1")
    address = os.environ.get("NOTIFY_SOCKET")
    if not lines or not address or not hasattr(socket, "AF_UNIX"):
        return False
    if address.startswith("@"):  # an abstract socket (Linux)
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.settimeout(1.0)
            sock.sendto("\n".join(lines).encode(), address)
    except OSError as exc:
        from .._core.events import emit

        emit("systemd", "notify_failed", level="warning", exc=exc, sent=len(lines))
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between ``WATCHDOG=1`` pings systemd asks for, or ``None``.

    Half of ``$WATCHDOG_USEC`` (systemd's advice), when the variable is set
    and ``$WATCHDOG_PID`` is unset or names this process.
    """
    pid = os.environ.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    raw = os.environ.get("WATCHDOG_USEC", "")
    try:
        usec = int(raw)
    except ValueError:
        return None
    if usec <= 0:
        return None
    seconds = usec / 2_000_000
    return seconds if math.isfinite(seconds) else None
