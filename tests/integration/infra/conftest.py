"""One synth of the CDK app per test session, offline, shared by every test of ``infra/``.

1. The Lambda package: the wheelhouse comes from the package registry once and is cached under
   ``.wheelhouse/`` (``tests/support/lambda_package.py``); packaging runs under ``unshare -n``.
2. The synth: ``python infra/app.py`` in a network namespace with no interface, with
   ``CDK_OUTDIR`` a scratch folder and the context (``CDK_CONTEXT_JSON``) naming that package,
   so nothing is written in the repository and nothing is fetched. cdk-nag runs inside it: an
   unacknowledged finding makes the synth fail and is listed in ``validation-report.json``.

Fixtures: ``synth`` (the run's result, even a failed one, for the cdk-nag test), ``cdk_out``
(the cloud assembly folder, written even when cdk-nag then fails the synth), ``template`` (the stack's template as
``aws_cdk.assertions.Template``) and ``template_json`` (the same as a dict). CDK needs node
(jsii runs the library in it): without node these tests fail, they do not skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.lambda_package import ROOT, cached_wheelhouse, package_offline, target_python

STAGE = "dev"
STACK = f"Sipline-{STAGE}"
SYNTH_TIMEOUT_S = 300
JSII_ENV = {
    "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class Synth:
    """One run of ``infra/app.py``."""

    returncode: int
    output: str
    out_dir: Path
    package_dir: Path


def _require_node() -> None:
    if shutil.which("node") is None:
        pytest.fail("node is not installed: CDK's jsii runtime needs it (scripts/system-deps.sh)")


@pytest.fixture(scope="session")
def lambda_package_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``deployment.zip`` and ``sam.json`` built offline from the cached wheelhouse."""
    python = target_python()
    wheelhouse = cached_wheelhouse(python)
    return package_offline(tmp_path_factory.mktemp("lambda") / "package", wheelhouse, python)


@pytest.fixture(scope="session")
def synth(lambda_package_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Synth:
    _require_node()
    out_dir = tmp_path_factory.mktemp("cdk") / "cdk.out"
    env = {
        **os.environ,
        **JSII_ENV,
        "CDK_OUTDIR": str(out_dir),
        "CDK_CONTEXT_JSON": json.dumps({"stage": STAGE, "package_dir": str(lambda_package_dir)}),
    }
    command = ["unshare", "-n", sys.executable, "app.py"]
    done = subprocess.run(
        command,
        cwd=ROOT / "infra",
        env=env,
        capture_output=True,
        text=True,
        timeout=SYNTH_TIMEOUT_S,
        check=False,
    )
    return Synth(done.returncode, done.stdout + done.stderr, out_dir, lambda_package_dir)


@pytest.fixture(scope="session")
def cdk_out(synth: Synth) -> Path:
    """The cloud assembly folder. cdk-nag's findings fail the synth after the template is written,
    so the other tests still read it and each says what it checks; only an error before that
    (no template) fails them all. ``test_static_checks.py`` requires the synth's success."""
    template = synth.out_dir / f"{STACK}.template.json"
    assert template.is_file(), f"synth failed:\n{synth.output[-8000:]}"
    return synth.out_dir


@pytest.fixture(scope="session")
def template_json(cdk_out: Path) -> dict[str, Any]:
    template: dict[str, Any] = json.loads((cdk_out / f"{STACK}.template.json").read_text())
    return template


@pytest.fixture(scope="session")
def template(template_json: dict[str, Any]) -> Any:
    """``aws_cdk.assertions.Template`` of the stack (jsii: node runs in this process)."""
    _require_node()
    os.environ.update(JSII_ENV)
    from aws_cdk.assertions import Template

    return Template.from_json(template_json)
