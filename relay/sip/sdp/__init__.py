"""SDP and offer/answer: session descriptions (RFC 8866), codecs, negotiation (RFC 3264)."""
