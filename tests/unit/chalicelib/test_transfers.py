"""The transfer decision (chalicelib/transfers.py), as a table of the issue's and the docs' words.

Issue 11, "How the agent asks, and who decides": *the tool exists on this agent, overrides win
over what the bot sent, a target outside the configured ones is refused unless the account allows
free targets*; the contract: *E.164 only where a trunk is configured; one transfer at a time per
call (409); the call must be joined (409); refusals are 400/403/409 naming the field*; the issue's
parameter lists and their defaults (``sipVerb`` REFER, ``transferType`` TRY_REFER).

The egress check is a stand-in that refuses ``10.*`` hosts (the real policy is
``chalicelib/egress.py``'s, tested there and through the API).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from chalicelib.errors import Conflict, InvalidInput
from chalicelib.transfers import (
    DEFAULT_WARM_PROMPT,
    MAX_TRANSFERS_PER_CALL,
    AccountTransferSettings,
    CallState,
    TransferAsk,
    TransferNotAllowed,
    TransferPlan,
    decide,
)

OPERATOR = "sip:operator@pbx.example"
SUPERVISOR = "sip:supervisor@pbx.example"
TOOLS: list[Any] = [
    {"toolName": "hangUp"},
    {
        "toolName": "coldTransfer",
        "parameterOverrides": {
            "target": OPERATOR,
            "sipVerb": "REFER",
            "extraHeaders": {"X-Queue": "sales"},
            "from": "+15550001111",
            "username": "xfer",
            "passwordCiphertext": "fernet:stored",
        },
    },
    {"toolName": "coldTransfer", "nameOverride": "anywhere"},
    {
        "toolName": "warmTransfer",
        "nameOverride": "toSupervisor",
        "parameterOverrides": {
            "target": SUPERVISOR,
            "transferSystemPromptTemplate": "Tell them: {context}",
            "holdMusicUrl": None,
        },
    },
    {"toolName": "warmTransfer", "nameOverride": "warmAnywhere"},
]
JOINED = CallState(
    joined=True, ended=False, selected_tools=TOOLS, transfers=0, transfer_in_progress=False
)
CLOSED = AccountTransferSettings()


class Checks:
    """Refuses hosts in 10.0.0.0/8 and remembers what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def sip_uri(self, field: str, uri: str) -> None:
        self.asked.append((field, uri))
        if "@10." in uri:
            raise InvalidInput(field, f"{uri!r}: a private address")

    def url(self, field: str, url: str) -> None:
        self.asked.append((field, url))


def ask(
    tool: str,
    call: CallState = JOINED,
    settings: AccountTransferSettings = CLOSED,
    context: str | None = None,
    **parameters: Any,
) -> TransferPlan:
    return decide(
        call, settings, TransferAsk(tool, parameters, context), Checks(), lambda p: f"sealed:{p}"
    )


def refused(error: type[Exception], field: str | None, *args: Any, **kwargs: Any) -> None:
    with pytest.raises(error) as raised:
        ask(*args, **kwargs)
    if field is not None:
        assert getattr(raised.value, "field", None) == field
        assert raised.value.http_status == (403 if error is TransferNotAllowed else 400)  # type: ignore[attr-defined]
    else:
        assert raised.value.http_status == 409  # type: ignore[attr-defined]


# --- "the tool exists on this agent" -------------------------------------------------------------


def test_a_tool_the_agent_does_not_have_is_refused_403_naming_tool_name() -> None:
    refused(TransferNotAllowed, "toolName", "blindTransfer")
    refused(TransferNotAllowed, "toolName", "hangUp")  # a tool, but not a transfer tool


def test_a_renamed_tool_is_asked_for_by_its_name_override_only() -> None:
    assert ask("toSupervisor").kind == "warm"
    assert ask("coldTransfer").tool_name == "coldTransfer"  # the one without an override
    no_plain_warm = replace(JOINED, selected_tools=TOOLS[3:4])
    refused(TransferNotAllowed, "toolName", "warmTransfer", call=no_plain_warm)


# --- "overrides win over what the bot sent" -----------------------------------------------------


def test_overrides_win_over_what_the_bot_sent() -> None:
    plan = ask(
        "coldTransfer",
        target="sip:premium@carrier.example",
        sipVerb="INVITE",
        extraHeaders={"X-Queue": "billing"},
        username="bot",
        password="bots-own",
        **{"from": "+19005550000"},
    )
    assert (plan.target, plan.method, plan.refer_headers, plan.invite_headers) == (
        OPERATOR, "REFER", [("X-Queue", "sales")], []
    )  # fmt: skip
    assert (plan.from_, plan.username, plan.password_ciphertext) == (
        "+15550001111", "xfer", "fernet:stored"
    )  # fmt: skip


def test_what_the_tool_leaves_open_the_bot_fills() -> None:
    settings = AccountTransferSettings(allow_free_targets=True)
    plan = ask(
        "anywhere", settings=settings, target="sip:desk@partner.example", sipVerb="INVITE",
        extraHeaders={"X-Ticket": "42"}, username="u", password="p",
    )  # fmt: skip
    assert (plan.method, plan.invite_headers, plan.refer_headers) == (
        "INVITE", [("X-Ticket", "42")], []
    )  # fmt: skip
    assert (plan.username, plan.password_ciphertext) == ("u", "sealed:p")
    assert "sealed:p" not in repr(plan)


# --- "a target outside the configured ones is refused unless the account allows free targets" --


@pytest.mark.parametrize(
    "target",
    ["sip:+19005551234@carrier.example", "sip:desk@partner.example", "+19005551234"],
)
def test_a_target_the_account_did_not_configure_is_refused_403(target: str) -> None:
    refused(TransferNotAllowed, "parameters.target", "anywhere", target=target)


