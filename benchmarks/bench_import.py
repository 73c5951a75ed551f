"""Import cost of `import paios_reliability`, beside the peer libraries.

Runs `python -X importtime -c "import X"` several times per package in fresh
interpreters and reports the median cumulative import time (µs) of the
package's top-level module, plus its ratio to ours. Hooks and CLIs are
short-lived processes, so this is paid on every invocation.
"""

from __future__ import annotations

import importlib.util
import statistics
import subprocess
import sys

RUNS = 15
PACKAGES = [
    "paios_reliability",
    "tenacity",
    "stamina",
    "pybreaker",
    "structlog",
    "pydantic",
]


def cumulative_us(module: str) -> int:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
    )
    for line in proc.stderr.splitlines():
        parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[2] == module:
            return int(parts[1])
    raise RuntimeError(f"no importtime line for {module}")


def main() -> None:
    results: dict[str, float] = {}
    for name in PACKAGES:
        if importlib.util.find_spec(name) is None:
            print(f"{name:<20} not installed")
            continue
        results[name] = statistics.median(cumulative_us(name) for _ in range(RUNS))
    ours = results["paios_reliability"]
    print(
        f"import time, median of {RUNS} fresh interpreters (python {sys.version.split()[0]})"
    )
    print(f"{'package':<20}{'µs':>10}{'x ours':>10}")
    for name, us in sorted(results.items(), key=lambda kv: kv[1]):
        print(f"{name:<20}{us:>10.0f}{us / ours:>10.1f}")
    budget_ms = 15.0
    verdict = "within" if ours / 1000 <= budget_ms else "OVER"
    print(
        f"paios_reliability: {ours / 1000:.2f} ms ({verdict} the {budget_ms:.0f} ms budget)"
    )


if __name__ == "__main__":
    main()
