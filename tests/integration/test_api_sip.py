"""``GET`` / ``PATCH /api/sip``: the account's SIP configuration."""

from __future__ import annotations

import json

import pytest

from tests.integration.harness import Api, Aws, stored_items

FALLBACK_SECRET = "fallback-secret-9f2c"


def test_new_account_has_the_fail_closed_defaults_and_its_domain(api: Api) -> None:
    reply = api.get("/api/sip")

    assert reply.status == 200
    assert reply.body == {
        "allowedCidrRanges": [],
        "allowAllAgents": False,
        "allowedAgents": [],
        "allowFreeTransferTargets": False,  # toll fraud: a bot transfers to configured targets
        "transferTrunk": None,
        "incomingRefer": "decline",  # toll fraud: a far end's REFER is not followed by default
        "fallbackHandler": None,
        "domain": "sip.example.test",
    }


def test_patch_replaces_allowed_cidr_ranges(api: Api) -> None:
    api.patch_sip(allowedCidrRanges=["10.0.0.0/8"])

    reply = api.patch("/api/sip", {"allowedCidrRanges": ["91.200.160.14/32", "0.0.0.0/0"]})

    assert reply.status == 200
    assert reply.body["allowedCidrRanges"] == ["91.200.160.14/32", "0.0.0.0/0"]
    assert api.get("/api/sip").body["allowedCidrRanges"] == ["91.200.160.14/32", "0.0.0.0/0"]


def test_patch_turns_allow_all_agents_on_and_off(api: Api) -> None:
    assert api.patch_sip(allowAllAgents=True)["allowAllAgents"] is True
    assert api.get("/api/sip").body["allowAllAgents"] is True

    assert api.patch_sip(allowAllAgents=False)["allowAllAgents"] is False
    assert api.get("/api/sip").body["allowAllAgents"] is False


def test_patch_stores_allowed_agents_in_order_with_their_patterns(api: Api) -> None:
    sales = api.create_agent("sales")["agentId"]
    support = api.create_agent("support")["agentId"]
    rules = [
        {"agentId": support, "toUserPattern": "^15551234567$|^15557654321$"},
        {"agentId": sales, "toUserPattern": "^sales$"},
        {"agentId": sales},
    ]

    reply = api.patch("/api/sip", {"allowedAgents": rules})

    assert reply.status == 200
    expected = [
        {"agentId": support, "toUserPattern": "^15551234567$|^15557654321$"},
        {"agentId": sales, "toUserPattern": "^sales$"},
        {"agentId": sales, "toUserPattern": None},
    ]
    assert reply.body["allowedAgents"] == expected
    assert api.get("/api/sip").body["allowedAgents"] == expected


def test_patch_leaves_the_fields_it_does_not_name_alone(api: Api) -> None:
    agent_id = api.create_agent()["agentId"]
    api.patch_sip(
        allowedCidrRanges=["198.51.100.0/24"],
        allowAllAgents=True,
        allowedAgents=[{"agentId": agent_id, "toUserPattern": "^sales$"}],
    )

    body = api.patch_sip(allowAllAgents=False)

    assert body["allowedCidrRanges"] == ["198.51.100.0/24"]
    assert body["allowedAgents"] == [{"agentId": agent_id, "toUserPattern": "^sales$"}]


def test_patch_sets_a_fallback_handler_and_never_returns_its_secrets(api: Api, aws: Aws) -> None:
    handler = {"url": "https://example.test/fallback", "secrets": [FALLBACK_SECRET]}

    patched = api.patch("/api/sip", {"fallbackHandler": handler})
    read = api.get("/api/sip")

    assert patched.status == 200
    for body in (patched.body, read.body):
        assert body["fallbackHandler"]["url"] == "https://example.test/fallback"
        assert FALLBACK_SECRET not in json.dumps(body)
        assert "secrets" not in body["fallbackHandler"]
    assert FALLBACK_SECRET not in json.dumps(stored_items(aws))


