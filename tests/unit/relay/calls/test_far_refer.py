"""Which far-end REFERs a call follows, and what ``refer_received`` says (``relay/calls/far_refer.py``).

Vectors: RFC 5589 §6.1's basic transfer (``Refer-To: <sip:transfertarget@biloxi.example.org>``,
``Referred-By: <sip:transferor@atlanta.example.com>``), RFC 3891 §6.1's attended transfer
(``Replaces`` embedded), RFC 3966's ``tel:`` example, RFC 3261 §19.1.3's URI with a password
(``sip:alice:secretword@atlanta.com;transport=tcp``); the rules from docs/relay.md (A REFER from
the far end).
"""

from __future__ import annotations

import pytest

from relay.calls.far_refer import DETAIL_PART, follows, refer_detail
from relay.sip.syntax.refer_to import parse_refer_to

BASIC = "<sip:transfertarget@biloxi.example.org>"
REFERRER = "<sip:transferor@atlanta.example.com>"
ATTENDED = (
    "<sips:dave@denver.example.org?Replaces=12345%40192.168.118.3%3Bto-tag%3D12345"
    "%3Bfrom-tag%3D5FFE-3994>"
)


@pytest.mark.parametrize(
    ("setting", "refer_to", "followed"),
    [
        ("follow", BASIC, True),
        ("follow", "<sips:transfertarget@biloxi.example.org?X-Case=7>", True),
        ("decline", BASIC, False),  # the default
        (None, BASIC, False),
        ("follow", ATTENDED, False),  # an attended transfer of the agent: not supported
        ("follow", "<tel:+1-201-555-0123>", False),  # no trunk to send it to
    ],
)
def test_only_sip_targets_without_replaces_are_followed_and_only_with_follow(
    setting: str | None, refer_to: str, followed: bool
) -> None:
    parsed = parse_refer_to(refer_to)
    assert follows(setting, parsed.uri, parsed.headers) is followed


def test_the_detail_names_the_answer_the_target_and_the_referrer() -> None:
    assert (
        refer_detail(True, parse_refer_to(BASIC), REFERRER)
        == "accepted to=sip:transfertarget@biloxi.example.org by=<sip:transferor@atlanta.example.com>"
    )
    assert refer_detail(False, parse_refer_to(BASIC), None) == (
        "declined to=sip:transfertarget@biloxi.example.org by=-"
    )


def test_the_detail_leaves_out_passwords_and_embedded_header_fields() -> None:
    refer_to = parse_refer_to("<sip:alice:secretword@atlanta.com;transport=tcp?X-Token=abc>")
    referred_by = "<sip:bob:hunter2@biloxi.example.org?X-Pin=1234>"

    detail = refer_detail(True, refer_to, referred_by)

    assert detail == (
        "accepted to=sip:alice@atlanta.com;transport=tcp by=<sip:bob@biloxi.example.org>"
    )
    for secret in ("secretword", "hunter2", "abc", "1234"):
        assert secret not in detail


def test_the_detail_is_bounded_to_the_events_500_characters() -> None:
    long_host = "a" * 250 + ".example.com"
    detail = refer_detail(True, parse_refer_to(f"<sip:x@{long_host}>"), f"<sip:y@{long_host}>")

    assert len(detail) <= 500
    assert len(detail) == len("accepted to= by=") + 2 * DETAIL_PART
