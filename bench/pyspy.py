"""Sample a running Python process with ``py-spy record`` and summarize where its CPU goes.

Used by ``bench/relay_calls.py`` on the relay. ``py-spy`` (the venv's, else ``$PATH``'s) needs
ptrace rights on the target; without them, or without py-spy, the summary says so.
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import sys
from pathlib import Path


def record_profile(pid: int, duration_s: int, raw: Path) -> str:
    """Record ``pid`` for ``duration_s`` at 200 Hz into ``raw``; return the summary text."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return "py-spy is not installed: no profile"
    subprocess.run(
        ["timeout", "-k", "3", str(duration_s + 20), spy, "record", "--pid", str(pid),
         "--duration", str(duration_s), "--rate", "200", "--format", "raw", "--nonblocking",
         "--output", str(raw)],
        capture_output=True, check=False,
    )  # fmt: skip
    if not raw.exists():
        return "py-spy recorded nothing (ptrace not permitted?)"
    return summarize_profile(raw.read_text())


def _frame_name(frame: str) -> str:
    # py-spy raw frames: "function (path/to/file.py:line)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})"


def summarize_profile(text: str) -> str:
    """Return self time and inclusive time per frame of py-spy's raw (collapsed) output."""
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = [_frame_name(frame) for frame in stack.split(";")]
        if frames and frames[0].startswith("process "):
            frames = frames[1:]
        if frames and frames[0].startswith("thread "):
            frames = frames[1:]
        total += samples
        if frames:
            self_time[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    if not total:
        return "py-spy: no samples"
    lines = [f"py-spy: {total} samples of the relay (idle samples dropped)", "", "self time:"]
    lines += [f"  {100 * n / total:5.1f} %  {name}" for name, n in self_time.most_common(15)]
    lines += ["", "inclusive (relay/ and asyncio/websockets entry points):"]
    shown = 0
    for name, n in inclusive.most_common(200):
        if ("relay/" in name or "websockets/" in name or "asyncio/" in name) and shown < 25:
            lines.append(f"  {100 * n / total:5.1f} %  {name}")
            shown += 1
    return "\n".join(lines)
