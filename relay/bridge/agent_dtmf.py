"""The agent's digits for the caller: the ``dtmf`` message's bounds and what the bridge does with it.

Theory of operation:

1. An agent sends ``{"event": "dtmf", "streamSid": ..., "dtmf": {"digits": "123#",
   "durationMs": 100}}`` (a sipline extension of the Twilio framing, in both framings; Twilio's
   own messages carry one ``digit`` the other way, and its ``<Play digits>`` names the string
   ``digits``). :func:`digits_command` checks it as hostile input and gives a `SendDigits`, or a
   `DigitsRefused` whose reason names the bound, never the content: 1 to
   ``MAX_DIGITS_PER_MESSAGE`` characters of ``0-9 * # A-D`` (``a-d`` read as ``A-D``), the RFC
   4733 events 0-15; ``durationMs`` a whole number from ``MIN_DURATION_MS`` to
   ``MAX_DURATION_MS`` (``relay/media/dtmf_playout.py`` says why), ``DEFAULT_DURATION_MS`` when
   left out.
2. :class:`AgentDigits` hands a `SendDigits` to the call's media (:class:`DtmfPort`), which
   queues it whole or refuses it whole when the call already holds its bound of digits. Every
   refusal is counted and logged (the first of each kind, then every tenfold count, so an agent
   cannot flood the log); none ends the call. Twilio's framing has no message for errors, so
   the agent is not told; the counters and the log are where a refusal shows.

This module is sans-I/O apart from logging: the framing calls :func:`digits_command`, the bridge
calls :meth:`AgentDigits.apply`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from relay.media.dtmf import DTMF_DIGITS
from relay.media.dtmf_playout import MAX_DURATION_MS, MIN_DURATION_MS

logger = logging.getLogger("sipline.relay.bridge")

MAX_DIGITS_PER_MESSAGE = 32
DEFAULT_DURATION_MS = 100
"""Tone length when the agent names none: what most phones send (ITU-T Q.24 asks for >= 40)."""
_ACCEPTED = frozenset(DTMF_DIGITS + DTMF_DIGITS[-4:].lower())


@dataclass(frozen=True, slots=True)
class SendDigits:
    """The agent asked for digits to be sent to the caller."""

    digits: str
    """1 to ``MAX_DIGITS_PER_MESSAGE`` of 0-9, *, #, A-D (upper case)."""
    duration_ms: int


@dataclass(frozen=True, slots=True)
class DigitsRefused:
    """A ``dtmf`` message out of bounds; ``reason`` names the bound, not the content."""

    reason: str


def digits_command(digits: str, duration_ms: int) -> SendDigits | DigitsRefused:
    """Check a ``dtmf`` message's fields (see the module docstring)."""
    if not 1 <= len(digits) <= MAX_DIGITS_PER_MESSAGE:
        return DigitsRefused(f"dtmf.digits must hold 1 to {MAX_DIGITS_PER_MESSAGE} digits")
    if not _ACCEPTED.issuperset(digits):
        return DigitsRefused("dtmf.digits may only hold 0-9, *, # and A-D")
    if not MIN_DURATION_MS <= duration_ms <= MAX_DURATION_MS:
        return DigitsRefused(
            f"dtmf.durationMs must be {MIN_DURATION_MS} to {MAX_DURATION_MS} (milliseconds)"
        )
    return SendDigits(digits.upper(), duration_ms)


class DtmfPort(Protocol):
    """What sends digits to the caller: the call's media (``RtpSession``)."""

    def send_dtmf(self, digits: str, duration_ms: int) -> bool:
        """Queue ``digits`` for the caller; False when refused whole (queue full, no media)."""
        ...


@dataclass(slots=True)
class DigitsCounters:
    """What became of the agent's ``dtmf`` messages."""

    messages: int = 0
    digits_queued: int = 0
    refused_invalid: int = 0
    """Messages out of bounds (:class:`DigitsRefused`)."""
    refused_full: int = 0
    """Messages the media refused: the call's digit queue was full, or it had no media yet."""


class AgentDigits:
    """One call's ``dtmf`` messages from its agent, applied to its media."""

    def __init__(self, port: DtmfPort, call_id: str) -> None:
        """Send to ``port``; ``call_id`` names the call in the log."""
        self.counters = DigitsCounters()
        self._port = port
        self._call_id = call_id

    def apply(self, command: SendDigits | DigitsRefused) -> None:
        """Queue the digits, or count and log why not."""
        counters = self.counters
        counters.messages += 1
        if isinstance(command, DigitsRefused):
            counters.refused_invalid += 1
            self._log(counters.refused_invalid, command.reason)
        elif self._port.send_dtmf(command.digits, command.duration_ms):
            counters.digits_queued += len(command.digits)
        else:
            counters.refused_full += 1
            self._log(counters.refused_full, "the call's digit queue is full, or not answered")

    def _log(self, count: int, reason: str) -> None:
        if _is_power_of_ten(count):
            logger.warning(
                "agent dtmf for call %s refused (%d so far): %s", self._call_id, count, reason
            )


def _is_power_of_ten(count: int) -> bool:
    while count % 10 == 0:
        count //= 10
    return count == 1
