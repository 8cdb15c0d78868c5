from __future__ import annotations

import pytest

from chalicelib.allowlist import source_allowed
from chalicelib.models import normalize_cidr


@pytest.mark.parametrize(
    ("source", "cidrs", "allowed"),
    [
        ("91.200.160.14", ["91.200.160.14/32"], True),
        ("91.200.160.15", ["91.200.160.14/32"], False),
        ("10.1.2.3", ["192.0.2.0/24", "10.0.0.0/8"], True),
        ("10.1.2.3", [], False),
        ("", ["0.0.0.0/0"], False),
        ("not-an-ip", ["0.0.0.0/0"], False),
        ("2001:db8::1", ["0.0.0.0/0"], False),
        ("::ffff:10.1.2.3", ["10.0.0.0/8"], True),
        ("198.51.100.7", ["0.0.0.0/0"], True),
    ],
)
def test_source_allowed_fails_closed(source: str, cidrs: list[str], allowed: bool) -> None:
    assert source_allowed(source, cidrs) is allowed


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2001:db8::/32", "'2001:db8::/32' is an IPv6 range; only IPv4 CIDR ranges are supported"),
        (
            "10.0.0.1/8",
            "'10.0.0.1/8' is not a valid IPv4 CIDR range (10.0.0.1/8 has host bits set)",
        ),
        (
            "garbage",
            "'garbage' is not a valid IPv4 CIDR range "
            "('garbage' does not appear to be an IPv4 or IPv6 network)",
        ),
        ("10.0.0.0/33", "'10.0.0.0/33' is not a valid IPv4 CIDR range"),
    ],
)
def test_invalid_cidr_ranges_are_named(value: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        normalize_cidr(value)
    assert str(raised.value).startswith(message)


def test_single_address_becomes_a_slash_32() -> None:
    assert normalize_cidr(" 91.200.160.14 ") == "91.200.160.14/32"