def test_a_configured_target_may_be_named_through_a_tool_without_one() -> None:
    assert ask("anywhere", target=SUPERVISOR).target == SUPERVISOR
    assert ask("warmAnywhere", target=f"<{OPERATOR}>").target == OPERATOR  # normalised


def test_free_targets_pass_when_the_account_allows_them_but_the_egress_rules_still_hold() -> None:
    free = AccountTransferSettings(allow_free_targets=True)
    assert ask("anywhere", settings=free, target="sip:desk@partner.example").target == (
        "sip:desk@partner.example"
    )
    refused(InvalidInput, "parameters.target", "anywhere", settings=free, target="sip:x@10.1.2.3")


def test_a_tool_without_a_target_and_a_bot_without_one_is_400() -> None:
    refused(InvalidInput, "parameters.target", "anywhere")


# --- "E.164 only where a trunk is configured" ---------------------------------------------------


def test_an_e164_number_needs_the_accounts_transfer_trunk() -> None:
    free = AccountTransferSettings(allow_free_targets=True)
    refused(InvalidInput, "parameters.target", "anywhere", settings=free, target="+442071234567")
    trunk = replace(free, trunk="sips:trunk.example:5061")
    plan = ask("anywhere", settings=trunk, target="tel:+442071234567")
    assert plan.target == "sips:+442071234567@trunk.example:5061"


@pytest.mark.parametrize("target", ["+1555", "0044207", "sip:", "http://x.example/", "tel:12"])
def test_a_target_that_is_neither_sip_nor_e164_is_400(target: str) -> None:
    free = AccountTransferSettings(allow_free_targets=True, trunk="sip:trunk.example")
    refused(InvalidInput, "parameters.target", "anywhere", settings=free, target=target)


# --- the call: joined, not ended, one transfer at a time ----------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        replace(JOINED, joined=False),
        replace(JOINED, ended=True),
        replace(JOINED, transfer_in_progress=True),
        replace(JOINED, transfers=MAX_TRANSFERS_PER_CALL),
    ],
    ids=["not-joined", "ended", "one-at-a-time", "too-many"],
)
def test_the_calls_state_refuses_409(call: CallState) -> None:
    refused(Conflict, None, "coldTransfer", call=call)


# --- defaults and shapes ------------------------------------------------------------------------


def test_the_defaults_are_refer_try_refer_and_the_default_hold_music() -> None:
    cold = ask("anywhere", target=OPERATOR)
    warm = ask("warmAnywhere", target=OPERATOR)
    assert (cold.kind, cold.method, cold.hold_music, cold.prompt) == (
        "cold", "REFER", "default", None
    )  # fmt: skip
    assert (warm.kind, warm.method, warm.hold_music) == ("warm", "TRY_REFER", "default")
    assert warm.prompt == DEFAULT_WARM_PROMPT.replace("{context}", "")


def test_hold_music_null_is_none_and_a_url_is_checked() -> None:
    assert ask("toSupervisor").hold_music == "none"  # the override sets null
    checks = Checks()
    url = "https://music.example/hold.mp3"
    plan = decide(
        JOINED, CLOSED, TransferAsk("anywhere", {"target": OPERATOR, "holdMusicUrl": url}),
        checks, str,
    )  # fmt: skip
    assert (plan.hold_music, plan.hold_music_url) == ("url", url)
    assert ("parameters.holdMusicUrl", url) in checks.asked


def test_the_warm_prompt_is_the_template_with_context_filled_once() -> None:
    plan = ask("toSupervisor", context="wants {a refund} of $5")
    assert plan.prompt == "Tell them: wants {a refund} of $5"


def test_context_over_4_kb_is_400_naming_it() -> None:
    assert ask("toSupervisor", context="é" * 2048).prompt is not None  # 4096 bytes
    refused(InvalidInput, "context", "toSupervisor", context="é" * 2049)


@pytest.mark.parametrize(
    ("parameters", "field"),
    [
        ({"sipVerb": "BYE"}, "parameters.sipVerb"),
        ({"extraHeaders": {"Replaces": "x"}}, "parameters.extraHeaders"),
        ({"extraHeaders": {f"X-{n}": "v" for n in range(11)}}, "parameters.extraHeaders"),
        ({"extraHeaders": {"X-A": "v\r\nContact: evil"}}, "parameters.extraHeaders.X-A"),
        ({"transferType": "BRIDGE"}, "parameters.transferType"),  # a warm field on a cold tool
        ({"passwordCiphertext": "fernet:x"}, "parameters.passwordCiphertext"),
        ({"holdMusicUrl": "file:///etc/passwd"}, "parameters.holdMusicUrl"),
        ({"target": "sip:a@b.example?Replaces=abc%3Bto-tag%3D1"}, "parameters.target"),
    ],
)
def test_a_bad_parameter_from_the_bot_is_400_naming_it(
    parameters: dict[str, Any], field: str
) -> None:
    refused(InvalidInput, field, "anywhere", **parameters)


def test_a_bot_prompt_template_may_use_only_the_context_placeholder() -> None:
    refused(
        InvalidInput,
        "parameters.transferSystemPromptTemplate",
        "warmAnywhere",
        target=OPERATOR,
        transferSystemPromptTemplate="{context} and {secrets}",
    )


def test_a_password_the_bot_sends_is_in_no_repr() -> None:
    asked = TransferAsk("anywhere", {"target": OPERATOR, "password": "bots-s3cret"})
    plan = decide(JOINED, CLOSED, asked, Checks(), lambda p: f"sealed:{p}")
    assert "bots-s3cret" not in repr(asked) + repr(plan)
