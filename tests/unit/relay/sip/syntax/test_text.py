"""Header text leaving the SIP core for JSON: undecodable bytes become U+FFFD (relay/sip/syntax/text.py)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from relay.sip.syntax.text import readable


def wire(raw: bytes) -> str:
    """Decode as the parser does (relay/sip/syntax/parser.py)."""
    return raw.decode("utf-8", "surrogateescape")


def test_utf8_stays_as_decoded_and_each_other_byte_becomes_one_replacement_character() -> None:
    assert readable(wire(b"Caf\xc3\xa9 caf\xe9 \xff\xfe!")) == "Café caf\ufffd \ufffd\ufffd!"


def test_text_without_undecodable_bytes_is_returned_as_it_is() -> None:
    text = "Alice \u00e9\u4e16\U0001f600"
    assert readable(text) is text


def test_surrogates_no_byte_decodes_to_are_replaced_too() -> None:
    assert readable("a\ud800b\udfffc") == "a\ufffdb\ufffdc"


@given(st.binary(max_size=200))
def test_any_bytes_give_text_json_can_carry(raw: bytes) -> None:
    text = readable(wire(raw))
    assert json.loads(json.dumps(text, ensure_ascii=False)) == text
    text.encode("utf-8")  # raises on a lone surrogate
    assert text == raw.decode("utf-8", "replace")