def test_patch_with_null_fallback_handler_removes_it(api: Api) -> None:
    api.patch_sip(fallbackHandler={"url": "https://example.test/fallback", "secrets": ["s"]})

    body = api.patch_sip(fallbackHandler=None)

    assert body["fallbackHandler"] is None
    assert api.get("/api/sip").body["fallbackHandler"] is None


def test_domain_is_read_only(api: Api) -> None:
    reply = api.patch("/api/sip", {"domain": "evil.example", "allowAllAgents": True})

    assert reply.status == 400
    assert reply.body["field"] == "domain"
    assert "read-only" in reply.body["detail"]
    assert api.get("/api/sip").body["allowAllAgents"] is False


@pytest.mark.parametrize(
    ("cidr", "reason"),
    [
        ("2001:db8::/32", "IPv6"),
        ("10.0.0.1/8", "host bits set"),
        ("garbage", "not a valid IPv4 CIDR range"),
        ("10.0.0.0/33", "not a valid IPv4 CIDR range"),
        ("", "not a valid IPv4 CIDR range"),
    ],
)
def test_invalid_cidr_range_is_refused_naming_the_field_and_value(
    api: Api, cidr: str, reason: str
) -> None:
    api.patch_sip(allowedCidrRanges=["198.51.100.0/24"])

    reply = api.patch("/api/sip", {"allowedCidrRanges": [cidr]})

    assert reply.status == 400
    assert reply.body["code"] == "invalid_input"
    assert reply.body["field"] == "allowedCidrRanges[0]"
    assert repr(cidr) in reply.body["detail"]
    assert reason in reply.body["detail"]
    assert api.get("/api/sip").body["allowedCidrRanges"] == ["198.51.100.0/24"]


def test_invalid_cidr_range_is_named_by_its_position(api: Api) -> None:
    reply = api.patch("/api/sip", {"allowedCidrRanges": ["10.0.0.0/8", "10.0.0.1/8"]})

    assert reply.status == 400
    assert reply.body["field"] == "allowedCidrRanges[1]"
    assert api.get("/api/sip").body["allowedCidrRanges"] == []


def test_pattern_over_200_characters_is_refused(api: Api) -> None:
    agent_id = api.create_agent()["agentId"]
    pattern = "^" + "a" * 200 + "$"

    reply = api.patch(
        "/api/sip",
        {
            "allowedAgents": [
                {"agentId": agent_id, "toUserPattern": "^ok$"},
                {"agentId": agent_id, "toUserPattern": pattern},
            ]
        },
    )

    assert reply.status == 400
    assert reply.body["field"] == "allowedAgents[1].toUserPattern"
    assert "200" in reply.body["detail"]
    assert api.get("/api/sip").body["allowedAgents"] == []


def test_pattern_of_exactly_200_characters_is_accepted(api: Api) -> None:
    agent_id = api.create_agent()["agentId"]
    pattern = "^" + "a" * 198 + "$"

    reply = api.patch(
        "/api/sip", {"allowedAgents": [{"agentId": agent_id, "toUserPattern": pattern}]}
    )

    assert reply.status == 200
    assert reply.body["allowedAgents"][0]["toUserPattern"] == pattern


@pytest.mark.parametrize("pattern", ["(a", "(?=x)", "^sales$(?!x)", "(a)\\1"])
def test_pattern_that_re2_cannot_compile_is_refused(api: Api, pattern: str) -> None:
    agent_id = api.create_agent()["agentId"]
    rules = [
        {"agentId": agent_id, "toUserPattern": "^ok$"},
        {"agentId": agent_id, "toUserPattern": pattern},
    ]

    reply = api.patch("/api/sip", {"allowedAgents": rules})

    assert reply.status == 400
    assert reply.body["field"] == "allowedAgents[1].toUserPattern"
    assert repr(pattern) in reply.body["detail"]
    assert api.get("/api/sip").body["allowedAgents"] == []


