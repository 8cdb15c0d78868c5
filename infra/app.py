"""The CDK app's entry: ``cdk synth|deploy [-c stage=prod] [-c key=value ...]`` from ``infra/``.

Reads the stage's settings from context (``sipline_infra/config.py``), gets the control plane's
Lambda package (``sipline_infra/lambda_package.py``: a given ``-c package_dir`` or a fresh build),
builds the stage's stack and runs cdk-nag's AwsSolutions rules on it: a finding that is not
acknowledged, with its reason, next to the construct it concerns fails the synth.
Importable: :func:`build` returns the app without synthesizing it.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "infra"):  # chalicelib (the table's definition) and sipline_infra
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import aws_cdk as cdk  # noqa: E402
from cdk_nag import AwsSolutionsChecks  # noqa: E402
from sipline_infra.config import StageConfig  # noqa: E402
from sipline_infra.lambda_package import PYTHON, ensure_package, read_package  # noqa: E402
from sipline_infra.stack import SiplineStack  # noqa: E402


def build(app: cdk.App | None = None) -> tuple[cdk.App, SiplineStack]:
    """Return the app with its one stack and cdk-nag attached (not yet synthesized)."""
    app = app or cdk.App()
    config = StageConfig.from_context(app.node.try_get_context)
    package = read_package(ensure_package(config))
    stack = SiplineStack(app, config=config, package=package)
    if package.runtime != f"python{PYTHON}":
        cdk.Annotations.of(stack).add_warning_v2(
            "sipline:package-runtime",
            f"the Lambda package was built for {package.runtime}, the functions run"
            f" python{PYTHON}: its wheels and bytecode do not match (rebuild it for {PYTHON})",
        )
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack


if __name__ == "__main__":
    build()[0].synth()
