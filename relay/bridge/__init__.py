"""The agent bridge (contract 4): one WebSocket per call between the relay and the voice agent.

- :mod:`relay.bridge.agent_ws`: :class:`~relay.bridge.agent_ws.AgentBridge`, the per-call
  WebSocket client: connect, open the stream, pump both ways, end.
- :mod:`relay.bridge.media_port`: :class:`~relay.bridge.media_port.MediaPort` and
  :class:`~relay.bridge.media_port.MediaListener`, the seam to the call's media core.
- :mod:`relay.bridge.connect`: the bounded, egress-checked connect attempts.
- :mod:`relay.bridge.agent_connection`: the socket read and written from its I/O callbacks.
- :mod:`relay.bridge.settings`: :class:`~relay.bridge.settings.BridgeSettings`, the bounds.
- :mod:`relay.bridge.outcome`: how a bridge ends (:data:`~relay.bridge.outcome.BridgeOutcome`)
  and its counters.
- :mod:`relay.bridge.twilio_framing`: Twilio Media Streams framing (the default), its wire
  models in :mod:`relay.bridge.twilio_messages`.
- :mod:`relay.bridge.hd_framing`: the HD framing, 16-bit linear PCM at 16 or 48 kHz.
- :mod:`relay.bridge.agent_dtmf`: the agent's ``dtmf`` message, its bounds and effect.
- :mod:`relay.bridge.demo_agent`: a demo agent server (``python -m relay.bridge.demo_agent``).
"""
