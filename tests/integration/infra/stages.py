"""The ``prod``-like stage of the CDK app, synthesized offline, and template look-ups.

conftest.py's session synth is the default ``dev`` stage (no TLS, SIP from anywhere, no alarm
email). The edge and the alarms change with the stage's settings, so :func:`prod` runs
``infra/app.py`` a second time, as conftest.py does (in a network namespace with no interface,
from the same offline Lambda package), with every setting the edge reads turned on: a TLS
secret, carriers' ranges, an alarm email, retained data. cdk-nag runs in it: a finding fails it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

TLS_SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:sipline-tls-AbCdEf"
CARRIERS = ("198.51.100.0/24", "203.0.113.0/24")
ALARM_EMAIL = "ops@example.com"
PROD_CONTEXT = {
    "stage": "prod",
    "tls_secret_arn": TLS_SECRET_ARN,
    "carrier_cidrs": ",".join(CARRIERS),
    "alarm_email": ALARM_EMAIL,
}
ROOT = Path(__file__).resolve().parents[3]
SYNTH_TIMEOUT_S = 300

_PROD: dict[str, Any] = {}


def prod(package_dir: Path, out_dir: Path) -> dict[str, Any]:
    """The template of the prod-like stage (``Sipline-prod``), synthesized once per session."""
    if not _PROD:
        env = {
            **os.environ,
            "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
            "AWS_DEFAULT_REGION": "us-east-1",
            "CDK_OUTDIR": str(out_dir),
            "CDK_CONTEXT_JSON": json.dumps({**PROD_CONTEXT, "package_dir": str(package_dir)}),
        }
        done = subprocess.run(
            ["unshare", "-n", sys.executable, "app.py"],
            cwd=ROOT / "infra",
            env=env,
            capture_output=True,
            text=True,
            timeout=SYNTH_TIMEOUT_S,
            check=False,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"prod synth failed:\n{output[-8000:]}"
        _PROD["template"] = json.loads((out_dir / "Sipline-prod.template.json").read_text())
    template: dict[str, Any] = _PROD["template"]
    return template


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    """Logical id -> resource, of every resource of type ``kind``."""
    return {n: r for n, r in template["Resources"].items() if r["Type"] == kind}


def only(template: dict[str, Any], kind: str) -> tuple[str, dict[str, Any]]:
    found = resources(template, kind)
    assert len(found) == 1, f"{kind}: {sorted(found)}"
    return next(iter(found.items()))


def named(template: dict[str, Any], kind: str, prop: str, value: str) -> str:
    """The logical id of the one ``kind`` whose property ``prop`` is ``value``."""
    (logical_id,) = [
        n for n, r in resources(template, kind).items() if r["Properties"].get(prop) == value
    ]
    return logical_id


def password_key(template: dict[str, Any], stage: str) -> str:
    """The logical id of the KMS key behind ``alias/sipline-<stage>-passwords``."""
    alias = f"alias/sipline-{stage}-passwords"
    (target,) = [
        r["Properties"]["TargetKeyId"]
        for r in resources(template, "AWS::KMS::Alias").values()
        if r["Properties"]["AliasName"] == alias
    ]
    return str(target["Ref"] if "Ref" in target else target["Fn::GetAtt"][0])
