"""linphonec 5.1 headless: one call, driven through its stdin, as the caller or as the callee.

linphonec rewrites its ``-c`` file, so each run gets a scratch copy; ``HOME`` is a scratch
directory with ``.local/share/linphone`` in it (without it the sqlite DB fails to open and no
SIP listening point is made). ``quit`` never returns, so the process always runs under
``timeout -k 3`` and is killed with its group at the end. Progress is read from its debug log
(``-d 1 -l``): liblinphone logs each call state change as ``moving from state A to B``, and every
SIP message it sends or receives.

As the callee (``target=None``, ``auto_answer=True``: linphonec's ``-a``), it listens on
`Linphonec.sip_port` of 127.0.0.1 and answers every incoming call at once; `Linphonec.uri` is
the address to dial. A walk-through may hand it its own configuration text (``config=``, with
``{sip_port}`` and ``{rtp_port}`` where the free ports go).

Seen with 5.1.65 driven this way (a pipe as stdin, as in TOOLING's recipe): after a
``terminate`` it sends its BYE and then handles no SIP at all (the 200 the relay sends back
within a millisecond is never logged as received, tshark shows it on the wire); the call only
reaches ``End`` when ``quit`` tears everything down. So a hang-up from linphonec is checked at
the relay: the BYE in linphone's log, the call record and the agent's ``stop``.

That freeze is ALSA ``null``'s doing (tests/interop/pulseaudio.py says why); with ``pulse=`` a
`PulseAudio` of the test's is linphone's sound card instead (`PULSE_CONFIG`) and linphone keeps
handling SIP after it stops a stream: a hang-up, a hold, a transfer, a replaced call. What
linphone 5.1 does then, seen with SIPp and baresip (tests/interop/test_transfer_peers.py):
- REFER in a call (transferee): 202, a hold re-INVITE (``a=sendonly``, ``Subject: Call on
  hold``), an INVITE to the Refer-To URI with its embedded headers made headers (RFC 3261
  §19.1.5) and ``Referred-By``, NOTIFY ``SIP/2.0 100 Trying`` (``Event: refer``, no ``id``), then
  the final sipfrag with ``Subscription-State: terminated;reason=reason=noresource`` (sic). It
  leaves the BYE of the old call to the transferor.
- INVITE with ``Replaces`` (RFC 3891) naming a call it answered (auto-answer): it answers the new
  INVITE and sends BYE on the replaced call (``[sip] auto_answer_replacing_calls``, default on).
  A ``Replaces`` naming no dialog of its own is answered as a new call (not RFC 3891 §3's 481),
  so a test proves the replacement by the old call's BYE, not by the new call's 200.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.interop.pulseaudio import SINK, SOURCE, PulseAudio
from tests.interop.stack import require
from tests.support.ports import free_port_range, free_sip_port

CONFIG = """\
[sip]
bind_address=127.0.0.1
use_ipv6=0
sip_port={sip_port}
sip_tcp_port=-1
sip_tls_port=-1
[rtp]
bind_address=127.0.0.1
audio_rtp_port={rtp_port}
[sound]
alsadev=null
playback_dev_id=ALSA: null
capture_dev_id=ALSA: null
ringer_dev_id=ALSA: null
echocancellation=0
[video]
capture=0
display=0
"""
PULSE_CONFIG = (
    CONFIG.split("[sound]")[0]
    + f"""\
[sound]
playback_dev_id={SINK}
ringer_dev_id={SINK}
media_dev_id={SINK}
capture_dev_id={SOURCE}
echocancellation=0
[video]
capture=0
display=0
"""
)
"""`CONFIG` with a `PulseAudio`'s null sink and source as the sound devices."""
LISTEN_S = 10.0
"""How long linphonec may take to open its SIP socket: a bound on a wait, not a timing."""
BYE_ANSWERED = r"^SIP/2.0 200 O[Kk]\r?\n(?:.+\r?\n)*?CSeq: \d+ BYE"
"""A 200 to a BYE in linphone's log (the one it sent, or the one it received)."""
STATE = re.compile(r"moving from state LinphoneCall(\w+) to LinphoneCall(\w+)")


