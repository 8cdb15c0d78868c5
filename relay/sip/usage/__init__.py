"""Dialog usages (RFC 5057 §3): what runs inside a dialog, driven by the endpoint.

``invite_session.py`` is the INVITE usage both calls share and its events; ``incoming.py`` the
UAS call; ``reinvite.py`` and ``session_timer.py`` the established session; ``leg.py`` a usage's
means of speaking in its dialog; ``table.py`` which usages each dialog carries. The protocol they
implement, :class:`~relay.sip.transaction.match.Usage`, is declared beside the transactions it owns.
"""
