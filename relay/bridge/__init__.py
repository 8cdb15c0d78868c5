"""The agent bridge (contract 4): one WebSocket per call between the relay and the voice agent.

- :mod:`relay.bridge.twilio_framing`: Twilio Media Streams messages (the default framing).
- :mod:`relay.bridge.hd_framing`: the HD framing, 16-bit linear PCM at 16 or 48 kHz.
- :mod:`relay.bridge.agent_ws`: :class:`~relay.bridge.agent_ws.AgentBridge`, the per-call
  WebSocket client, and :class:`~relay.bridge.agent_ws.MediaPort`, its seam to the media core.
- :mod:`relay.bridge.demo_agent`: a demo agent server (``python -m relay.bridge.demo_agent``).
"""
