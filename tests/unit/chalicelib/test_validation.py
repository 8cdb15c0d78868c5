"""Validation errors name the field and never quote a body, a secret or a huge value."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from chalicelib.errors import InvalidInput
from chalicelib.models import AgentFields, RegistrationFields, SipConfigPatch
from chalicelib.validation import MAX_SHOWN_CHARS, invalid_input, shown

SECRET = "s3cret-value-7"


def _error(model: type, raw: bytes) -> InvalidInput:
    with pytest.raises(ValidationError) as raised:
        model.model_validate_json(raw)
    return invalid_input(raised.value)


def test_json_syntax_error_gives_line_and_column_only() -> None:
    raw = b'{\n  "username": "u",\n  "password": "' + SECRET.encode() + b'"\n  "proxy": "p"\n}'

    error = _error(RegistrationFields, raw)

    assert error.field == "body"
    assert error.message == "body: invalid JSON: expected `,` or `}` at line 4 column 3"


def test_unknown_field_is_named_without_its_value() -> None:
    raw = (
        b'{"username": "u", "password": "p", "proxy": "x", "pass_word": "' + SECRET.encode() + b'"}'
    )

    assert _error(RegistrationFields, raw).message == "pass_word: unknown field"


@pytest.mark.parametrize("value", ['""', "7", '["a"]', '"' + "x" * 300 + '"'])
def test_secret_fields_never_show_their_value(value: str) -> None:
    raw = b'{"username": "u", "proxy": "x", "password": ' + value.encode() + b"}"

    error = _error(RegistrationFields, raw)

    assert error.field == "password"
    assert "xxx" not in error.message and "7" not in error.message.removeprefix("password")


def test_short_non_secret_value_is_quoted() -> None:
    error = _error(SipConfigPatch, b'{"allowedCidrRanges": ["10.0.0.1/8"]}')

    assert error.field == "allowedCidrRanges[0]"
    assert "'10.0.0.1/8'" in error.message


def test_long_value_quoted_by_a_validator_is_clipped() -> None:
    error = _error(AgentFields, b'{"name": "' + b"n" * 10_000 + b'"}')

    assert error.field == "name"
    assert len(error.message) <= len("name: ") + 240
    assert error.message.endswith("…")


def test_long_field_name_is_clipped() -> None:
    error = _error(AgentFields, b'{"name": "a", "' + b"k" * 10_000 + b'": 1}')

    assert len(error.field) == 120 and error.field.endswith("…")


def test_shown_clips_a_repr() -> None:
    assert shown("abc") == "'abc'"
    assert len(shown("z" * 1000)) == MAX_SHOWN_CHARS
