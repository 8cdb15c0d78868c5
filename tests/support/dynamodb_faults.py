"""DynamoDB errors AWS documents but moto cannot produce, injected at the HTTP layer.

A ``before-call`` hook on a (moto-backed) boto3 client answers chosen operations, before any
request is sent, with an HTTP 400 whose JSON body is the error as DynamoDB sends it, parsed by
botocore's own parser for the operation: the store sees the very ``ClientError`` (code, message,
``CancellationReasons``) that production raises, and moto never sees the request. After
``times`` answers, requests go on to moto.

The shapes follow the DynamoDB API reference: ``TransactWriteItems`` ("Errors",
``TransactionCanceledException``, "Cancellation reason codes and possible error messages") and
"Common Errors".
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.parsers import create_parser

_PREFIX = "com.amazonaws.dynamodb.v20120810#"
REASON_MESSAGES = {
    "None": None,
    "ConditionalCheckFailed": "The conditional request failed",
    "TransactionConflict": "Transaction is ongoing for the item",
    "ThrottlingError": "Throughput exceeds the current capacity of your table or index. DynamoDB"
    " is automatically scaling your table or index so please try again shortly.",
    "ProvisionedThroughputExceeded": "The level of configured provisioned throughput for the"
    " table was exceeded. Consider increasing your provisioning level with the UpdateTable API.",
    "ValidationError": "One or more parameter values were invalid.",
}


def canceled(*reasons: str) -> dict[str, Any]:
    """A ``TransactionCanceledException`` body with one reason per action, in order."""
    listed = [
        {"Code": code} | ({"Message": message} if (message := REASON_MESSAGES[code]) else {})
        for code in reasons
    ]
    return {
        "__type": _PREFIX + "TransactionCanceledException",
        "Message": "Transaction cancelled, please refer cancellation reasons for specific"
        f" reasons [{', '.join(reasons)}]",
        "CancellationReasons": listed,
    }


def error(code: str, message: str) -> dict[str, Any]:
    """Any other DynamoDB error body (``TransactionConflictException``, throttling, ...)."""
    return {"__type": _PREFIX + code, "Message": message}


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data

    def read(self) -> bytes:
        return self._data


@contextmanager
def failing(
    client: Any, operation: str, body: dict[str, Any], *, times: int
) -> Iterator[list[int]]:
    """Answer the next ``times`` calls of ``operation`` with ``body`` (HTTP 400).

    Yields a list that gets one item per request the hook saw (failed or passed on).
    """
    seen: list[int] = []
    raw = json.dumps(body).encode()
    code = body["__type"].removeprefix(_PREFIX)

    def answer(model: Any, **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        seen.append(1)
        if len(seen) > times:
            return None
        headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-ErrorType": code}
        wire = {"status_code": 400, "headers": headers, "body": raw}
        parser = create_parser(model.metadata["protocol"])
        parsed = parser.parse(wire, model.output_shape)
        # As botocore's Endpoint._add_modeled_error_fields: the error shape's own members.
        error_shape = model.service_model.shape_for_error_code(parsed["Error"]["Code"])
        if error_shape is not None:
            parsed.update(parser.parse(wire, error_shape))
        return AWSResponse(client.meta.endpoint_url, 400, headers, _Body(raw)), parsed

    event = f"before-call.dynamodb.{operation}"
    client.meta.events.register_first(event, answer)
    try:
        yield seen
    finally:
        client.meta.events.unregister(event, answer)
