"""Cost of redaction: it runs on every logged error, event and audit record.

Run: ``python benchmarks/bench_redact.py [--calls N] [--repeat R]``

Times :func:`redact_text` on 1 KiB messages (plain prose, a log line with
several secrets, a traceback) and :func:`json_safe` on a typical event field
mapping. Target: well under 50 us per 1 KiB message, so redaction stays a
small part of the cost of writing a log line.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable

from paios_reliability._core.redaction import json_safe, redact_text

PROSE = (
    "The worker finished step 3 of 7 for run r-42 after 1.25 seconds; the "
    "next step fetches the issue list, ranks it by age and writes a summary "
    "for the daily report. Nothing unusual happened: max_tokens=4096, "
    "input_tokens=812, output_tokens=377, cache hit ratio 0.93. "
)
SECRETS = (
    "POST https://alice:Hunter2Pass@api.internal/v1/run?api_key=QryKey-5150&page=2 "
    "failed: Authorization: Bearer sk-proj-Q7pXv2LmN8rT4wZ6yB1cD3eF "
    "argv=['deploy', '--password=Cli-Pa55-eq', '--token', 'Cli-T0ken-sp'] "
    "github ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8 aws AKIAQ3EGRZ7PLEXAMPLE "
)
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/agent/tools/github.py", line 88, in fetch_issues\n'
    "    response = client.get(url, headers=headers, timeout=timeout)\n"
    '  File "/srv/agent/http.py", line 41, in get\n'
    "    raise ConnectionResetError(f'reset by peer after {n} bytes')\n"
)


def kib(text: str) -> str:
    return (text * (1024 // len(text) + 1))[:1024]


def best(fn: Callable[[], object], calls: int, repeat: int) -> float:
    result = float("inf")
    for _ in range(repeat):
        gc.disable()
        try:
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            result = min(result, (time.perf_counter() - start) / calls)
        finally:
            gc.enable()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    fields = {
        "attempt": 3,
        "wait": 0.4,
        "subject": "github.fetch_issues",
        "url": "https://api.internal/v1/issues?page=2",
        "headers": {"Authorization": "Bearer x", "Accept": "application/json"},
    }
    cases: dict[str, Callable[[], object]] = {
        "redact_text 1 KiB prose": lambda: redact_text(kib(PROSE)),
        "redact_text 1 KiB with secrets": lambda: redact_text(kib(SECRETS)),
        "redact_text 1 KiB traceback": lambda: redact_text(kib(TRACEBACK)),
        "json_safe event fields": lambda: json_safe(fields),
    }
    for name, fn in cases.items():
        print(f"{name:<34} {best(fn, args.calls, args.repeat) * 1e6:8.1f} us")


if __name__ == "__main__":
    main()
