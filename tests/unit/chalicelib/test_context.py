from __future__ import annotations

import pytest

from chalicelib.context import (
    CallerInfo,
    context_from_headers,
    header_key,
    incoming_context,
    validate_context,
)
from chalicelib.errors import InvalidInput
from chalicelib.templates import render

CALLER = CallerInfo("+15551234567", "Alice", "sip:+15551234567@carrier.example")


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("X-Customer-Name", "customer_name"),
        ("x-complex-value", "complex_value"),
        ("X-CustomerId", "customer_id"),
        ("X-Order.Number", "order_number"),
        ("Via", None),
        ("X-", None),
        ("Max-Forwards", None),
    ],
)
def test_x_headers_become_snake_case_keys(name: str, key: str | None) -> None:
    assert header_key(name) == key


def test_spec_example_headers_become_context() -> None:
    headers = [("X-Customer-Name", "Bob"), ("X-Complex-Value", '{"subkey": "value"}')]
    assert context_from_headers(headers) == {
        "customer_name": "Bob",
        "complex_value": {"subkey": "value"},
    }


def test_header_values_parse_as_json_else_stay_strings() -> None:
    headers = [("X-N", "42"), ("X-Flag", "true"), ("X-Zip", "00123"), ("X-Broken", '{"a":')]
    assert context_from_headers(headers) == {
        "n": 42,
        "flag": True,
        "zip": "00123",
        "broken": '{"a":',
    }


def test_first_header_of_a_name_wins_and_sipline_key_is_reserved() -> None:
    headers = [("X-Plan", "gold"), ("x-plan", "silver"), ("X-Sipline", '{"sip": 1}')]
    assert context_from_headers(headers) == {"plan": "gold"}


def test_reserved_sip_keys_are_added_without_a_schema() -> None:
    built = incoming_context([], CALLER, None)
    assert built.context == {
        "sipline": {
            "sip": {
                "caller_id": "+15551234567",
                "from_display_name": "Alice",
                "from_uri": "sip:+15551234567@carrier.example",
            }
        }
    }
    assert built.dropped_keys == ()


def test_schema_keeps_only_what_it_allows() -> None:
    schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "customer_name": {"type": "string"},
            "sipline": {
                "type": "object",
                "properties": {
                    "sip": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"caller_id": {"type": "string"}},
                    }
                },
            },
        },
    }
    headers = [("X-Customer-Name", "Bob"), ("X-Complex-Value", "{}")]
    built = incoming_context(headers, CALLER, schema)
    assert built.context == {
        "customer_name": "Bob",
        "sipline": {"sip": {"caller_id": "+15551234567"}},
    }
    assert built.dropped_keys == (
        "complex_value",
        "sipline.sip.from_display_name",
        "sipline.sip.from_uri",
    )


def test_schema_that_allows_no_sip_keys_gets_none() -> None:
    schema = {
        "type": "object",
        "properties": {"plan": {"type": "string"}},
        "additionalProperties": False,
    }
    built = incoming_context([("X-Plan", "gold")], CALLER, schema)
    assert built.context == {"plan": "gold"}


def test_header_value_of_the_wrong_type_is_dropped() -> None:
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}}
    built = incoming_context([("X-Age", "old")], CALLER, schema)
    assert "age" not in built.context
    assert built.dropped_keys[0] == "age"


def test_render_fills_placeholders_and_dotted_paths_without_escaping() -> None:
    template = "Hi {{customer_name}} <{{sipline.sip.caller_id}}> {{missing}}{{complex.subkey}}"
    context = {
        "customer_name": "Bob & Co",
        "sipline": {"sip": {"caller_id": "+1"}},
        "complex": {"subkey": "v"},
    }
    assert render(template, context) == "Hi Bob & Co <+1> v"
    assert render(None, context) is None


def test_validate_context_names_the_field() -> None:
    schema = {
        "type": "object",
        "properties": {"order": {"type": "object", "properties": {"n": {"type": "integer"}}}},
    }
    with pytest.raises(InvalidInput) as raised:
        validate_context({"order": {"n": "x"}}, schema)
    assert raised.value.field == "templateContext.order.n"
    assert raised.value.message == "templateContext.order.n: 'x' is not of type 'integer'"
