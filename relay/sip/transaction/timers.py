"""SIP transaction timer values (RFC 3261 §17 and Table 4 of Appendix A; RFC 6026).

Every transaction timer is derived from three base values, ``T1`` (round-trip
estimate), ``T2`` (maximum retransmission interval) and ``T4`` (maximum time a
message stays in the network). A ``Timers`` instance is passed to each
transaction explicitly: there is no module-level default and no setter, so two
endpoints in one process (or two tests) can run with different values.

The timers that depend on the transport (D, I, J, K) are methods taking
``reliable``; the others are properties. All values are seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

TIMER_D_MIN_UNRELIABLE_S = 32.0  # RFC 3261 Table 4: "> 32s for UDP"


@dataclass(frozen=True, slots=True)
class Timers:
    """Hold T1, T2 and T4 and derive Timers A to M from them (RFC 3261 Table 4).

    Attributes:
        T1: RTT estimate, 500 ms by default (RFC 3261 §17.1.1.1).
        T2: Maximum retransmit interval for non-INVITE requests and INVITE
            responses, 4 s by default (RFC 3261 §17.1.2.2).
        T4: Maximum duration a message remains in the network, 5 s by default
            (RFC 3261 §17.1.2.2).

    Raises:
        ValueError: if a value is not positive, or ``T2 < T1``.
    """

    T1: float = 0.5
    T2: float = 4.0
    T4: float = 5.0

    def __post_init__(self) -> None:
        if self.T1 <= 0 or self.T2 <= 0 or self.T4 <= 0:
            raise ValueError(f"SIP timers must be positive, got {self!r}")
        if self.T2 < self.T1:
            raise ValueError(f"T2 ({self.T2}) must not be smaller than T1 ({self.T1})")

    @property
    def A(self) -> float:
        """Initial INVITE request retransmit interval, unreliable only (RFC 3261 §17.1.1.2)."""
        return self.T1

    @property
    def B(self) -> float:
        """INVITE client transaction timeout, 64*T1 (RFC 3261 §17.1.1.2)."""
        return 64 * self.T1

    def D(self, *, reliable: bool) -> float:
        """Wait time for response retransmits in the INVITE client's Completed state.

        RFC 3261 §17.1.1.2 asks for at least 32 s on unreliable transports and
        zero on reliable ones. We use ``max(32 s, 64*T1)`` so that a raised T1
        still covers the server's Timer H window of response retransmissions.
        """
        if reliable:
            return 0.0
        return max(TIMER_D_MIN_UNRELIABLE_S, 64 * self.T1)

    @property
    def E(self) -> float:
        """Initial non-INVITE request retransmit interval, unreliable only (RFC 3261 §17.1.2.2)."""
        return self.T1

    @property
    def F(self) -> float:
        """Non-INVITE client transaction timeout, 64*T1 (RFC 3261 §17.1.2.2)."""
        return 64 * self.T1

    @property
    def G(self) -> float:
        """Initial INVITE final-response retransmit interval, unreliable only (RFC 3261 §17.2.1)."""
        return self.T1

    @property
    def H(self) -> float:
        """Wait time for the ACK to a non-2xx final response, 64*T1 (RFC 3261 §17.2.1)."""
        return 64 * self.T1

    def I(self, *, reliable: bool) -> float:  # noqa: E743 - the RFC's name
        """Wait time for ACK retransmits in the Confirmed state: T4, or 0 if reliable (§17.2.1)."""
        return 0.0 if reliable else self.T4

    def J(self, *, reliable: bool) -> float:
        """Wait time for non-INVITE request retransmits: 64*T1, or 0 if reliable (§17.2.2)."""
        return 0.0 if reliable else 64 * self.T1

    def K(self, *, reliable: bool) -> float:
        """Wait time for non-INVITE response retransmits: T4, or 0 if reliable (§17.1.2.2)."""
        return 0.0 if reliable else self.T4

    @property
    def L(self) -> float:
        """Wait time for retransmits of an accepted INVITE, 64*T1 (RFC 6026 §7.1)."""
        return 64 * self.T1

    @property
    def M(self) -> float:
        """Wait time for retransmits of the 2xx to an INVITE, 64*T1 (RFC 6026 §7.2)."""
        return 64 * self.T1
