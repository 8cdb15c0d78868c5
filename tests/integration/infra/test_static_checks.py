"""The synthesized stack passes the static checkers, with every exception argued where it is made.

- **cdk-nag** (AwsSolutions) runs inside the synth: the report lists no finding, and every
  acknowledgment carries a reason (``infra/sipline_infra/checks.py``).
- **cfn-lint** on the template: exit 0, ignoring only W3005 (a ``DependsOn`` CDK itself writes
  beside a ``GetAtt`` that already implies it).
- **checkov** on the template and on ``relay/Dockerfile``: no failed check. Its skips in the
  template are CloudFormation metadata with a comment each (``skip_checkov``); the Dockerfile's
  one skip is in ``.checkov.yaml`` with its reason. checkov lives in its own venv
  (``.venv-tools/checkov``, made by ``make``'s setup: it pins boto3 below what the project uses),
  and runs with no network (``unshare -n``, ``--skip-download``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.integration.infra.conftest import STACK, Synth
from tests.support.lambda_package import ROOT

CHECKOV = ROOT / ".venv-tools" / "checkov" / "bin" / "checkov"
CHECK_TIMEOUT_S = 240


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT_S,
        check=False,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )


def test_cdk_nag_reports_no_unacknowledged_finding(synth: Synth) -> None:
    # CDK writes this report only when a validation plugin (cdk-nag) ran; it lists plugins with
    # findings only, so a clean run lists none.
    report = json.loads((synth.out_dir / "validation-report.json").read_text())
    findings = [v for plugin in report["pluginReports"] for v in plugin["violations"]]
    assert findings == [], json.dumps(findings, indent=1)[:4000]
    assert synth.returncode == 0, synth.output[-4000:]


def test_every_acknowledgment_has_a_reason(cdk_out: Path) -> None:
    metadata = json.loads((cdk_out / f"{STACK}.metadata.json").read_text())
    reasons = [
        (path, rule, reason)
        for path, entries in metadata.items()
        for entry in entries
        if entry["type"] == "aws:cdk:acknowledged-rules"
        for rule, reason in entry["data"].items()
    ]
    assert (
        len(reasons) >= 10
    )  # the control plane's and the state's alone (state.py, control_plane.py)
    for path, rule, reason in reasons:
        assert len(reason) >= 60, (path, rule, reason)


def test_cfn_lint_passes(cdk_out: Path) -> None:
    lint = Path(sys.executable).with_name("cfn-lint")
    done = _run(
        [str(lint), "--ignore-checks", "W3005", "--", str(cdk_out / f"{STACK}.template.json")]
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def _checkov(target: Path, framework: str) -> dict[str, Any]:
    assert CHECKOV.is_file(), f"{CHECKOV} is missing: run `make` (its setup makes that venv)"
    command = ["unshare", "-n", str(CHECKOV), "--file", str(target), "--framework", framework]
    command += ["--skip-download", "--compact", "--output", "json"]
    command += ["--config-file", str(ROOT / ".checkov.yaml")]
    done = _run(command)
    assert done.returncode in (0, 1), done.stderr[-4000:]
    result = json.loads(done.stdout)
    results: dict[str, Any] = result["results"]
    return results


def test_checkov_finds_nothing_in_the_template(cdk_out: Path) -> None:
    results = _checkov(cdk_out / f"{STACK}.template.json", "cloudformation")
    failed = [(c["check_id"], c["resource"]) for c in results["failed_checks"]]
    assert failed == []
    assert len(results["passed_checks"]) > 20
    for skipped in results["skipped_checks"]:
        assert len(skipped["check_result"]["suppress_comment"]) >= 60, skipped["check_id"]


def test_checkov_finds_nothing_in_the_relay_dockerfile() -> None:
    results = _checkov(ROOT / "relay" / "Dockerfile", "dockerfile")
    assert [c["check_id"] for c in results["failed_checks"]] == []
    assert len(results["passed_checks"]) > 20
