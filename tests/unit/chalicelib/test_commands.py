"""Naming the relays' own command queues and checking announced ones (chalicelib/commands.py;
the rules: docs/relay.md, "Commands: how one reaches the relay holding the call")."""

from __future__ import annotations

import re

import pytest

from chalicelib.commands import announced_queue_ok, edge_queue_name

SHARED = "https://sqs.us-east-1.amazonaws.com/123456789012/sipline-commands"
SQS_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")
"""SQS's rule for queue names (CreateQueue: up to 80 alphanumerics, hyphens, underscores)."""


def test_an_edge_id_sqs_can_name_gives_prefix_and_id() -> None:
    assert edge_queue_name("sipline-edge-", "local-edge") == "sipline-edge-local-edge"
    task = "0123456789abcdef0123456789abcdef"  # an ECS task id
    assert edge_queue_name("sipline-edge-", task) == f"sipline-edge-{task}"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("edge.1", "edge-1"),  # a character SQS does not allow, cleaned to the other's name
        ("e" * 100 + "a", "e" * 100 + "b"),  # too long, and alike in what fits
    ],
)
def test_edge_ids_that_would_collide_get_names_of_their_own_sqs_accepts(
    first: str, second: str
) -> None:
    names = {edge_queue_name("sipline-edge-", first), edge_queue_name("sipline-edge-", second)}
    assert len(names) == 2
    assert all(SQS_NAME.fullmatch(name) and name.startswith("sipline-edge-") for name in names)


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://sqs.us-east-1.amazonaws.com/123456789012/sipline-edge-a", True),
        ("https://sqs.us-east-1.amazonaws.com/123456789012/sipline-commands", False),
        ("https://sqs.us-east-1.amazonaws.com/999999999999/sipline-edge-a", False),
        ("https://sqs.eu-west-1.amazonaws.com/123456789012/sipline-edge-a", False),
        ("https://sqs.us-east-1.amazonaws.com/123456789012/sipline-edge-a?x=1", False),
        ("sipline-edge-a", False),
    ],
)
def test_only_a_relay_queue_beside_the_shared_queue_may_be_announced(url: str, ok: bool) -> None:
    assert announced_queue_ok(url, "sipline-edge-", SHARED) is ok
