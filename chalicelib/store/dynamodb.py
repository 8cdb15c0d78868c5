"""The :class:`~chalicelib.store.table.Table` protocol on DynamoDB, through boto3's low-level client.

The only module that touches DynamoDB: conditions become ``ConditionExpression``s and botocore's
errors become domain ones (:func:`classify`), so nothing above ``store/`` imports botocore:

1. ``ConditionalCheckFailedException``, or a ``TransactionCanceledException`` whose
   ``CancellationReasons`` hold a ``ConditionalCheckFailed`` and nothing retryable, is
   :class:`ConditionFailed` (the item exists, or its version moved on).
2. A ``TransactionCanceledException`` with a ``TransactionConflict``, ``ThrottlingError`` or
   ``ProvisionedThroughputExceeded`` reason, and a ``TransactionConflictException`` (a write met
   an item inside another transaction), are transient: botocore does not retry them, so the write
   is tried again, at most :data:`MAX_WRITE_ATTEMPTS` times with capped, jittered exponential
   backoff, then :class:`~chalicelib.errors.StoreBusy` (503).
3. Throttling errors botocore already retried (``ProvisionedThroughputExceededException``,
   ``ThrottlingException``, ``RequestLimitExceeded``) are :class:`StoreBusy` at once.
4. An item over DynamoDB's 400 KB (a ``ValidationException``, or a ``ValidationError`` reason,
   saying "Item size ... has exceeded the maximum allowed size") is
   :class:`~chalicelib.errors.RecordTooLarge` (413). The repository measures items before it
   writes them (``item_size.py``), so this is a backstop that keeps the answer a 413, not a 500.
5. Anything else (another ``ValidationError`` reason, a missing table) is a bug: it propagates.

The reason codes are those of the ``TransactWriteItems`` API reference ("Cancellation reason
codes"); docs/storage.md lists them.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from enum import Enum
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from chalicelib.errors import RecordTooLarge, StoreBusy
from chalicelib.store.item_size import MAX_ITEM_BYTES
from chalicelib.store.table import (
    INDEX_KEYS,
    Condition,
    ConditionFailed,
    Increment,
    Item,
    Key,
    Match,
    Page,
    key_of,
)

MAX_WRITE_ATTEMPTS = 4
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 0.4
_TRANSIENT_REASONS = frozenset(
    {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}
)
_THROTTLED = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}
)
_ITEM_TOO_LARGE = "exceeded the maximum allowed size"
"""How DynamoDB says an item is over 400 KB ("Item size [to update] has exceeded the ...")."""
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _to_wire(item: Item) -> dict[str, Any]:
    return {name: _serializer.serialize(value) for name, value in item.items()}


def _from_wire(item: dict[str, Any]) -> Item:
    plain = {name: _deserializer.deserialize(value) for name, value in item.items()}
    return {k: int(v) if isinstance(v, Decimal) else v for k, v in plain.items()}


def _condition(condition: Condition | None) -> dict[str, Any]:
    if condition is None:
        return {}
    if condition.absent:
        return {"ConditionExpression": "attribute_not_exists(pk)"}
    if condition.version is not None:
        return {
            "ConditionExpression": "#v = :v",
            "ExpressionAttributeNames": {"#v": "version"},
            "ExpressionAttributeValues": {":v": {"N": str(condition.version)}},
        }
    if condition.newer_than is not None:
        attribute, value = condition.newer_than
        return {
            "ConditionExpression": "attribute_not_exists(#a) OR #a < :a",
            "ExpressionAttributeNames": {"#a": attribute},
            "ExpressionAttributeValues": {":a": _serializer.serialize(value)},
        }
    return {}


class Failure(Enum):
    """What a DynamoDB error means to the store (module docstring, rules 1-4)."""

    CONDITION_FAILED = "condition_failed"
    TRANSIENT = "transient"
    THROTTLED = "throttled"
    TOO_LARGE = "too_large"
    OTHER = "other"


def classify(response: Mapping[str, Any]) -> Failure:
    """Classify a botocore error response (``ClientError.response``) by its code and reasons."""
    code = response.get("Error", {}).get("Code")
    if code == "ValidationException" and _ITEM_TOO_LARGE in response["Error"].get("Message", ""):
        return Failure.TOO_LARGE
    if code == "ConditionalCheckFailedException":
        return Failure.CONDITION_FAILED
    if code == "TransactionConflictException":
        return Failure.TRANSIENT
    if code in _THROTTLED:
        return Failure.THROTTLED
    if code != "TransactionCanceledException":
        return Failure.OTHER
    listed = response.get("CancellationReasons") or []
    reasons = {reason.get("Code") for reason in listed}
    if reasons & _TRANSIENT_REASONS:
        return Failure.TRANSIENT
    if any(_ITEM_TOO_LARGE in (reason.get("Message") or "") for reason in listed):
        return Failure.TOO_LARGE
    if "ConditionalCheckFailed" in reasons:
        return Failure.CONDITION_FAILED
    return Failure.OTHER


def _describe(response: Mapping[str, Any]) -> str:
    code = str(response.get("Error", {}).get("Code"))
    reasons = [str(r.get("Code")) for r in response.get("CancellationReasons") or []]
    return f"{code} [{', '.join(reasons)}]" if reasons else code


class DynamoTable:
    """A single DynamoDB table, addressed through a boto3 ``dynamodb`` client."""

    def __init__(
        self,
        client: Any,
        table_name: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._client = client
        self._name = table_name
        self._sleep = sleep
        self._jitter = jitter

    def get(self, pk: str, sk: str) -> Item | None:
        try:
            response = self._client.get_item(
                TableName=self._name, Key=_to_wire({"pk": pk, "sk": sk}), ConsistentRead=True
            )
        except ClientError as error:
            _raise_if_busy(error)
            raise
        return _from_wire(response["Item"]) if "Item" in response else None

    def put(self, item: Item, condition: Condition | None = None) -> None:
        self._call(
            self._client.put_item,
            TableName=self._name,
            Item=_to_wire(item),
            **_condition(condition),
        )

    def delete(self, pk: str, sk: str, condition: Condition | None = None) -> None:
        self._call(
            self._client.delete_item,
            TableName=self._name,
            Key=_to_wire({"pk": pk, "sk": sk}),
            **_condition(condition),
        )

    def transact_put(
        self,
        writes: Sequence[tuple[Item, Condition | None]],
        increments: Sequence[Increment] = (),
    ) -> None:
        actions = [
            {"Put": {"TableName": self._name, "Item": _to_wire(item), **_condition(condition)}}
            for item, condition in writes
        ]
        actions += [{"Update": self._increment(up)} for up in increments]
        self._call(self._client.transact_write_items, TransactItems=actions)

    def _increment(self, up: Increment) -> dict[str, Any]:
        update: dict[str, Any] = {
            "TableName": self._name,
            "Key": _to_wire({"pk": up.pk, "sk": up.sk}),
            "UpdateExpression": "ADD #n :by",
            "ExpressionAttributeNames": {"#n": up.attribute},
            "ExpressionAttributeValues": {":by": {"N": str(up.by)}},
        }
        if up.at_most is not None:  # the number stays <= at_most once increased
            update["ConditionExpression"] = "attribute_not_exists(#n) OR #n <= :room"
            update["ExpressionAttributeValues"][":room"] = {"N": str(up.at_most - up.by)}
        return update

    def query(
        self,
        pk: str,
        *,
        sk_prefix: str | None = None,
        sk_between: tuple[str, str] | None = None,
        index: str | None = None,
        descending: bool = False,
        limit: int | None = None,
        start_after: Key | None = None,
        where: Match | None = None,
    ) -> Page:
        request = self._query_request(pk, sk_prefix, sk_between, index, where)
        request["ScanIndexForward"] = not descending
        if start_after is not None:
            request["ExclusiveStartKey"] = _to_wire(start_after)
        return self._query_pages(request, limit)

    def count(
        self,
        pk: str,
        *,
        sk_prefix: str | None = None,
        sk_between: tuple[str, str] | None = None,
        index: str | None = None,
        where: Match | None = None,
    ) -> int:
        request = self._query_request(pk, sk_prefix, sk_between, index, where)
        request["Select"] = "COUNT"  # DynamoDB counts; no item leaves the table
        total = 0
        while True:
            response = self._client.query(**request)
            total += int(response.get("Count", 0))
            if not (last := response.get("LastEvaluatedKey")):
                return total
            request["ExclusiveStartKey"] = last

    def _query_request(
        self,
        pk: str,
        sk_prefix: str | None,
        sk_between: tuple[str, str] | None,
        index: str | None,
        where: Match | None,
    ) -> dict[str, Any]:
        pk_name, sk_name = INDEX_KEYS[index]
        expression = "#pk = :pk"
        names = {"#pk": pk_name}
        values: dict[str, Any] = {":pk": {"S": pk}}
        if sk_prefix is not None:
            expression += " AND begins_with(#sk, :prefix)"
            values[":prefix"] = {"S": sk_prefix}
        elif sk_between is not None:
            expression += " AND #sk BETWEEN :low AND :high"
            values |= {":low": {"S": sk_between[0]}, ":high": {"S": sk_between[1]}}
        if "#sk" in expression:
            names["#sk"] = sk_name
        request: dict[str, Any] = {"TableName": self._name, "KeyConditionExpression": expression}
        if where is not None:
            options = {f":w{n}": {"S": v} for n, v in enumerate(sorted(where.values))}
            request["FilterExpression"] = f"#w IN ({', '.join(options)})"
            names["#w"] = where.attribute
            values |= options
        request |= {"ExpressionAttributeNames": names, "ExpressionAttributeValues": values}
        if index is not None:
            request["IndexName"] = index
        else:
            request["ConsistentRead"] = True  # see every event stored a moment before
        return request

    def _query_pages(self, request: dict[str, Any], limit: int | None) -> Page:
        items: list[Item] = []
        while True:
            if limit is not None:
                request["Limit"] = limit + 1 - len(items)
            try:
                response = self._client.query(**request)
            except ClientError as error:
                _raise_if_busy(error)
                raise
            items.extend(_from_wire(i) for i in response.get("Items", []))
            last = response.get("LastEvaluatedKey")
            if limit is not None and len(items) > limit:
                items = items[:limit]
                return Page(items, key_of(items[-1], request.get("IndexName")))
            if not last:
                return Page(items, None)
            request["ExclusiveStartKey"] = last

    def _call(self, operation: Any, **kwargs: Any) -> None:
        """Run a write; retry it while DynamoDB calls it transient (rule 2)."""
        for attempt in range(1, MAX_WRITE_ATTEMPTS + 1):
            try:
                operation(**kwargs)
                return
            except ClientError as error:
                failure = classify(error.response)
                if failure is Failure.CONDITION_FAILED:
                    raise ConditionFailed(
                        _describe(error.response), failed=_failed_writes(error)
                    ) from error
                if failure is Failure.TOO_LARGE:  # rule 4
                    raise RecordTooLarge(
                        "record",
                        f"DynamoDB refused to store it ({_describe(error.response)}): one record"
                        f" holds at most {MAX_ITEM_BYTES} bytes (400 KB)",
                    ) from error
                if failure is not Failure.TRANSIENT or attempt == MAX_WRITE_ATTEMPTS:
                    busy = _busy(error, attempts=attempt)
                    if busy is None:
                        raise
                    raise busy from error
                self._sleep(self._backoff_s(attempt))

    def _backoff_s(self, attempt: int) -> float:
        """Capped exponential backoff with jitter in [50 %, 100 %] of the step."""
        step = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2.0 ** (attempt - 1))
        return step * (0.5 + 0.5 * self._jitter())


def _busy(error: ClientError, *, attempts: int = 1) -> StoreBusy | None:
    """Return StoreBusy for a throttled or transient error, None for any other (rule 4)."""
    if classify(error.response) not in (Failure.TRANSIENT, Failure.THROTTLED):
        return None
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    return StoreBusy(f"the table is busy ({_describe(error.response)}){tries}; try again")


def _raise_if_busy(error: ClientError) -> None:
    """Raise StoreBusy from a read botocore gave up on (rule 3); return for any other error."""
    busy = _busy(error)
    if busy is not None:
        raise busy from error


def _failed_writes(error: ClientError) -> frozenset[int]:
    """The positions of a cancelled transaction's writes whose condition failed."""
    reasons = error.response.get("CancellationReasons") or []
    return frozenset(
        index
        for index, reason in enumerate(reasons)
        if reason.get("Code") == "ConditionalCheckFailed"
    )
