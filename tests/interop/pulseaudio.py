"""A private PulseAudio server with a null sink and a null source: linphone's sound card.

Why: linphonec 5.1 on ALSA's ``null`` device (TOOLING's recipe) deadlocks the first time it stops
an audio stream. ALSA ``null`` capture never blocks, so mediastreamer's ticker thread spins in
``alsa_read_process`` holding the ticker lock, and the main thread waits forever for it in
``ms_ticker_detach`` (``audio_stream_stop``; gdb backtraces of both threads, seen here). A stream
stops when linphone hangs up, holds a call (a REFER makes it hold first), or drops the call a
``Replaces`` INVITE replaces: after that, linphonec handles no SIP at all. PulseAudio's null
sink and null source are clocked (they consume and produce samples in real time), so the ticker
sleeps between its ticks and the stream stops cleanly.

`PulseAudio` runs ``pulseaudio -n`` (no default script) in the foreground under
``timeout -k 3`` with a script of its own: ``module-null-sink``, ``module-null-source`` (both at
48 kHz) and the native protocol on a unix socket in the test's directory, anonymous (no cookie:
only processes of this machine that can reach the directory). `server` is the address for
``PULSE_SERVER``. Its ``HOME`` and ``XDG_RUNTIME_DIR`` are in the test's directory too, so it
never touches a user's session. Run as root it warns and works. Stopped (its process group) at
exit.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from types import TracebackType

from tests.interop.stack import require, stop_group

READY_S = 10.0
"""How long pulseaudio may take to open its socket: a bound on a wait, not a timing."""
SCRIPT = """\
load-module module-null-sink sink_name=nullsink rate=48000
load-module module-null-source source_name=nullsource rate=48000
load-module module-native-protocol-unix auth-anonymous=1 socket={socket}
set-default-sink nullsink
set-default-source nullsource
"""
SINK = "PulseAudio Unknown: Null Output"
SOURCE = "PulseAudio Unknown: Null Input"
"""How linphone (mediastreamer) names the two devices: its ``soundcard list``."""


class PulseAudio:
    """One private PulseAudio server (see the module docstring); a context manager."""

    def __init__(self, directory: Path, *, lifetime_s: int = 120) -> None:
        self.directory = directory
        self.lifetime_s = lifetime_s
        self.socket = directory / "native"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def server(self) -> str:
        """The ``PULSE_SERVER`` value that reaches this server."""
        return f"unix:{self.socket}"

    @property
    def log(self) -> str:
        path = self.directory / "pulseaudio.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __enter__(self) -> PulseAudio:
        pulseaudio = require("pulseaudio")
        for name in ("home", "run"):
            (self.directory / name).mkdir(parents=True, exist_ok=True)
        script = self.directory / "default.pa"
        script.write_text(SCRIPT.format(socket=self.socket))
        environment = {
            **os.environ,
            "HOME": str(self.directory / "home"),
            "XDG_RUNTIME_DIR": str(self.directory / "run"),
        }
        with open(self.directory / "pulseaudio.log", "wb") as log:
            self._process = subprocess.Popen(
                ["timeout", "-k", "3", str(self.lifetime_s), pulseaudio, "-n", "-F", str(script),
                 "--daemonize=no", "--exit-idle-time=-1", "--disable-shm=yes",
                 "--use-pid-file=no", "-v"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + READY_S
        while "Daemon startup complete" not in self.log:
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"pulseaudio did not start:\n{self.log[-3000:]}")
            time.sleep(0.05)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        stop_group(self._process)  # the session we started
