"""A carrier reaches a relay behind 1:1 NAT by its public address only: signalling and media.

The relay runs as on Fargate (tests/interop/netns.py): in a namespace of its own with a private
address (10.0.1.10), bound to ``0.0.0.0``, behind a router that maps the public address
(203.0.113.10) to it one to one, as the internet gateway does. It is started with
``SIPLINE_PUBLIC_ADDRESS=ecs`` and ``SIPLINE_EDGE_ID=ecs``, and finds both the way it does on
ECS (relay/ecs_identity.py): a task metadata endpoint answering AWS's documented example with
the relay's private address, then moto's EC2, where the task's ENI has the public address as its
Elastic IP. The control plane (moto + ``chalice local``) and the test agent run in the relay's
namespace on 127.0.0.1, as the other interop tests run them.

SIPp, in the carrier's namespace, calls the public address and streams a chirp (rtp_stream.xml);
the agent plays a 1 kHz tone back. What the carrier sees (SIPp's message trace, and a capture on
its own interface) is asserted: the ``Contact`` and the SDP's ``c=`` and ``o=`` carry the public
address; the RTP SIPp sends to it reaches the agent, the relay's RTP comes from it and carries the
agent's tone; the BYE, sent to the ``Contact`` (``[next_url]``), is answered 200; and the private
address appears nowhere on the carrier's wire. (docs/relay.md, "Running on ECS: the public
address".)
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import boto3
import numpy as np
import pytest

from scripts.localstack import REGION
from tests.interop.agent_server import AgentServer
from tests.interop.netns import PEER, PRIVATE, PUBLIC, NatNetwork, capture
from tests.interop.sipp import SippRun, run_sipp_uac, scenario
from tests.interop.stack import InteropStack, require
from tests.interop.tone import dominant_frequency, sounding, ulaw_samples
from tests.support.ecs_metadata import (
    DOCUMENTED_TASK_ID,
    MetadataServer,
    task_document,
    task_interface,
)
from tests.support.localstack import local_stack
from tests.support.pcap import UdpDatagram, read_udp

pytestmark = [pytest.mark.interop, pytest.mark.timeout(300)]

SERVICE = "interop_public_address"
AGENT = "public_address"
AGENT_TONE_HZ = 1000
STREAM_S = 2
TOLERANCE_HZ = 10
RTP_HEADER_BYTES = 12  # RFC 3550 §5.1, no CSRC, no extension
MIN_PACKETS = STREAM_S * 50 // 2
"""At least half of the chirp's 20 ms packets one way, and as many of the relay's the other: a
bound loose enough for a loaded machine; the point is that media flows, not how much."""


def test_the_carrier_sees_only_the_public_address_and_media_flows_both_ways(
    tmp_path: Path,
) -> None:
    for tool in ("sipp", "sox", "timeout"):
        require(tool)
    chirp = tmp_path / "chirp.wav"  # SIPp's rtp_stream reads it from its working directory
    subprocess.run(
        ["timeout", "-k", "3", "20", "sox", "-n", "-r", "8000", "-c", "1", "-e", "u-law",
         str(chirp), "synth", str(STREAM_S), "sine", "300-3000", "vol", "0.5"],
        check=True,
    )  # fmt: skip
    home = tmp_path / "stack"
    home.mkdir()

    with (
        NatNetwork() as net,
        net.inside(net.relay),
        local_stack(home, relay=False) as local,
        AgentServer() as agent,
    ):
        ec2 = boto3.client(
            "ec2",
            endpoint_url=local.moto_url,
            region_name=REGION,
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        mac = task_interface(
            ec2,
            private_ipv4=PRIVATE,
            subnet_cidr="10.0.1.0/24",
            vpc_cidr="10.0.0.0/16",
            public_ipv4=PUBLIC,
        )
        with MetadataServer(task_document(private_ipv4=PRIVATE, mac=mac)).running() as metadata:
            local.start_relay(
                {
                    "SIPLINE_SIP_HOST": "0.0.0.0",
                    "SIPLINE_PUBLIC_ADDRESS": "ecs",
                    "SIPLINE_EDGE_ID": "ecs",
                    "ECS_CONTAINER_METADATA_URI_V4": metadata.url,
                }
            )
        stack = InteropStack(local, home)
        stack.set_allowed_cidrs([f"{PEER}/32"])  # the carrier's own address: DNAT keeps it
        agent_id = stack.add_agent(
            "interop-public-address",
            f"^{SERVICE}$",
            agent.url(AGENT, tone_hz=AGENT_TONE_HZ, tone_after_s=0.2),
        )
        with capture(net.exec_prefix(net.carrier), net.carrier_interface, tmp_path / "c.pcap"):
            sipp = run_sipp_uac(
                f"{PUBLIC}:{local.sip_port}",
                tmp_path,
                service=SERVICE,
                scenario_file=scenario(
                    "rtp_stream.xml", tmp_path, pause_ms=str(STREAM_S * 1000 + 500)
                ),
                local_ip=PEER,
                prefix=tuple(net.exec_prefix(net.carrier)),
            )
        relay_log = stack.relay_log()
        assert sipp.returncode == 0, sipp.explain() + relay_log[-3000:]
        [session] = agent.wait_sessions(AGENT)
        assert session.closed.wait(10), "the relay did not close the agent's socket after BYE"
        [call] = stack.wait_for_call(agent_id)

    assert f"public address {PUBLIC}, edge id {DOCUMENTED_TASK_ID}" in relay_log, relay_log
    assert call["endReason"] == "hangup" and call["joined"] is not None, call

    # Signalling, as the carrier received it.
    assert sipp.exchange()[-3:] == ["ACK", "BYE", "200"], sipp.exchange()
    answer = _received(sipp, "SIP/2.0 200", "CSeq: 1 INVITE")
    assert re.search(
        rf"^Contact: <sip:([^@>]+@)?{re.escape(PUBLIC)}:{local.sip_port}[;>]", answer, re.M
    ), answer
    assert re.search(rf"^c=IN IP4 {re.escape(PUBLIC)}\r?$", answer, re.M), answer
    assert re.search(rf"^o=.* IN IP4 {re.escape(PUBLIC)}\r?$", answer, re.M), answer
    bye = _sent(sipp, "BYE ")  # to [next_url], the Contact of the 200
    assert re.search(rf"^BYE sip:([^@ ]+@)?{re.escape(PUBLIC)}:{local.sip_port}[; ]", bye, re.M), (
        bye
    )
    assert PRIVATE not in _all_received(sipp), "the private address reached the carrier"

    # Media, as the carrier's interface carried it.
    relay_port = int(_media_port(answer))
    sipp_port = int(_media_port(_sent(sipp, "INVITE ")))
    datagrams = read_udp(tmp_path / "c.pcap")
    to_relay = _flow(datagrams, (PEER, sipp_port), (PUBLIC, relay_port))
    from_relay = _flow(datagrams, (PUBLIC, relay_port), (PEER, sipp_port))
    assert len(to_relay) >= MIN_PACKETS, f"SIPp sent {len(to_relay)} RTP packets to the relay"
    assert len(from_relay) >= MIN_PACKETS, f"the relay sent {len(from_relay)} RTP packets back"
    assert all(PRIVATE not in (d.source[0], d.destination[0]) for d in datagrams)
    assert all(PRIVATE.encode() not in d.payload for d in datagrams)
    assert len(sounding(ulaw_samples(session.caller_audio), 8000)) > 0, "the agent heard nothing"
    played = sounding(
        ulaw_samples(b"".join(d.payload[RTP_HEADER_BYTES:] for d in from_relay)), 8000
    )
    assert len(played) >= 8000 // 2, "the agent's tone did not come back to the carrier"
    assert abs(dominant_frequency(np.asarray(played), 8000) - AGENT_TONE_HZ) < TOLERANCE_HZ


def _blocks(sipp: SippRun) -> list[str]:
    """SIPp's trace, one block per message (its separator lines start with dashes)."""
    return re.split(r"^-{10,}.*$", sipp.messages, flags=re.M)


def _all_received(sipp: SippRun) -> str:
    return "\n".join(block for block in _blocks(sipp) if "message received" in block)


def _received(sipp: SippRun, start: str, containing: str) -> str:
    for block in _blocks(sipp):
        if "message received" in block and start in block and containing in block:
            return block
    raise AssertionError(f"SIPp received no {start!r} with {containing!r}:\n{sipp.messages}")


def _sent(sipp: SippRun, start: str) -> str:
    for block in _blocks(sipp):
        if "message sent" in block and f"\n{start}" in block:
            return block
    raise AssertionError(f"SIPp sent no {start!r}:\n{sipp.messages}")


def _media_port(message: str) -> str:
    found = re.search(r"^m=audio (\d+) ", message, re.M)
    assert found, message
    return found[1]


def _flow(
    datagrams: list[UdpDatagram], source: tuple[str, int], destination: tuple[str, int]
) -> list[UdpDatagram]:
    return [d for d in datagrams if d.source == source and d.destination == destination]
