"""``make dev``: run the whole system locally until Ctrl-C, then stop everything it started."""

from __future__ import annotations

import os
import signal
import sys
import time
from types import FrameType

from scripts.localstack import LOCAL_KEY_ID, REAPER_EVERY_S, ROOT, Credentials, LocalStack


def _banner(stack: LocalStack) -> str:
    key = stack.credentials.api_key
    return f"""
sipline is running locally.

  REST API        {stack.api_url}/api   (header X-API-Key; the key's id in logs: {LOCAL_KEY_ID})
  SIP webhooks    {stack.api_url}/webhooks/sip/invite, /webhooks/sip/events
  moto server     {stack.moto_url}   (DynamoDB table 'sipline', SQS queue 'sipline-commands'
                  and its dead-letter queue 'sipline-commands-dlq'; the relay makes its own
                  queue 'sipline-edge-local-edge' for the commands of its calls)
  reaper          closes calls no relay will end, every {REAPER_EVERY_S:g} s (logs/reaper.log)
  SIP edge        sip:<user>@127.0.0.1:{stack.sip_port} (UDP, TCP), TLS on {stack.tls_port}
  demo agent      {stack.media_endpoint}   (greets, then echoes you)
  logs            {stack.log_dir}

Try:
  export SIPLINE_API_KEY={key}
  curl -s -H "X-API-Key: $SIPLINE_API_KEY" {stack.api_url}/api/sip

Press Ctrl-C to stop.
"""


def main() -> int:
    credentials = Credentials.load_or_create(ROOT / ".dev" / "credentials.json")
    stack = LocalStack(
        credentials,
        moto_port=int(os.environ.get("SIPLINE_MOTO_PORT", "5000")),
        api_port=int(os.environ.get("SIPLINE_API_PORT", "8000")),
        sip_port=int(os.environ.get("SIPLINE_SIP_PORT", "5060")),
        tls_port=int(os.environ.get("SIPLINE_TLS_PORT", "5061")),
        agent_port=int(os.environ.get("SIPLINE_AGENT_PORT", "8765")),
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        stack.start()
        stack.start_reaper()
        stack.start_demo_agent()
        stack.start_relay()
        print(_banner(stack), flush=True)
        while all(p.poll() is None for p in stack.processes):
            time.sleep(0.5)
        print("a component exited; see the logs above. Stopping.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
        return 0
    except (RuntimeError, TimeoutError) as error:
        print(f"make dev: {error}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