def test_unknown_agent_id_in_allowed_agents_is_refused(api: Api) -> None:
    reply = api.patch("/api/sip", {"allowedAgents": [{"agentId": "no-such-agent"}]})

    assert reply.status == 400
    assert reply.body["field"] == "allowedAgents[0].agentId"
    assert "'no-such-agent'" in reply.body["detail"]
    assert api.get("/api/sip").body["allowedAgents"] == []


def test_agent_of_another_account_cannot_be_routed_to(api: Api) -> None:
    from tests.support.fakes import OTHER_API_KEY

    foreign = api.as_key(OTHER_API_KEY).create_agent()["agentId"]

    reply = api.patch("/api/sip", {"allowedAgents": [{"agentId": foreign}]})

    assert reply.status == 400
    assert reply.body["field"] == "allowedAgents[0].agentId"


def test_unknown_field_is_refused_naming_it(api: Api) -> None:
    reply = api.patch("/api/sip", {"allowedCidrs": ["10.0.0.0/8"]})

    assert reply.status == 400
    assert reply.body["field"] == "allowedCidrs"
    assert "unknown field" in reply.body["detail"]


def test_unknown_field_inside_a_rule_is_refused_naming_it(api: Api) -> None:
    agent_id = api.create_agent()["agentId"]

    reply = api.patch("/api/sip", {"allowedAgents": [{"agentId": agent_id, "regex": "^x$"}]})

    assert reply.status == 400
    assert reply.body["field"] == "allowedAgents[0].regex"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"allowAllAgents": "yes"}, "allowAllAgents"),
        ({"allowedCidrRanges": "10.0.0.0/8"}, "allowedCidrRanges"),
        ({"fallbackHandler": {"url": "ftp://example.test"}}, "fallbackHandler.url"),
        ({"allowedCidrRanges": None}, "allowedCidrRanges"),
        ({"allowAllAgents": None}, "allowAllAgents"),
        ({"allowedAgents": None}, "allowedAgents"),
    ],
)
def test_badly_typed_field_is_refused_and_nothing_is_stored(
    api: Api, body: dict[str, object], field: str
) -> None:
    api.patch_sip(allowedCidrRanges=["198.51.100.0/24"])

    reply = api.patch("/api/sip", body)

    assert reply.status == 400
    assert reply.body["field"] == field
    assert api.get("/api/sip").body["allowedCidrRanges"] == ["198.51.100.0/24"]
    assert api.get("/api/sip").body["allowAllAgents"] is False


def test_body_that_is_not_json_is_refused_with_400(api: Api) -> None:
    reply = api.patch("/api/sip", b"{not json")

    assert reply.status == 400


def test_refused_fallback_secret_is_not_echoed_in_the_error(api: Api) -> None:
    reply = api.patch(
        "/api/sip", {"fallbackHandler": {"url": "https://x.test", "secrets": [FALLBACK_SECRET, 7]}}
    )

    assert reply.status == 400
    assert reply.body["field"] == "fallbackHandler.secrets[1]"
    assert "7" not in reply.body["detail"]


def test_patch_sets_incoming_refer_to_follow_and_back_to_decline(api: Api) -> None:
    assert api.patch_sip(incomingRefer="follow")["incomingRefer"] == "follow"
    assert api.get("/api/sip").body["incomingRefer"] == "follow"

    assert api.patch_sip(incomingRefer="decline")["incomingRefer"] == "decline"
    assert api.get("/api/sip").body["incomingRefer"] == "decline"


@pytest.mark.parametrize("value", ["accept", "FOLLOW", True, None, ""])
def test_patch_refuses_an_incoming_refer_outside_decline_and_follow(api: Api, value: object) -> None:
    reply = api.patch("/api/sip", {"incomingRefer": value})

    assert reply.status == 400
    assert "incomingRefer" in json.dumps(reply.body)
    assert api.get("/api/sip").body["incomingRefer"] == "decline"
