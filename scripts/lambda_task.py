"""Run an unpacked deployment package here the way the Lambda Python runtime runs it.

On Lambda the zip is unpacked, read-only, in ``/var/task``, which comes first on ``sys.path``;
the runtime's own packages come after it (boto3 and s3transfer, which the package does not
ship, and ``snapshot_restore_py`` for SnapStart's hooks on python3.12+); no bytecode can be
written. Benchmarks and tests that run a package reproduce that with:

- :func:`unpack`: the zip in a folder (its ``.pyc`` kept or left out);
- :func:`runtime_dir`: the runtime's packages, copied from this venv (pure Python) into a
  folder and compiled there by the package's interpreter (the runtime ships them compiled);
- :func:`environment`: ``PYTHONPATH`` = task, then runtime; ``PYTHONDONTWRITEBYTECODE=1``;
- :func:`zip_python`: which Python version the zip was built for (from its ``cpython-3XX``
  bytecode and extension names), to pick the interpreter with
  ``scripts.package_lambda.find_python``.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

RUNTIME_PACKAGES = ("boto3", "s3transfer", "snapshot_restore_py")
"""What the Lambda Python runtime provides beside ``/var/task`` that sipline's package lacks."""

_CACHE_TAG = re.compile(r"cpython-3(\d+)")


def zip_python(zip_path: Path) -> str:
    """Return the one Python version (``"3.12"``) the zip's bytecode and extensions are for."""
    with zipfile.ZipFile(zip_path) as package:
        found = {m for name in package.namelist() for m in _CACHE_TAG.findall(name)}
    if len(found) != 1:
        raise ValueError(f"{zip_path}: built for {sorted(found) or 'no'} Python versions")
    return f"3.{found.pop()}"


def unpack(zip_path: Path, task: Path, keep_pyc: bool = True) -> Path:
    """Unpack ``zip_path`` into ``task`` (without its ``.pyc`` unless ``keep_pyc``)."""
    with zipfile.ZipFile(zip_path) as package:
        names = [n for n in package.namelist() if keep_pyc or not n.endswith(".pyc")]
        package.extractall(task, members=names)
    return task


def runtime_dir(directory: Path, interpreter: str) -> Path:
    """Fill ``directory`` with the runtime's packages, compiled by ``interpreter``."""
    directory.mkdir(parents=True, exist_ok=True)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in RUNTIME_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError(f"{name} is not installed in this venv")
        origin = Path(spec.origin)
        if spec.submodule_search_locations:  # a package: its folder
            shutil.copytree(origin.parent, directory / name, ignore=skip, dirs_exist_ok=True)
        else:
            shutil.copy2(origin, directory / origin.name)
    subprocess.run(
        [interpreter, "-m", "compileall", "-q", str(directory)],
        capture_output=True,
        check=True,
        timeout=300,
    )
    return directory


def environment(task: Path, runtime: Path) -> dict[str, str]:
    """The variables that lay out ``sys.path`` as Lambda does and keep ``task`` read-only."""
    return {"PYTHONPATH": f"{task}:{runtime}", "PYTHONDONTWRITEBYTECODE": "1"}
