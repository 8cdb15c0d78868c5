"""Reading Chalice's ``sam.json``: the functions by handler and the swagger pointed at a function.

The sample is the shape ``chalice package --pkg-format cloudformation`` writes (one route shown;
tests/integration/infra reads a real one).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sipline_infra.lambda_package import (
    PackageMissing,
    intrinsics,
    point_swagger_at,
    read_package,
)

URI = {
    "Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/"
    "functions/${APIHandler.Arn}/invocations"
}


def sam() -> dict[str, Any]:
    integration = {"type": "aws_proxy", "httpMethod": "POST", "uri": URI}
    return {
        "Resources": {
            "APIHandler": {
                "Type": "AWS::Serverless::Function",
                "Properties": {
                    "Runtime": "python3.12",
                    "Handler": "app.app",
                    "MemorySize": 512,
                    "Timeout": 15,
                    "Architectures": ["x86_64"],
                    "Environment": {"Variables": {"POWERTOOLS_SERVICE_NAME": "x"}},
                },
            },
            "ReapCalls": {
                "Type": "AWS::Serverless::Function",
                "Properties": {"Runtime": "python3.12", "Handler": "app.reap_calls", "Timeout": 60},
            },
            "RestAPI": {
                "Type": "AWS::Serverless::Api",
                "Properties": {
                    "StageName": "api",
                    "DefinitionBody": {
                        "swagger": "2.0",
                        "paths": {
                            "/health": {"get": {"x-amazon-apigateway-integration": integration}}
                        },
                    },
                },
            },
        }
    }


def write(directory: Path, template: dict[str, Any]) -> Path:
    (directory / "sam.json").write_text(json.dumps(template))
    (directory / "deployment.zip").write_bytes(b"PK\x05\x06" + bytes(18))
    return directory


def test_functions_are_read_by_handler_with_chalices_settings(tmp_path: Path) -> None:
    package = read_package(write(tmp_path, sam()))
    assert package.runtime == "python3.12" and package.stage_name == "api"
    assert package.api_function_logical_id == "APIHandler"
    api, reaper = package.functions["app.app"], package.functions["app.reap_calls"]
    assert (api.memory_mb, api.timeout_s, api.architecture) == (512, 15, "x86_64")
    assert api.environment == {"POWERTOOLS_SERVICE_NAME": "x"}
    assert (reaper.memory_mb, reaper.timeout_s) == (128, 60)  # Lambda's defaults where unset


def test_the_swagger_points_at_the_given_function_and_keeps_no_intrinsic(tmp_path: Path) -> None:
    package = read_package(write(tmp_path, sam()))
    assert intrinsics(package.swagger) == ["Fn::Sub"]
    pointed = point_swagger_at(package.swagger, "APIHandler", "arn:of:the:function")
    integration = pointed["paths"]["/health"]["get"]["x-amazon-apigateway-integration"]
    assert integration["uri"] == "arn:of:the:function"
    assert intrinsics(pointed) == []
    assert point_swagger_at(package.swagger, "Other", "arn") == package.swagger


def test_a_missing_file_or_handler_is_named(tmp_path: Path) -> None:
    with pytest.raises(PackageMissing, match="deployment.zip is missing"):
        read_package(tmp_path)
    template = sam()
    del template["Resources"]["ReapCalls"]
    with pytest.raises(ValueError, match=r"missing \['app.reap_calls'\]"):
        read_package(write(tmp_path, template))
