"""SIP message parse and serialize throughput on a softphone's INVITE with SDP.

``python -m bench.sip_parser`` parses the INVITE below ``--iterations`` times (20,000 by
default) with :func:`relay.sip.syntax.parser.parse_message`, then serializes the parsed request as
many times with ``bytes()``, and prints messages per second for each, best of ``--repeats``
runs, above the machine's description. A third figure parses and reads the fields the
transaction and dialog layers always touch (top Via branch, CSeq, From/To tags, Call-ID),
since typed header fields are parsed lazily. Every loop is bounded by its iteration count.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from bench.machine import banner
from relay.sip.syntax.message import Request
from relay.sip.syntax.parser import parse_message

# An INVITE as a desktop softphone sends it (Linphone/baresip style headers, PCMU/PCMA/Opus).
INVITE = (
    b"INVITE sip:+15551234567@sip.sipline.example;transport=udp SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK.Q3sGZpD2x;rport\r\n"
    b'From: "Alice Smith" <sip:alice@pbx.example.com>;tag=kfp6a2Tq~\r\n'
    b"To: <sip:+15551234567@sip.sipline.example>\r\n"
    b"CSeq: 20 INVITE\r\n"
    b"Call-ID: 2Hr4xWq8mB\r\n"
    b"Max-Forwards: 70\r\n"
    b"Supported: replaces, outbound, gruu, path\r\n"
    b"Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO, UPDATE\r\n"
    b"Content-Type: application/sdp\r\n"
    b'Contact: <sip:alice@192.0.2.10:5060;transport=udp>;+sip.instance="<urn:uuid:6f2a>"\r\n'
    b"User-Agent: Linphone-Desktop/5.2.4 (belle-sip/5.2.94)\r\n"
    b"Content-Length: 406\r\n"
    b"\r\n"
    b"v=0\r\n"
    b"o=alice 3128 2187 IN IP4 192.0.2.10\r\n"
    b"s=Talk\r\n"
    b"c=IN IP4 192.0.2.10\r\n"
    b"t=0 0\r\n"
    b"a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics\r\n"
    b"m=audio 7078 RTP/AVP 96 0 8 101 97\r\n"
    b"a=rtpmap:96 opus/48000/2\r\n"
    b"a=fmtp:96 useinbandfec=1\r\n"
    b"a=rtpmap:101 telephone-event/48000\r\n"
    b"a=rtpmap:97 telephone-event/8000\r\n"
    b"a=rtcp-fb:* trr-int 1000\r\n"
    b"a=rtcp-fb:* ccm tmmbr\r\n"
    b"a=rtcp:7079\r\n"
    b"a=ptime:20\r\n"
    b"a=sendrecv\r\n"
    b"a=ssrc:2004914462 cname:alice@pbx.example.com\r\n"
)


def _rate(work: Callable[[], object], iterations: int, repeats: int) -> float:
    """Return the best messages-per-second over ``repeats`` runs of ``iterations`` calls."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(iterations):
            work()
        best = min(best, time.perf_counter() - start)
    return iterations / best


def _parse_and_read() -> object:
    request = parse_message(INVITE)
    assert isinstance(request, Request)
    return (request.branch, request.cseq, request.from_.tag, request.to.tag, request.call_id)


def main() -> None:
    """Run the three measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    request = parse_message(INVITE)
    assert len(request.body) == 406 and parse_message(bytes(request)) == request
    print(banner("SIP message parser"))
    figures = {
        "parse": _rate(lambda: parse_message(INVITE), args.iterations, args.repeats),
        "parse + read Via/CSeq/tags": _rate(_parse_and_read, args.iterations, args.repeats),
        "serialize": _rate(lambda: bytes(request), args.iterations, args.repeats),
    }
    print(f"INVITE with SDP, {len(INVITE)} bytes; {args.iterations} iterations, best of "
          f"{args.repeats}")  # fmt: skip
    for name, rate in figures.items():
        print(f"  {name:<28} {rate:>10,.0f} messages/s  ({1e6 / rate:6.1f} µs each)")


if __name__ == "__main__":
    main()
