"""docs/outgoing-linphone.md runs as written: an agent calls linphonec, which answers; the API hangs up.

The page is the spec's "Example: Creating an Outgoing SIP Call to Linphone" on the local stack.
This test takes from the page itself, so that the page cannot rot:

- the linphonec configuration (its ``cat > lrc <<'EOF'`` heredoc), with only the two ports the
  page fixes (SIP 5066, RTP 7078) swapped for free ones, and its command line's options (``-a``:
  auto-answer), run by the harness of tests/interop/linphone.py;
- the API session between the ``walkthrough-linphone`` markers, run with ``bash -euo pipefail``
  and stdin closed (so the page's "Press Enter to hang up" returns at once), with only the three
  lines that name the stack and the callee changed: the test's stack runs on other ports, and
  linphonec on a free one.

Then it checks what the page says happens: the POST's call (outgoing, caller ``sipline``), the
agent joined, the DELETE answered 204, linphonec received an INVITE from ``sipline``, answered
and got the media running, received the relay's BYE and answered it, and the call read back
ended ``agent_hangup`` with a normal SIP termination.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.interop.linphone import BYE_ANSWERED, Linphonec
from tests.interop.stack import InteropStack

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "outgoing-linphone.md"
URL_LINE = "export SIPLINE_API_URL=http://127.0.0.1:8000\n"
KEY_LINE_PREFIX = "export SIPLINE_API_KEY=$(python3 -c"
CALLEE_LINE = "export CALLEE=sip:linphone@127.0.0.1:5066\n"
PAGE_SIP_PORT, PAGE_RTP_PORT = "sip_port=5066", "audio_rtp_port=7078"
HARNESS_OPTIONS = {"-a": "auto_answer"}
"""The linphonec options the page may use, and the harness's name for each."""
SCRIPT_BOUND_S = 90  # the page's own loops are bounded (2 x 10 s); this bounds the rest


def page() -> str:
    return PAGE.read_text(encoding="utf-8")


def linphone_config() -> str:
    """The page's ``lrc`` with its two ports made placeholders for the harness."""
    found = re.search(r"cat > lrc <<'EOF'\n(.*?)^EOF$", page(), re.S | re.M)
    assert found, "docs/outgoing-linphone.md lost its lrc heredoc"
    text = found.group(1)
    assert PAGE_SIP_PORT in text and PAGE_RTP_PORT in text, text
    text = text.replace("{", "{{").replace("}", "}}")
    return text.replace(PAGE_SIP_PORT, "sip_port={sip_port}").replace(
        PAGE_RTP_PORT, "audio_rtp_port={rtp_port}"
    )


def linphone_options() -> list[str]:
    """The options of the page's linphonec command after ``-c lrc``."""
    found = re.search(r"^HOME=\S+ linphonec -c lrc(.*)$", page(), re.M)
    assert found, "docs/outgoing-linphone.md lost its linphonec command"
    options = found.group(1).split()
    assert set(options) <= set(HARNESS_OPTIONS), f"the harness cannot run {options}"
    return options


def api_session(api_url: str, api_key: str, callee: str) -> str:
    block = re.search(
        r"<!-- walkthrough-linphone:start -->\n```bash\n(.*?)```\n<!-- walkthrough-linphone:end -->",
        page(),
        re.S,
    )
    assert block, "docs/outgoing-linphone.md lost its walk-through markers"
    script = block.group(1)
    assert URL_LINE in script and KEY_LINE_PREFIX in script and CALLEE_LINE in script, script
    replaced = []
    for line in script.splitlines(keepends=True):
        if line == URL_LINE:
            line = f"export SIPLINE_API_URL={api_url}\n"
        elif line.startswith(KEY_LINE_PREFIX):
            line = f"export SIPLINE_API_KEY={api_key}\n"
        elif line == CALLEE_LINE:
            line = f"export CALLEE={callee}\n"
        replaced.append(line)
    return "".join(replaced)


def json_objects(output: str) -> list[dict[str, object]]:
    """Every line of ``output`` that is a JSON object, parsed."""
    objects = []
    for line in output.splitlines():
        if line.startswith("{"):
            objects.append(json.loads(line))
    return objects


def test_the_linphone_walkthrough_works_as_written(stack: InteropStack, tmp_path: Path) -> None:
    options = {HARNESS_OPTIONS[option]: True for option in linphone_options()}
    assert options == {"auto_answer": True}, "the callee must answer by itself"
    with Linphonec(tmp_path, None, config=linphone_config(), lifetime_s=120, **options) as phone:
        run = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", api_session(
                stack.local.api_url, stack.local.credentials.api_key, phone.uri()
            )],
            cwd=ROOT,
            env=dict(os.environ),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=SCRIPT_BOUND_S,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout + run.stderr
        phone.wait_log(r"^BYE sip:", timeout_s=10)  # the relay's BYE, as linphone received it
        phone.wait_log(BYE_ANSWERED, timeout_s=10)  # and linphone's 200 to it

    out = run.stdout
    created, final = json_objects(out)[0], json_objects(out)[-1]
    assert created["direction"] == "outgoing" and created["ended"] is None, created
    assert created["caller"] == "sipline" and created["callee"] == "linphone", created
    assert re.search(r"^answered, agent joined at \S+Z$", out, re.M), out
    assert "DELETE: 204" in out.splitlines(), out
    assert final["callId"] == created["callId"], final
    assert final["ended"] is not None and final["joined"] is not None, final
    assert final["endReason"] == "agent_hangup", final
    sip = final["sipDetails"]
    assert isinstance(sip, dict) and sip["terminationReason"] == "SIP_TERMINATION_NORMAL", final

    assert phone.states()[:3] == ["IncomingReceived", "Connected", "StreamsRunning"], phone.states()
    invite = re.search(
        r"^INVITE sip:linphone@127\.0\.0\.1:\d+ SIP/2\.0\r?\n(?:.+\r?\n)*", phone.log, re.M
    )
    assert invite, phone.log[-4000:]
    assert re.search(r"^From: .*<?sip:sipline@", invite.group(0), re.M | re.I), invite.group(0)
