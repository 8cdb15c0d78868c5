"""sipline's sans-I/O SIP stack, in layers that call downward only (docs/relay.md).

``syntax/`` (grammar, messages, parser) → ``transaction/`` (RFC 3261 §17 machines, matching,
timers) → ``dialog.py`` → ``usage/`` (what runs in a dialog: the INVITE session, re-INVITE,
session timers) → ``endpoint.py`` (the core the transports drive; ``events.py`` is what it tells
the application). ``sdp/`` (SDP and offer/answer) serves the usages. Every transaction is owned
by a :class:`~relay.sip.transaction.match.Usage`; the endpoint dispatches to usages through that
protocol only.
"""
