"""The ``prod``-like stage of the CDK app, synthesized in this process, and template look-ups.

conftest.py's session synth is the default ``dev`` stage (no TLS, SIP from anywhere, no alarm
email). The edge and the alarms change with the stage's settings, so :func:`prod` synthesizes
``infra/app.py``'s app a second time, in this process (jsii already runs here for
``Template``), with every setting the edge reads turned on: a TLS secret, carriers' ranges, an
alarm email, retained data. cdk-nag runs as in the real synth: a finding fails it.
"""

from __future__ import annotations

import importlib.util
import json
import os
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

_PROD: dict[str, Any] = {}


def prod(package_dir: Path, outdir: Path) -> tuple[Any, dict[str, Any]]:
    """(the SiplineStack object, its template) of the prod-like stage, synthesized once."""
    if not _PROD:
        os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        import aws_cdk as cdk

        spec = importlib.util.spec_from_file_location("sipline_cdk_app", ROOT / "infra" / "app.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        context = {**PROD_CONTEXT, "package_dir": str(package_dir)}
        app, stack = module.build(cdk.App(context=context, outdir=str(outdir)))
        app.synth()  # raises on an unacknowledged cdk-nag finding
        template = json.loads((outdir / f"{stack.stack_name}.template.json").read_text())
        _PROD.update(stack=stack, template=template, outdir=outdir)
    return _PROD["stack"], _PROD["template"]


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
