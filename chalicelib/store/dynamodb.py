"""The :class:`~chalicelib.store.table.Table` protocol on DynamoDB, through boto3's low-level client.

The only module that touches DynamoDB: conditions become ``ConditionExpression``s and botocore's
conditional-check failures become :class:`ConditionFailed`, so nothing above ``store/`` imports
botocore.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from chalicelib.store.table import (
    INDEX_KEYS,
    Condition,
    ConditionFailed,
    Increment,
    Item,
    Key,
    Page,
    key_of,
)

_CONDITION_ERRORS = {"ConditionalCheckFailedException", "TransactionCanceledException"}
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


class DynamoTable:
    """A single DynamoDB table, addressed through a boto3 ``dynamodb`` client."""

    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._name = table_name

    def get(self, pk: str, sk: str) -> Item | None:
        response = self._client.get_item(
            TableName=self._name, Key=_to_wire({"pk": pk, "sk": sk}), ConsistentRead=True
        )
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
    ) -> Page:
        pk_name, sk_name = INDEX_KEYS[index]
        expression = "#pk = :pk"
        values: dict[str, Any] = {":pk": {"S": pk}}
        if sk_prefix is not None:
            expression += " AND begins_with(#sk, :prefix)"
            values[":prefix"] = {"S": sk_prefix}
        elif sk_between is not None:
            expression += " AND #sk BETWEEN :low AND :high"
            values |= {":low": {"S": sk_between[0]}, ":high": {"S": sk_between[1]}}
        request: dict[str, Any] = {
            "TableName": self._name,
            "KeyConditionExpression": expression,
            "ExpressionAttributeNames": {"#pk": pk_name}
            | ({"#sk": sk_name} if "#sk" in expression else {}),
            "ExpressionAttributeValues": values,
            "ScanIndexForward": not descending,
        }
        if index is not None:
            request["IndexName"] = index
        else:
            request["ConsistentRead"] = True  # see every event stored a moment before
        if start_after is not None:
            request["ExclusiveStartKey"] = _to_wire(start_after)
        return self._query_pages(request, limit)

    def _query_pages(self, request: dict[str, Any], limit: int | None) -> Page:
        items: list[Item] = []
        while True:
            if limit is not None:
                request["Limit"] = limit + 1 - len(items)
            response = self._client.query(**request)
            items.extend(_from_wire(i) for i in response.get("Items", []))
            last = response.get("LastEvaluatedKey")
            if limit is not None and len(items) > limit:
                items = items[:limit]
                return Page(items, key_of(items[-1], request.get("IndexName")))
            if not last:
                return Page(items, None)
            request["ExclusiveStartKey"] = last

    @staticmethod
    def _call(operation: Any, **kwargs: Any) -> None:
        try:
            operation(**kwargs)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in _CONDITION_ERRORS:
                raise ConditionFailed(str(error), failed=_failed_writes(error)) from error
            raise


def _failed_writes(error: ClientError) -> frozenset[int]:
    """The positions of a cancelled transaction's writes whose condition failed."""
    reasons = error.response.get("CancellationReasons") or []
    return frozenset(
        index
        for index, reason in enumerate(reasons)
        if reason.get("Code") == "ConditionalCheckFailed"
    )
