"""Package the control plane for Lambda: ``chalice package``, offline if asked, with bytecode.

``python -m scripts.package_lambda OUT [--stage dev] [--wheelhouse DIR [--fetch]]`` writes
``OUT/sam.json`` (the SAM template) and ``OUT/deployment.zip`` (the code), in three steps:

1. **Wheelhouse** (``--fetch``, online, once): ``pip download`` every wheel ``requirements.txt``
   needs *for the Lambda platform* into ``DIR``: CPython of the runtime's version, manylinux up
   to the runtime's glibc (2.26 for python3.11 on Amazon Linux 2, 2.34 for python3.12+ on Amazon
   Linux 2023; the same table as Chalice's packager), binary wheels only.
2. **Package**: ``chalice package --pkg-format cloudformation``. With ``--wheelhouse`` it runs
   with ``PIP_NO_INDEX=1`` and ``PIP_FIND_LINKS=DIR``, so Chalice's own ``pip download`` reads the
   wheelhouse and nothing else: packaging then needs no network.
3. **Bytecode**: Chalice zips ``.py`` files only, and Lambda's ``/var/task`` is read-only, so
   every cold start would compile every module it imports (``bench/README.md`` measures what that
   costs). Each ``.py`` in the zip gets its ``__pycache__/<name>.cpython-3XX.pyc``, compiled by
   this interpreter, which must be the runtime's version (refused otherwise: another version's
   ``.pyc`` would be ignored). They are *unchecked-hash* ``.pyc`` (PEP 552): valid whatever the
   files' times, which a zip round-trip changes, and never checked against the source, which on
   Lambda cannot change. Code objects name ``/var/task/...`` so tracebacks point at real paths.

The same steps serve a CDK stack: :func:`build_wheelhouse` and :func:`add_bytecode` are plain
functions. docs/deployment.md explains the choices.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import py_compile
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TASK_ROOT = "/var/task"
"""Where Lambda unpacks the code (``LAMBDA_TASK_ROOT``)."""

RUNTIME_GLIBC = {"3.11": (2, 26), "3.12": (2, 34), "3.13": (2, 34), "3.14": (2, 34)}
"""The glibc of each Lambda Python runtime's OS: Amazon Linux 2 (3.11), Amazon Linux 2023 (3.12+)."""

ARCHITECTURES = {"x86_64": "x86_64", "arm64": "aarch64"}
"""Lambda's architecture name -> the machine in wheel tags."""


class PackageError(Exception):
    """A step failed; the message says which and why."""


def runtime_version() -> str:
    """This interpreter's ``major.minor``: Chalice picks the Lambda runtime from it."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def platforms(python: str, architecture: str = "x86_64") -> list[str]:
    """The wheel platform tags the Lambda runtime ``python`` on ``architecture`` can load."""
    if python not in RUNTIME_GLIBC:
        raise PackageError(f"no Lambda runtime python{python} known")
    major, minor = RUNTIME_GLIBC[python]
    machine = ARCHITECTURES[architecture]
    tags = [f"manylinux_{major}_{m}_{machine}" for m in range(minor, 16, -1)]
    return [*tags, f"manylinux2014_{machine}"]


def build_wheelhouse(
    directory: Path,
    requirements: Path = ROOT / "requirements.txt",
    python: str | None = None,
    architecture: str = "x86_64",
) -> None:
    """``pip download`` the Lambda platform's wheels of ``requirements`` into ``directory``."""
    python = python or runtime_version()
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:"]
    command += ["--implementation", "cp", "--python-version", python, "-d", str(directory)]
    for tag in platforms(python, architecture):
        command += ["--platform", tag]
    command += ["-r", str(requirements)]
    _run(command, os.environ, "pip download (the wheelhouse)")


