"""The control plane's Lambda package, as ``scripts/package_lambda.py`` writes it, read for CDK.

``chalice package`` (through ``scripts.package_lambda.package``) is the one builder of the code:
it writes ``deployment.zip`` and ``sam.json``. The CDK app does not restate what Chalice derived
from ``app.py`` and ``.chalice/config.json``; it reads it from ``sam.json``:

- each function's handler, memory, timeout, architecture and environment (``APIHandler`` is
  ``app.app``, ``ReapCalls`` is ``app.reap_calls``);
- the REST API's swagger, ``Resources.RestAPI.Properties.DefinitionBody``, whose integrations
  name the API function with ``Fn::Sub`` (``${APIHandler.Arn}``), and its stage name (``api``).

Where the package comes from: ``-c package_dir=DIR`` names one already built (the tests build
it once per session, offline); otherwise the app builds one into ``infra/build/lambda-<stage>``
at every synth, so a deploy never ships stale code. ``-c wheelhouse=DIR`` makes that build
offline. The package targets :data:`PYTHON` when ``package()`` takes a ``python`` argument (the
3.12 packager); an older ``package()`` builds for the interpreter running it, which
:func:`read_package` reports as :attr:`LambdaPackage.runtime` so the stack can warn.
"""

from __future__ import annotations

import inspect
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sipline_infra.config import ROOT, StageConfig

PYTHON = "3.12"
"""The Lambda runtime's Python (docs/deployment.md, "The CDK app")."""
API_HANDLER = "app.app"
REAPER_HANDLER = "app.reap_calls"


class PackageMissing(FileNotFoundError):
    """The package directory lacks ``deployment.zip`` or ``sam.json``."""


@dataclass(frozen=True)
class FunctionSpec:
    """What ``sam.json`` says about one function."""

    handler: str
    memory_mb: int
    timeout_s: int
    architecture: str
    environment: dict[str, str]


@dataclass(frozen=True)
class LambdaPackage:
    """A built package: the zip, its functions by handler, the swagger and the stage name."""

    zip_path: Path
    runtime: str
    """``python3.11`` / ``python3.12``: what the zip's wheels and bytecode were built for."""
    functions: dict[str, FunctionSpec]
    swagger: dict[str, Any]
    stage_name: str
    api_function_logical_id: str
    """The name ``sam.json``'s swagger refers to the API function by (``APIHandler``)."""


def ensure_package(config: StageConfig) -> Path:
    """Return the package directory: ``config.lambda_package_dir``, or a fresh build."""
    if config.lambda_package_dir is not None:
        return config.lambda_package_dir
    out = ROOT / "infra" / "build" / f"lambda-{config.stage}"
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from scripts.package_lambda import package

    arguments: dict[str, Any] = {"project": ROOT, "wheelhouse": config.wheelhouse}
    if "python" in inspect.signature(package).parameters:
        arguments["python"] = PYTHON
    package(out, **arguments)
    return out


def read_package(directory: Path) -> LambdaPackage:
    """Read ``directory``'s ``sam.json``; raise PackageMissing when a file is absent."""
    zip_path, template_path = directory / "deployment.zip", directory / "sam.json"
    for path in (zip_path, template_path):
        if not path.is_file():
            raise PackageMissing(
                f"{path} is missing: build it with `python -m scripts.package_lambda {directory}`"
                " or drop -c package_dir to let the app build it"
            )
    resources: dict[str, Any] = json.loads(template_path.read_text())["Resources"]
    functions: dict[str, FunctionSpec] = {}
    runtimes = set()
    api_id = ""
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        properties = resource["Properties"]
        runtimes.add(properties["Runtime"])
        spec = FunctionSpec(
            handler=properties["Handler"],
            memory_mb=int(properties.get("MemorySize", 128)),
            timeout_s=int(properties.get("Timeout", 3)),
            architecture=(properties.get("Architectures") or ["x86_64"])[0],
            environment=dict(properties.get("Environment", {}).get("Variables", {})),
        )
        functions[spec.handler] = spec
        if spec.handler == API_HANDLER:
            api_id = logical_id
    missing = {API_HANDLER, REAPER_HANDLER} - set(functions)
    if missing or len(runtimes) != 1:
        raise ValueError(
            f"{template_path}: expected handlers app.app and app.reap_calls on one"
            f" runtime (missing {sorted(missing)}, runtimes {sorted(runtimes)})"
        )
    api = resources["RestAPI"]["Properties"]
    return LambdaPackage(
        zip_path=zip_path,
        runtime=runtimes.pop(),
        functions=functions,
        swagger=api["DefinitionBody"],
        stage_name=api["StageName"],
        api_function_logical_id=api_id,
    )


def point_swagger_at(swagger: Any, function_logical_id: str, invoke_arn: str) -> Any:
    """Return ``swagger`` with each ``Fn::Sub`` URI naming ``function_logical_id`` replaced by
    ``invoke_arn`` (the integration URI of the function, alias or version behind the API)."""
    if isinstance(swagger, dict):
        sub = swagger.get("Fn::Sub")
        if len(swagger) == 1 and isinstance(sub, str) and f"${{{function_logical_id}.Arn}}" in sub:
            return invoke_arn
        return {k: point_swagger_at(v, function_logical_id, invoke_arn) for k, v in swagger.items()}
    if isinstance(swagger, list):
        return [point_swagger_at(item, function_logical_id, invoke_arn) for item in swagger]
    return swagger


def intrinsics(swagger: Any) -> list[str]:
    """Every CloudFormation intrinsic (``Fn::``/``Ref``) left in ``swagger`` (should be none)."""
    found: list[str] = []
    if isinstance(swagger, dict):
        found += [k for k in swagger if k.startswith("Fn::") or k == "Ref"]
        for value in swagger.values():
            found += intrinsics(value)
    elif isinstance(swagger, list):
        for item in swagger:
            found += intrinsics(item)
    return found
