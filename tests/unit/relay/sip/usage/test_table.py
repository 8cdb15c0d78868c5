"""The usage table: a dialog's usages in binding order, forgotten with the last of them (RFC 5057)."""

from __future__ import annotations

import pytest

from relay.sip.address import Address
from relay.sip.dialog import Dialog, DialogId
from relay.sip.errors import LocalProtocolError
from relay.sip.syntax.message import Request
from relay.sip.syntax.parser import parse_message
from relay.sip.syntax.uri import NameAddr, SipUri
from relay.sip.transaction.layer import Usage
from relay.sip.usage.table import UsageTable

INVITE = (
    b"INVITE sip:sales@192.0.2.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bK-1\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:alice@198.51.100.7>;tag=remote1\r\n"
    b"To: <sip:sales@192.0.2.1>\r\n"
    b"Call-ID: table@198.51.100.7\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:alice@198.51.100.7:5062>\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def dialog(local_tag: str) -> Dialog:
    request = parse_message(INVITE)
    assert isinstance(request, Request)
    contact = NameAddr(uri=SipUri(scheme="sip", host="192.0.2.1"))
    source = Address("198.51.100.7", 5062)
    return Dialog.as_uas(request, local_tag=local_tag, local_contact=contact, source=source)


class Nothing:
    """A usage the table only holds (it never calls one)."""

    finished = False


def usage() -> Usage:
    return Nothing()  # type: ignore[return-value]


def test_usages_of_a_dialog_come_in_the_order_they_were_bound_once_each() -> None:
    table, shared = UsageTable(), dialog("a")
    session, subscription = usage(), usage()
    table.bind(shared, session)
    table.bind(shared, subscription)
    table.bind(shared, session)
    assert table.usages_of(shared.id) == (session, subscription)
    assert table.usages_of(DialogId("other", "a", "remote1")) == ()


def test_a_usage_may_be_held_before_any_dialog_and_bound_to_several() -> None:
    table, outgoing = UsageTable(), usage()
    table.add(outgoing)
    assert list(table) == [outgoing] and list(table.dialogs()) == []
    early, forked = dialog("a"), dialog("b")
    table.bind(early, outgoing)
    table.bind(forked, outgoing)
    assert early.id in table and forked.id in table
    table.remove(outgoing)
    assert len(table) == 0 and early.id not in table and forked.id not in table


def test_a_dialog_is_forgotten_with_its_last_usage_only() -> None:
    table, shared = UsageTable(), dialog("a")
    session, subscription = usage(), usage()
    table.bind(shared, session)
    table.bind(shared, subscription)
    table.remove(session)
    assert table.usages_of(shared.id) == (subscription,)
    assert list(table.dialogs()) == [shared]
    table.remove(subscription)
    assert shared.id not in table


def test_binding_a_second_dialog_object_under_the_same_id_is_refused() -> None:
    table = UsageTable()
    table.bind(dialog("a"), usage())
    with pytest.raises(LocalProtocolError, match="already bound to another Dialog"):
        table.bind(dialog("a"), usage())
