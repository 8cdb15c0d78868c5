"""baresip 1.0 headless, driven over its ``ctrl_tcp`` JSON control.

:class:`Baresip` writes a config directory (SIP on a free 127.0.0.1 port, the ALSA ``null``
device as player, ``ausine`` at 440 Hz as source, its own RTP port range; its ports are chosen
as it starts, and again if baresip finds one taken), starts baresip under ``timeout -k 3``, and
talks netstrings of JSON to ``ctrl_tcp``: ``dial``, ``hangup``, and
events such as ``CALL_ESTABLISHED`` and ``CALL_CLOSED``.

baresip 1.0.0's ``aufile`` module is a source only (its WAV *player* came later), so what
baresip hears is recorded with the ``sndfile`` module instead: it dumps the decoded audio of
each call to ``dump-<time>-dec.wav`` (and the encoded side to ``-enc.wav``) under
``snd_path``, at the codec's rate, mono 16-bit.

A REFER in a call (baresip 1.0's ``call.c`` and ``menu`` module; tests/interop/test_transfer_peers.py):
with ``follow_refer`` (the default; the account's ``call_transfer``) baresip answers 202 (an
implicit subscription of 60 s), sends NOTIFY ``SIP/2.0 100 Trying`` (``Event: refer;id=<CSeq>``),
emits ``TRANSFER`` (its ``param``: the Refer-To value) and, because ``menu`` is loaded, calls the
Refer-To URI at once from the same account, without holding the first call. When that call is
answered it sends NOTIFY ``SIP/2.0 200 OK`` (``terminated;reason=noresource``); when it fails,
the failure's status line. It never sends BYE on the referred call: the transferor ends it
(RFC 5589 §6.1). Limits: the Refer-To URI is dialled as it is, embedded headers included
(``?X-A=b`` stays in the Request-URI and To, it is not made a header), and the URI passes once
through a printf-style formatter, so a ``%`` escape in it is mangled (``%20t`` became ``?``):
transfer targets for baresip carry no embedded headers. With ``follow_refer=False``
(``call_transfer=no``) it answers a REFER 501 Not Implemented. baresip 1.0 does not implement
``Replaces`` (RFC 3891; no code for it in its source): an INVITE with ``Require: replaces`` gets
420 Bad Extension, ``Unsupported: replaces``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.interop.stack import require
from tests.support.ports import (
    PortTaken,
    address_in_use,
    free_port_range,
    free_sip_port,
    with_fresh_ports,
)

SOURCE_HZ = 440
CONFIG = """\
poll_method epoll
sip_listen 127.0.0.1:{sip_port}
net_interface 127.0.0.1
audio_player alsa,null
audio_alert alsa,null
audio_source ausine,{source_hz}
ausrc_srate 48000
auplay_srate 48000
ausrc_channels 2
auplay_channels 2
rtp_ports {rtp_low}-{rtp_high}
module_path /usr/lib/baresip/modules
module g711.so
module g722.so
module opus.so
module ausine.so
module alsa.so
module sndfile.so
snd_path {directory}
module ctrl_tcp.so
ctrl_tcp_listen 127.0.0.1:{ctrl_port}
module_tmp account.so
module_app menu.so
{extra}
"""


class BaresipError(AssertionError):
    """baresip did not do what the test waited for; the message carries its log."""


class Baresip:
    """One headless baresip (see the module docstring); use as a context manager."""

    def __init__(
        self,
        directory: Path,
        *,
        account_params: str = "",
        lifetime_s: int = 30,
        extra_config: str = "",
        follow_refer: bool = True,
    ) -> None:
        self.directory = directory
        self.account_params = account_params + ("" if follow_refer else ";call_transfer=no")
        self.extra_config = extra_config
        self.lifetime_s = lifetime_s
        self.sip_port = self.ctrl_port = 0
        self.rtp_ports = (0, 0)
        self.events: list[dict[str, Any]] = []
        self._process: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._buffer = b""
        directory.mkdir(parents=True, exist_ok=True)

    def _configure(self) -> None:
        """Choose free ports and write baresip's config and account files for them."""
        self.sip_port = free_sip_port(tls_above=True)  # TLS listens on the port above
        self.ctrl_port = free_sip_port(avoid=(self.sip_port, self.sip_port + 1))
        self.rtp_ports = free_port_range(20)
        (self.directory / "config").write_text(
            CONFIG.format(
                sip_port=self.sip_port,
                ctrl_port=self.ctrl_port,
                source_hz=SOURCE_HZ,
                rtp_low=self.rtp_ports[0],
                rtp_high=self.rtp_ports[1],
                directory=self.directory,
                extra=self.extra_config,
            )
        )
        (self.directory / "accounts").write_text(
            f"<sip:bob@127.0.0.1>;regint=0{self.account_params}\n"
        )

    @property
    def log(self) -> str:
        path = self.directory / "baresip.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __enter__(self) -> Baresip:
        self._control = with_fresh_ports(self._start)
        return self

    def _start(self) -> socket.socket:
        """Start baresip on fresh ports; `PortTaken` if one was taken since it was probed."""
        baresip = require("baresip")
        self._configure()
        log = open(self.directory / "baresip.log", "wb")  # noqa: SIM115 - closed by the process
        self._process = subprocess.Popen(
            ["timeout", "-k", "3", str(self.lifetime_s), baresip, "-f", str(self.directory)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        try:
            return self._connect_control()
        except BaresipError:
            if self._process.poll() is not None and address_in_use(self.log):
                raise PortTaken(self.log) from None
            raise

    def _connect_control(self) -> socket.socket:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise BaresipError(f"baresip exited with {self._process.returncode}:\n{self.log}")
            try:
                return socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=1)
            except OSError:
                time.sleep(0.1)
        raise BaresipError(f"baresip's ctrl_tcp never listened:\n{self.log}")

    def __exit__(self, *exc: object) -> None:
        if self._control is not None:
            with contextlib.suppress(OSError):  # baresip may be gone already
                self._send({"command": "quit", "token": "quit"})
            self._control.close()
        if self._process is not None:
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait(timeout=5)

    def _send(self, command: dict[str, str]) -> None:
        assert self._control is not None
        data = json.dumps(command).encode()
        self._control.sendall(str(len(data)).encode() + b":" + data + b",")

    def dial(self, uri: str) -> None:
        self._send({"command": "dial", "params": uri, "token": "dial"})

    def hang_up(self) -> None:
        self._send({"command": "hangup", "token": "hangup"})

    def wait_event(self, kind: str, timeout_s: float = 10.0) -> dict[str, Any]:
        """Return the first event of type ``kind`` (already seen or still to come)."""
        deadline = time.monotonic() + timeout_s
        while True:
            for event in self.events:
                if event.get("type") == kind:
                    return event
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = [event.get("type") for event in self.events]
                raise BaresipError(f"no {kind} within {timeout_s}s (saw {seen}):\n{self.log}")
            self._receive(remaining)

    def wait_events(self, kind: str, count: int, timeout_s: float = 10.0) -> list[dict[str, Any]]:
        """Return the first ``count`` events of type ``kind``, waiting for them if need be."""
        deadline = time.monotonic() + timeout_s
        while len(found := [e for e in self.events if e.get("type") == kind]) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = [event.get("type") for event in self.events]
                raise BaresipError(f"{len(found)} {kind} of {count} (saw {seen}):\n{self.log}")
            self._receive(remaining)
        return found[:count]

    def _receive(self, timeout_s: float) -> None:
        assert self._control is not None
        self._control.settimeout(min(timeout_s, 0.5))
        try:
            data = self._control.recv(65536)
        except TimeoutError:
            return
        if not data:
            raise BaresipError(f"baresip closed its control socket:\n{self.log}")
        self._buffer += data
        while b":" in self._buffer:
            length, _, rest = self._buffer.partition(b":")
            if len(rest) < int(length) + 1:
                return
            message = json.loads(rest[: int(length)])
            self._buffer = rest[int(length) + 1 :]
            if message.get("event"):
                message["received_at"] = time.time()
                self.events.append(message)

    def heard(self) -> Path:
        """The WAV of what baresip decoded during its (only) call."""
        dumps = sorted(self.directory.glob("dump-*-dec.wav"))
        if not dumps:
            raise BaresipError(f"sndfile wrote no decoder dump:\n{self.log}")
        return dumps[-1]
