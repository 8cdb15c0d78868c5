"""Play the edge by hand: send a signed INVITE webhook or an event batch to the control plane.

Until a SIP phone can call the relay, this is how to see a routing decision locally:

    .venv/bin/python -m scripts.edge invite --to sales -H "X-Customer-Name: Bob"
    .venv/bin/python -m scripts.edge events tests/vectors/events/incoming_hangup.json --call-id <id>

With ``--call-id``, the batch is rewritten for that call: its ``callId``, unique ``eventId`` values,
and its times moved so that its last event happened now.

The secret and the URL come from ``.dev/credentials.json`` (written by ``make dev``) unless
``SIPLINE_WEBHOOK_SECRET`` / ``SIPLINE_API_URL`` are set.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chalicelib import signing
from scripts.localstack import ROOT


def _secret() -> str:
    if os.environ.get("SIPLINE_WEBHOOK_SECRET"):
        return os.environ["SIPLINE_WEBHOOK_SECRET"]
    return str(json.loads((ROOT / ".dev" / "credentials.json").read_text())["webhook_secret"])


def post(path: str, body: dict[str, Any]) -> tuple[int, Any]:
    """POST a signed JSON body to the control plane; return the status and the parsed answer."""
    url = os.environ.get("SIPLINE_API_URL", "http://127.0.0.1:8000") + path
    raw = json.dumps(body).encode()
    signed = signing.sign(_secret(), int(time.time()), raw, method="POST", path=path)
    headers = {"Content-Type": "application/json", **signed}
    request = urllib.request.Request(url, data=raw, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def invite(args: argparse.Namespace) -> dict[str, Any]:
    headers = [[n.strip(), v.strip()] for n, _, v in (h.partition(":") for h in args.header)]
    return {
        "sourceIp": args.source_ip,
        "sourcePort": 5060,
        "transport": "udp",
        "requestUri": f"sip:{args.to}@{args.domain}",
        "fromUri": f"sip:{args.caller}@carrier.example",
        "fromDisplayName": args.display_name,
        "fromTag": uuid.uuid4().hex[:10],
        "toUri": f"sip:{args.to}@{args.domain}",
        "sipCallId": f"{uuid.uuid4()}@carrier.example",
        "headers": headers,
        "offeredCodecs": ["PCMU/8000", "PCMA/8000"],
    }


def _when(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(event["occurredAt"]).replace("Z", "+00:00"))


def events(args: argparse.Namespace) -> dict[str, Any]:
    batch: dict[str, Any] = json.loads(Path(args.file).read_text())
    if not args.call_id:
        return batch
    # The call was just made: its events happened up to now, not on the vector's date (a call
    # bills nothing from before its creation, docs/billing.md).
    shift = datetime.now(UTC) - max(_when(e) for e in batch["events"])
    for event in batch["events"]:
        event["occurredAt"] = (_when(event) + shift).isoformat().replace("+00:00", "Z")
        if event.get("callId"):
            event["callId"] = args.call_id
            event["eventId"] = f"{args.call_id}:{event['eventId']}"
    return batch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.edge", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("invite", help="ask for a decision on an INVITE")
    one.add_argument("--to", required=True, help="the To user, e.g. sales or agent_<id>")
    one.add_argument("--domain", default="sip.localhost")
    one.add_argument("--caller", default="+15551234567")
    one.add_argument("--display-name", default="Alice Caller")
    one.add_argument("--source-ip", default="127.0.0.1")
    one.add_argument("-H", "--header", action="append", default=[], help="'X-Name: value'")
    batch = commands.add_parser("events", help="post an event batch (JSON file)")
    batch.add_argument("file")
    batch.add_argument(
        "--call-id",
        help="rewrite the batch's callId (and make its eventIds unique), its last event now",
    )
    args = parser.parse_args(argv)
    body = invite(args) if args.command == "invite" else events(args)
    path = "/webhooks/sip/invite" if args.command == "invite" else "/webhooks/sip/events"
    status, answer = post(path, body)
    print(json.dumps(answer, indent=2))
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
