"""The relay's calls: what to do with a SIP call, from the decision to the last event.

The SIP layer (``relay/sip``) says what happened on the wire; this package decides what the
product does about it and does it, one task per call, through the dependencies it is given
(``deps.py``), so that a test drives a whole call in-process with fakes.

- ``incoming.py``: an incoming call's flow (decide, plan, ring, agent, answer, run, end);
- ``deps.py``: what a call is given (``CallDeps``) and told (``CallSignals``);
- ``recorder.py``: a leg's call events (ids, order, time);
- ``ending.py``: the end reasons, the wait for the first of them, the events that say so;
- ``agent.py``: the agent's ids, context, bridge and the media start, from an accepted INVITE
  or a ``dial`` command alike;
- ``webhook.py``: the INVITE webhook's body;
- ``dtmf.py``: digits from SIP INFO ``application/dtmf-relay``.
"""