def _udp_bound(port: int) -> bool:
    """True if something holds UDP ``port`` on 127.0.0.1 (our bind is refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


class LinphoneError(AssertionError):
    """linphonec did not get where the test waited for; the message carries its log's tail."""


class Linphonec:
    """One linphonec placing one call (see the module docstring); use as a context manager."""

    def __init__(
        self,
        directory: Path,
        target: str | None,
        *,
        lifetime_s: int = 20,
        auto_answer: bool = False,
        config: str | None = None,
        pulse: PulseAudio | None = None,
    ) -> None:
        assert target is not None or auto_answer, "a linphonec that neither calls nor answers"
        self.directory = directory
        self.target = target
        self.lifetime_s = lifetime_s
        self.auto_answer = auto_answer
        self.pulse = pulse
        if config is None:
            config = CONFIG if pulse is None else PULSE_CONFIG
        self.sip_port = free_sip_port()
        self.log_path = directory / "linphone.log"
        self._process: subprocess.Popen[bytes] | None = None
        home = directory / "home"
        (home / ".local" / "share" / "linphone").mkdir(parents=True, exist_ok=True)
        self._home = home
        self._config = directory / "linphonerc"
        self._config.write_text(
            config.format(sip_port=self.sip_port, rtp_port=free_port_range(2)[0])
        )

    def uri(self, user: str = "linphone") -> str:
        """The address that reaches this linphonec (its UDP listening point)."""
        return f"sip:{user}@127.0.0.1:{self.sip_port}"

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.sip_port}"

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def states(self) -> list[str]:
        """The call states linphone has moved to so far, in order."""
        return [new for _, new in STATE.findall(self.log)]

    def __enter__(self) -> Linphonec:
        linphonec = require("linphonec")
        command = ["timeout", "-k", "3", str(self.lifetime_s), linphonec, "-c", str(self._config)]
        command += ["-s", self.target] if self.target is not None else []
        command += ["-a"] if self.auto_answer else []
        command += ["-d", "1", "-l", str(self.log_path)]
        output = open(self.directory / "linphonec.out", "wb")  # noqa: SIM115 - the process's
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HOME": str(self._home), **self._pulse_environment()},
            start_new_session=True,
        )
        output.close()
        if self.target is None:
            self._wait_listening()
        return self

    def _pulse_environment(self) -> dict[str, str]:
        return {} if self.pulse is None else {"PULSE_SERVER": self.pulse.server}

    def _wait_listening(self) -> None:
        """Wait until linphonec holds its UDP SIP port (a callee must, before anyone dials)."""
        deadline = time.monotonic() + LISTEN_S
        while not _udp_bound(self.sip_port):
            assert self._process is not None
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise LinphoneError(
                    f"linphonec never listened on {self.sip_port}\n{self.log[-4000:]}"
                )
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        assert self._process is not None
        if self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait(timeout=5)
        if self._process.stdin is not None:
            self._process.stdin.close()

    def command(self, line: str) -> None:
        """Send a command line (``terminate``, ``quit``...) to linphonec's stdin."""
        assert self._process is not None and self._process.stdin is not None
        self._process.stdin.write(line.encode() + b"\n")
        self._process.stdin.flush()

    def wait_state(self, state: str, timeout_s: float = 10.0) -> None:
        """Wait until the call has moved to ``state`` (``StreamsRunning``, ``End``, ...)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if state in self.states():
                return
            time.sleep(0.1)
        raise LinphoneError(
            f"no {state} in {timeout_s}s; states {self.states()}\n{self.log[-4000:]}"
        )

    def wait_log(self, pattern: str, timeout_s: float = 10.0) -> re.Match[str]:
        """Wait until ``pattern`` (a regex, multiline) shows in the log; return the match."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if found := re.search(pattern, self.log, re.M):
                return found
            time.sleep(0.1)
        raise LinphoneError(f"no /{pattern}/ in {timeout_s}s\n{self.log[-4000:]}")
