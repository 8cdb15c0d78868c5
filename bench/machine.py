"""The machine a benchmark ran on, printed above its figures so that they can be compared.

``python -m bench.machine`` prints it alone.
"""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from pathlib import Path

_CPUINFO = Path("/proc/cpuinfo")


def cpu_model() -> str:
    """Return the CPU model named by /proc/cpuinfo (else what ``platform`` knows)."""
    try:
        text = _CPUINFO.read_text()
    except OSError:
        return platform.processor() or platform.machine() or "unknown"
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "model name" and value.strip():
            return value.strip()
    return platform.machine() or "unknown"


def usable_cores() -> int:
    """Return the cores this process may run on (its affinity mask, else the CPU count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def describe() -> dict[str, str]:
    """Return the machine's description as ordered ``name -> value`` pairs."""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cores": str(usable_cores()),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "load": load_average(),
    }


def load_average() -> str:
    """Return the 1, 5 and 15 minute load averages: how shared the machine was when measured."""
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def banner(title: str) -> str:
    """Return a benchmark's heading: its title, then one line per machine fact."""
    width = max(len(name) for name in describe())
    facts = [f"  {name:<{width}}  {value}" for name, value in describe().items()]
    return "\n".join([title, "=" * len(title), *facts, ""])


def main() -> None:
    """Print the machine."""
    print(banner("machine"))


if __name__ == "__main__":
    main()
