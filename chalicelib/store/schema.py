"""The table's definition, shared by the local stack, the tests and the CDK stack's assertions."""

from __future__ import annotations

from typing import Any

from chalicelib.store import keys


def table_definition(table_name: str) -> dict[str, Any]:
    """Return ``create_table`` arguments for the single table and its GSIs (GSI2 is sparse)."""
    attributes = ("pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk")
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": a, "AttributeType": "S"} for a in attributes],
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": index,
                "KeySchema": [
                    {"AttributeName": f"{index}pk", "KeyType": "HASH"},
                    {"AttributeName": f"{index}sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
            for index in (keys.GSI1, keys.GSI2)
        ],
    }


def create_table(client: Any, table_name: str) -> None:
    """Create the table (idempotent: an existing table is left as it is) and enable TTL."""
    existing = client.list_tables().get("TableNames", [])
    if table_name in existing:
        return
    client.create_table(**table_definition(table_name))
    client.get_waiter("table_exists").wait(TableName=table_name)
    client.update_time_to_live(
        TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"}
    )
