"""A minimal SQS stand-in for the outgoing-call benchmark: one in-memory queue, no redelivery.

``python -m bench.sqs_standin --port N`` serves, on 127.0.0.1 only, the five SQS actions the
relay's command consumer (``relay/control/commands.py``) and the benchmark's dial sender use, in
the AWS JSON 1.0 protocol boto3 speaks to SQS (``X-Amz-Target: AmazonSQS.<Action>``):
``SendMessage``, ``SendMessageBatch``, ``ReceiveMessage`` (long poll: the request waits until a
message is there or ``WaitTimeSeconds`` passes), ``DeleteMessage`` and
``ChangeMessageVisibility`` (both acknowledged). Any queue URL names the one queue.

Why: at 200 dials a second, moto's SQS (its own process, ``bench/outgoing.py --sqs moto``)
spends 15-20 ms of CPU per message and saturates its core, so it, not the relay, sets the
ceiling of the ladder (bench/README.md). This stand-in spends ~0.1 ms a message, so the ladder
measures the relay. What it leaves out, on purpose: a received message is gone (no visibility
timeout, no redelivery, no dead letters), which the benchmark's calls never need, since every
dial is handled at once. The relay's own SQS work (boto3 requests, one ReceiveMessage per batch
of up to 10 and one DeleteMessage per message) is the same against either.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import signal
from collections import deque
from typing import Any

from aiohttp import web

HOST = "127.0.0.1"
MAX_MESSAGES = 10


class Queue:
    """One queue's messages, and the receivers waiting for some."""

    def __init__(self) -> None:
        self.messages: deque[dict[str, Any]] = deque()
        self.arrived = asyncio.Event()
        self.ids = itertools.count(1)
        self.counts = {"sent": 0, "received": 0, "deleted": 0}

    def put(self, body: str, attributes: dict[str, Any]) -> dict[str, str]:
        number = next(self.ids)
        md5 = hashlib.md5(body.encode()).hexdigest()  # noqa: S324 - SQS's own checksum
        self.messages.append(
            {"MessageId": f"m-{number}", "ReceiptHandle": f"r-{number}", "MD5OfBody": md5,
             "Body": body, "Attributes": {"ApproximateReceiveCount": "1"},
             "MessageAttributes": attributes}
        )  # fmt: skip
        self.counts["sent"] += 1
        self.arrived.set()
        return {"MessageId": f"m-{number}", "MD5OfMessageBody": md5}

    async def take(self, count: int, wait_s: float) -> list[dict[str, Any]]:
        deadline = asyncio.get_running_loop().time() + wait_s
        while not self.messages:
            self.arrived.clear()
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return []
            try:
                await asyncio.wait_for(self.arrived.wait(), left)
            except TimeoutError:
                return []
        taken = [self.messages.popleft() for _ in range(min(count, len(self.messages)))]
        self.counts["received"] += len(taken)
        return taken


def build_app() -> web.Application:
    queue = Queue()

    async def action(request: web.Request) -> web.Response:
        name = request.headers.get("X-Amz-Target", "").removeprefix("AmazonSQS.")
        body = json.loads(await request.read() or b"{}")
        answer: dict[str, Any] = {}
        if name == "SendMessage":
            answer = queue.put(body["MessageBody"], body.get("MessageAttributes", {}))
        elif name == "SendMessageBatch":
            answer = {
                "Successful": [
                    {"Id": entry["Id"], **queue.put(entry["MessageBody"], {})}
                    for entry in body["Entries"]
                ],
                "Failed": [],
            }
        elif name == "ReceiveMessage":
            count = min(int(body.get("MaxNumberOfMessages", 1)), MAX_MESSAGES)
            answer = {"Messages": await queue.take(count, float(body.get("WaitTimeSeconds", 0)))}
        elif name == "DeleteMessage":
            queue.counts["deleted"] += 1
        elif name != "ChangeMessageVisibility":
            return web.json_response(
                {"__type": "com.amazonaws.sqs#InvalidAction", "message": f"no {name}"}, status=400
            )
        return web.json_response(answer, content_type="application/x-amz-json-1.0")

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({**queue.counts, "waiting": len(queue.messages)})

    app = web.Application()
    app.router.add_post("/", action)
    app.router.add_post("/{tail:.*}", action)
    app.router.add_get("/stats", stats)
    return app


async def serve(port: int) -> None:
    runner = web.AppRunner(build_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, HOST, port, backlog=1024).start()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    print(f"SQS stand-in on http://{HOST}:{port}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