def chalice_package(
    out: Path, project: Path = ROOT, stage: str = "dev", wheelhouse: Path | None = None
) -> None:
    """Run ``chalice package`` for ``project`` into ``out`` (from ``wheelhouse`` only, if given)."""
    env = dict(os.environ)
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # chalice builds boto3 sessions; no call
    if wheelhouse is not None:
        env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheelhouse.resolve()))
    chalice = Path(sys.executable).with_name("chalice")
    command = [str(chalice), "--project-dir", str(project), "package"]
    command += ["--pkg-format", "cloudformation", "--stage", stage, str(out)]
    _run(command, env, "chalice package")


def template_runtime(template: Mapping[str, object]) -> str:
    """The one Python version every function of a SAM template runs (``"3.11"``)."""
    resources = template.get("Resources", {})
    assert isinstance(resources, dict)
    runtimes = {
        str(resource["Properties"]["Runtime"])
        for resource in resources.values()
        if resource.get("Type") == "AWS::Serverless::Function"
    }
    if len(runtimes) != 1 or not next(iter(runtimes)).startswith("python"):
        raise PackageError(f"expected one Python runtime in the template, found {runtimes}")
    return next(iter(runtimes)).removeprefix("python")


def add_bytecode(zip_path: Path, python: str) -> int:
    """Add an unchecked-hash ``.pyc`` beside every ``.py`` of ``zip_path``; return how many.

    Raises PackageError if this interpreter is not ``python`` (the runtime's version) or if a
    module does not compile.
    """
    if python != runtime_version():
        raise PackageError(
            f"the package is for python{python}; compile its bytecode with that Python,"
            f" not {runtime_version()}"
        )
    with tempfile.TemporaryDirectory(prefix="sipline-pyc-") as scratch:
        tree = Path(scratch) / "task"
        with zipfile.ZipFile(zip_path) as source:
            entries = source.infolist()
            source.extractall(tree)
        compiled = compileall.compile_dir(
            tree,
            ddir=TASK_ROOT,
            quiet=2,
            workers=1,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
        pycs = sorted(p for p in tree.rglob("*.pyc") if p.parent.name == "__pycache__")
        if not compiled:
            failed = [e.filename for e in entries if e.filename.endswith(".py")]
            failed = [f for f in failed if not _cached(tree / f).exists()]
            raise PackageError(f"{len(failed)} modules do not compile, e.g. {failed[:5]}")
        rebuilt = zip_path.with_suffix(".tmp")
        with zipfile.ZipFile(rebuilt, "w", zipfile.ZIP_DEFLATED) as target:
            for entry in entries:
                target.writestr(entry, (tree / entry.filename).read_bytes())
            for pyc in pycs:
                info = zipfile.ZipInfo(pyc.relative_to(tree).as_posix(), (1980, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                target.writestr(info, pyc.read_bytes())
        rebuilt.replace(zip_path)
    return len(pycs)


def _cached(source: Path) -> Path:
    import importlib.util

    return Path(importlib.util.cache_from_source(str(source)))


def package(
    out: Path, project: Path = ROOT, stage: str = "dev", wheelhouse: Path | None = None
) -> int:
    """Steps 2 and 3 into ``out``; return how many ``.pyc`` the zip got."""
    if out.exists():
        shutil.rmtree(out)
    chalice_package(out, project, stage, wheelhouse)
    template = json.loads((out / "sam.json").read_text())
    return add_bytecode(out / "deployment.zip", template_runtime(template))


def _run(command: list[str], env: Mapping[str, str], what: str) -> None:
    done = subprocess.run(command, env=dict(env), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PackageError(f"{what} failed ({done.returncode}):\n{done.stderr[-4000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.package_lambda", description=__doc__)
    parser.add_argument("out", type=Path, help="output directory (replaced)")
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--wheelhouse", type=Path, help="package from these wheels only (offline)")
    parser.add_argument("--fetch", action="store_true", help="fill the wheelhouse first (online)")
    args = parser.parse_args(argv)
    try:
        if args.fetch:
            if args.wheelhouse is None:
                parser.error("--fetch needs --wheelhouse")
            build_wheelhouse(args.wheelhouse)
        count = package(args.out, stage=args.stage, wheelhouse=args.wheelhouse)
    except PackageError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"{args.out}/sam.json, {args.out}/deployment.zip ({count} .pyc files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
