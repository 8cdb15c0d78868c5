"""Build the control plane's Lambda package for tests: a cached wheelhouse, then offline packaging.

The wheelhouse is the only step that needs the package registry: :func:`cached_wheelhouse` fills
``.wheelhouse/lambda-py<version>-<hash of requirements.txt>`` (ignored by git) once, through a
scratch folder renamed into place, so an interrupted download never leaves a half wheelhouse
behind and a changed ``requirements.txt`` gets a new one. :func:`package_offline` then runs
``scripts.package_lambda.package`` in a network namespace with no interface (``unshare -n``): a
fetch fails at once, so a passing build proves the wheelhouse is enough.
``tests/integration/test_chalice_package.py`` builds its own uncached wheelhouse on purpose (it
proves a clean clone packages).
"""

from __future__ import annotations

import hashlib
import inspect
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from scripts import package_lambda

ROOT = Path(__file__).resolve().parents[2]
STEP_TIMEOUT_S = 300


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run ``command``; fail the test with its output when it does not exit 0."""
    done = subprocess.run(
        command,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return done.stdout


def target_python() -> str:
    """The Python the package is built for: 3.12 once ``package()`` takes ``python=``; before
    that, the interpreter running it (it compiles the bytecode)."""
    if "python" in inspect.signature(package_lambda.package).parameters:
        return "3.12"
    return package_lambda.runtime_version()


def cached_wheelhouse(python: str) -> Path:
    """The Lambda platform's wheels of ``requirements.txt`` for ``python`` (online once)."""
    digest = hashlib.sha256((ROOT / "requirements.txt").read_bytes()).hexdigest()[:12]
    wheelhouse = ROOT / ".wheelhouse" / f"lambda-py{python}-{digest}"
    if wheelhouse.is_dir():
        return wheelhouse
    wheelhouse.parent.mkdir(exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".filling-", dir=wheelhouse.parent))
    try:
        fetch = (
            "import sys; from pathlib import Path; from scripts.package_lambda import"
            " build_wheelhouse; build_wheelhouse(Path(sys.argv[1]), python=sys.argv[2])"
        )
        run([sys.executable, "-c", fetch, str(scratch), python], ROOT)
        scratch.rename(wheelhouse)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return wheelhouse


def package_offline(out: Path, wheelhouse: Path, python: str) -> Path:
    """``scripts.package_lambda.package`` into ``out`` with no network; return ``out``."""
    takes_python = "python" in inspect.signature(package_lambda.package).parameters
    argument = ", python=sys.argv[3]" if takes_python else ""
    build = (
        "import sys; from pathlib import Path; from scripts.package_lambda import package;"
        f" package(Path(sys.argv[1]), wheelhouse=Path(sys.argv[2]){argument})"
    )
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1"}
    command = ["unshare", "-n", sys.executable, "-c", build, str(out), str(wheelhouse), python]
    run(command, ROOT, env)
    return out
