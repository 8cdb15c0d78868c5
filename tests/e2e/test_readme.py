"""README's walk-through runs as written against the local stack."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from scripts.localstack import ROOT, LocalStack

pytestmark = pytest.mark.e2e
URL_LINE = "export SIPLINE_API_URL=http://127.0.0.1:8000\n"
KEY_LINE_PREFIX = "export SIPLINE_API_KEY=$(python3 -c"


def walkthrough() -> str:
    text = (ROOT / "README.md").read_text()
    block = re.search(
        r"<!-- walkthrough:start -->\n```bash\n(.*?)```\n<!-- walkthrough:end -->", text, re.S
    )
    assert block, "README.md lost its walk-through markers"
    return block.group(1)


def test_readme_walkthrough_works_as_written(stack: LocalStack, tmp_path: Path) -> None:
    script = walkthrough()
    assert URL_LINE in script and KEY_LINE_PREFIX in script
    # Only the two lines that name the stack change: the test's stack runs on other ports.
    lines = [
        f"export SIPLINE_API_URL={stack.api_url}\n"
        if line == URL_LINE
        else f"export SIPLINE_API_KEY={stack.credentials.api_key}\n"
        if line.startswith(KEY_LINE_PREFIX)
        else line
        for line in script.splitlines(keepends=True)
    ]
    env = {**os.environ, "SIPLINE_WEBHOOK_SECRET": stack.credentials.webhook_secret}
    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", "".join(lines)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert '"field":"allowedCidrRanges[0]"' in out
    assert '"customer_name":"Bob"' in out
    assert "'billedDuration': '66s'" in out
    assert '"totalSipMinutes":' in out
    assert "trunk-pass" not in out and "s3cret" not in out
    assert "InternalServerError" not in out
    assert out.rstrip().endswith("}") and '"total":' in out.splitlines()[-1]
    assert '"registrationId":' in out
