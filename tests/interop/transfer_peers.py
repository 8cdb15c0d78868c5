"""SIPp as the other parties of a transfer, for tests whose transferee or operator is a peer.

- `refer_as_transferor`: SIPp calls ``target`` (``host:port``), and after the answer sends REFER
  with ``Refer-To: <refer_to>`` (``scenarios/uac_transferor.xml``): it takes 202, a hold
  re-INVITE if one comes, two NOTIFYs (answered 200), then ends the call with BYE as RFC 5589
  §6.1's transferor does (or answers the transferee's BYE if it sends one first).
- `received`, `sent`: the messages SIPp received, sent, in a run; `notifies`: the refer NOTIFYs SIPp received in such a run, as `Notify` (sipfrag status line,
  ``Subscription-State``, ``Event``), in order.
- `replaces`: RFC 3891 §6.1's ``Replaces`` value for a dialog; `call_with_replaces` places an
  INVITE carrying it (``Require: replaces``, ``scenarios/uac_replaces.xml``), ACKs the answer and
  hangs up after ``hold_ms``.
- `answered_dialog`: the dialog of the first INVITE a `Linphonec` answered, read from its log
  (its own 200), as a `Dialog` whose `Dialog.replaces` names it from linphone's side.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tests.interop.linphone import Linphonec
from tests.interop.sipp import SippRun, run_sipp_uac, scenario
from tests.interop.sipp_uas import SipMessage, parse_trace

ANSWER_SENT = re.compile(r"^SIP/2.0 200 O[Kk]\r?\n(?:.+\r?\n)*?CSeq: *\d+ INVITE\r?$", re.M)


@dataclass(frozen=True)
class Notify:
    """One NOTIFY of a REFER's implicit subscription, as the transferor received it."""

    sipfrag: str  # the status line of the message/sipfrag body
    subscription_state: str
    event: str
    content_type: str

    @property
    def status(self) -> int:
        return int(self.sipfrag.split()[1])


@dataclass(frozen=True)
class Dialog:
    """A dialog's identifiers as its UAS holds them."""

    call_id: str
    local_tag: str  # the UAS's tag (the To tag of its 200)
    remote_tag: str  # the caller's tag (the From tag)

    @property
    def replaces(self) -> str:
        """RFC 3891 §6.1's value naming this dialog to its UAS: to-tag is the UAS's own tag."""
        return replaces(self.call_id, to_tag=self.local_tag, from_tag=self.remote_tag)


def replaces(call_id: str, *, to_tag: str, from_tag: str) -> str:
    return f"{call_id};to-tag={to_tag};from-tag={from_tag}"


def refer_as_transferor(
    target: str, workdir: Path, *, refer_to: str, service: str = "transferee", timeout_s: int = 20
) -> SippRun:
    return run_sipp_uac(
        target,
        workdir,
        service=service,
        scenario_file=scenario("uac_transferor.xml", workdir),
        timeout_s=timeout_s,
        extra=("-key", "refer_to", refer_to),
    )


def received(run: SippRun) -> list[SipMessage]:
    """Every message SIPp received in ``run``, in order."""
    return [message for message in parse_trace(run.messages) if message.direction == "received"]


def sent(run: SippRun) -> list[SipMessage]:
    """Every message SIPp sent in ``run``, in order."""
    return [message for message in parse_trace(run.messages) if message.direction == "sent"]


def notifies(run: SippRun) -> list[Notify]:
    found = []
    for message in received(run):
        if message.method == "NOTIFY":
            found.append(
                Notify(
                    sipfrag=message.body.strip().split("\n", 1)[0].strip(),
                    subscription_state=message.header("Subscription-State") or "",
                    event=message.header("Event") or "",
                    content_type=message.header("Content-Type") or "",
                )
            )
    return found


def call_with_replaces(
    target: str,
    workdir: Path,
    *,
    replaces_value: str,
    service: str = "operator",
    hold_ms: int = 1000,
    timeout_s: int = 20,
) -> SippRun:
    return run_sipp_uac(
        target,
        workdir,
        service=service,
        scenario_file=scenario("uac_replaces.xml", workdir),
        timeout_s=timeout_s,
        extra=("-key", "replaces", replaces_value, "-d", str(hold_ms)),
    )


def answered_dialog(phone: Linphonec) -> Dialog:
    found = ANSWER_SENT.search(phone.log)
    assert found, f"linphone sent no 200 to an INVITE:\n{phone.log[-3000:]}"
    head = phone.log[found.start() :].replace("\r\n", "\n").split("\n\n", 1)[0]

    def header(name: str) -> str:
        match = re.search(rf"^{name}: *(.+)$", head, re.M | re.I)
        assert match, f"no {name} in linphone's 200:\n{head}"
        return match.group(1).strip()

    def tag(value: str) -> str:
        match = re.search(r";tag=([^;>\s]+)", value)
        assert match, value
        return match.group(1)

    return Dialog(
        call_id=header("Call-ID"), local_tag=tag(header("To")), remote_tag=tag(header("From"))
    )
