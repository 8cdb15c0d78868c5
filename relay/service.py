"""The relay process: SIP transports around the sans-I/O endpoint, and everything calls need.

It owns, for the life of the process: the transports (UDP, TCP, TLS), the SIP endpoint, the
control-plane client, the event outbox (durable spool), the allowlist refresher of the IP guard,
the heartbeat, the SQS command consumers (the shared queue, and this relay's own queue, which it
makes at start, announces in its heartbeat and deletes at a clean stop: ``docs/relay.md``,
Commands), the RTP port range, and one task per call. The endpoint's events are
drained synchronously after every call into it (``_drain``) and routed to the call tasks; the
tasks call back into the endpoint and then ``transmit``. An incoming call's task starts with its
INVITE (``IncomingCallFlow``); an outgoing call's with its ``dial`` command
(``OutgoingCallFlow``, once per call id), which places the call and has its events routed to it
(``DialDeps.hold``).

Shutdown (SIGTERM, Ctrl-C): stop taking calls (an INVITE gets 503 with Retry-After, as before
the relay is ready; a ``dial`` is passed on) and close the health port, let the calls go on for
up to ``SIPLINE_DRAIN_S`` (``relay/drain.py``), then hang up the rest, give the call tasks a few
seconds to record their last events, drain the outbox (what is not delivered stays spooled for
the next start), delete its own command queue, close the transports. ``SIPLINE_MAX_CALLS`` caps
the calls running at once the same way (503, or the ``dial`` passed on).

Size: about 540 lines: the process's wiring (transports, control plane, outbox, heartbeat,
commands, drain, health port, metrics, transfers) and the endpoint's event routing share the per-process
state above; each piece's logic lives in its own module (``relay/control/``, ``relay/drain.py``,
``relay/health_port.py``, ``relay/metrics.py``), and what is left here is how they meet.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime
from functools import partial
from typing import Any

from chalicelib.commands import edge_queue_name
from chalicelib.contracts import (
    DialClaim,
    DialCommand,
    HangUpCommand,
    TransferCommand,
    TransferOutcomeCommand,
)
from relay.admission import NOT_ALLOWED, InviteAdmission
from relay.calls.credentials import password_cipher
from relay.calls.deps import CallDeps, CallFlow, DialDeps, TransferDeps
from relay.calls.far_refer import ReferLeg, referred
from relay.calls.incoming import IncomingCallFlow
from relay.calls.outgoing import OutgoingCallFlow
from relay.calls.transfer_cold import REFERRED_BYE_S
from relay.calls.transfer_leg import TransferLeg
from relay.config import RelaySettings
from relay.control.commands import CommandConsumer, CommandHandlers, CommandNotHere, sqs_client
from relay.control.edge_queue import EdgeQueue
from relay.control.heartbeat import HeartbeatSender
from relay.control.outbox import EventOutbox
from relay.control.webhooks import AllowlistCache, AllowlistRefresher, ControlPlaneClient
from relay.drain import wait_for_calls
from relay.health_port import HealthPort
from relay.ids import SecureIdSource
from relay.metrics import EmfReporter, FailedLegs, Sample
from relay.rate_limit import RateLimit, SourceRateLimiter
from relay.sip.address import Address, Transport
from relay.sip.endpoint import SipEndpoint
from relay.sip.events import Event, IncomingCallReceived, InviteRefused
from relay.sip.syntax.uri import AbsoluteUri, SipUri
from relay.sip.transaction.timers import Timers
from relay.sip.usage.dial import place_call
from relay.sip.usage.invite_session import (
    CallAnswered,
    CallEnded,
    CallProgress,
    InfoReceived,
    InviteSession,
    MediaUpdated,
)
from relay.sip.usage.refer import (
    ReferAccepted,
    ReferFailed,
    ReferProgress,
    ReferSucceeded,
    send_refer,
)
from relay.sip.usage.refer_server import ReferReceived, ReferServers
from relay.transport.dns import SipLocator
from relay.transport.endpoint import TransportConfig, TransportEndpoint
from relay.transport.hold_music_fetch import HoldMusicFetchSettings, HoldMusicLoader
from relay.transport.rtp_session import RtpPortAllocator
from relay.transport.tls import client_context, server_context

logger = logging.getLogger("sipline.relay")
USER_AGENT = "sipline"
SHUTDOWN_GRACE_S = 5.0
GUARD_REFRESH_MIN_S = 1.0
"""At most one on-demand allowlist fetch per this many seconds, however many INVITEs the guard
refuses: a scanner must not turn into one control-plane request per INVITE (bench/sip_load.py
measured 1,207 fetches for 1,500 refused INVITEs without this bound)."""
EDGE_QUEUE_START_S = 5.0
"""How long the start waits to make the relay's own queue before serving without it (then the
queue is made in the background, and the heartbeat announces it once it exists)."""
ENDED_REMEMBERED = 4096
"""Calls that ended here whose id a late or duplicate ``hangup`` is acknowledged for."""
DIALLED_REMEMBERED = 4096
"""Calls dialled here whose id a duplicate ``dial`` (SQS delivers at least once) is known by."""
NOT_READY = "relay_not_ready"
"""The rule of an INVITE refused because the relay is starting or stopping (503)."""
AT_CAPACITY = "relay_at_capacity"
"""The rule of an INVITE refused at ``SIPLINE_MAX_CALLS`` (503)."""
BUSY_RETRY_AFTER = (("Retry-After", "1"),)
"""A starting, draining or full relay's 503: the carrier tries another relay at once (behind a
load balancer, a longer Retry-After would keep it away from every relay's shared address)."""


def command_consumer(
    settings: RelaySettings, handlers: CommandHandlers, sqs: Any, **options: Any
) -> CommandConsumer:
    """The consumer of ``SIPLINE_COMMAND_QUEUE_URL``, dead-lettering to ``SIPLINE_COMMAND_DLQ_URL``.

    ``options`` are :class:`CommandConsumer`'s own (tests shorten its bounds); with
    ``queue_url`` and ``addressed=True`` it consumes the relay's own queue by the same rules.
    """
    queue_url = options.pop("queue_url", None) or settings.command_queue_url
    assert queue_url is not None
    return CommandConsumer(
        sqs,
        queue_url,
        handlers,
        dead_letter_queue_url=settings.command_dead_letter_queue_url,
        **options,
    )


class RelayService:
    """One relay process (see the module docstring)."""

    def __init__(
        self, settings: RelaySettings, *, consumer_options: dict[str, Any] | None = None
    ) -> None:
        self.settings = settings
        self.consumer_options = consumer_options or {}
        """:class:`CommandConsumer` options of both consumers (tests shorten the long poll)."""
        self.ids = SecureIdSource()
        self.allowlist = AllowlistCache(
            refresh_interval_s=settings.allowlist_refresh_s, max_age_s=settings.allowlist_max_age_s
        )
        rate = RateLimit(rate_per_s=settings.invite_rate_per_s, burst=settings.invite_burst)
        self.admission = InviteAdmission(self.allowlist, SourceRateLimiter(rate))
        self.flows: dict[InviteSession, CallFlow] = {}
        self.invites_refused: dict[str, int] = {}
        """INVITEs refused before any call, by rule (``source_ip_not_allowed``...)."""
        self.ready = asyncio.Event()
        self._call_tasks: dict[asyncio.Task[None], CallFlow] = {}
        self._dialled: OrderedDict[str, None] = OrderedDict()
        self.call_deps: CallDeps | None = None
        """What each new call is given (set by :meth:`run`); tests wrap a dependency to inject a fault."""
        self.commands: CommandConsumer | None = None
        """The shared queue's consumer, while :meth:`run` runs with a command queue."""
        self.edge_queue: EdgeQueue | None = None
        """This relay's own command queue, while :meth:`run` runs with a command queue."""
        self.edge_commands: CommandConsumer | None = None
        """The consumer of :attr:`edge_queue` (a new one each time the queue is made)."""
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._beats: HeartbeatSender | None = None
        self._control: ControlPlaneClient | None = None
        """The control-plane client, while :meth:`run` runs (a ``dial`` is claimed through it)."""
        self._guard_refresh_at = float("-inf")
        self.failed_legs = FailedLegs()
        """Legs ended with ``reason: error`` but not by the shutdown (``relay/metrics.py``)."""
        self.health: HealthPort | None = None
        """The health port (``SIPLINE_HEALTH_PORT``), open while the relay is ready."""

    def _local_addresses(self) -> dict[Transport, Address]:
        s, host = self.settings, self.settings.advertised_address
        local = {
            Transport.UDP: Address(host, s.sip_port, Transport.UDP),
            Transport.TCP: Address(host, s.sip_port, Transport.TCP),
        }
        if s.tls_enabled:
            local[Transport.TLS] = Address(host, s.tls_port, Transport.TLS)
        return local

    def _transport_config(self) -> TransportConfig:
        s = self.settings
        tls = s.tls_enabled and s.tls_cert_path is not None and s.tls_key_path is not None
        return TransportConfig(
            host=s.sip_host,
            udp_port=s.sip_port,
            tcp_port=s.sip_port,
            tls_port=s.tls_port if tls else None,
            tls_server=server_context(s.tls_cert_path, s.tls_key_path) if tls else None,  # type: ignore[arg-type]
            tls_client=client_context(cafile=s.tls_ca_file),
        )

    async def run(self, stop: asyncio.Event, cut: asyncio.Event | None = None) -> None:
        """Serve until ``stop`` is set, then shut down gracefully (``cut`` ends the drain)."""
        s = self.settings
        loop = asyncio.get_running_loop()
        self.core = SipEndpoint(
            self._local_addresses(),
            user_agent=USER_AGENT,
            timers=Timers(),
            ids=self.ids,
            admission=self.admission,
            usage_starters=(ReferServers(accept_in=self._follows_refer),),
        )
        self.transport = TransportEndpoint(
            self.core, self._transport_config(), after_each_call=self._drain
        )
        ports = RtpPortAllocator(s.sip_host, s.rtp_port_min, s.rtp_port_max)
        async with (
            ControlPlaneClient(
                s.control_url,
                s.webhook_secret,
                decision_timeout_s=s.decision_timeout_s,
                events_timeout_s=s.events_timeout_s,
                retry_after_s=s.retry_after_s,
            ) as control,
            EventOutbox(control, s.spool_dir, max_spool_bytes=s.spool_max_bytes) as outbox,
        ):
            self._control = control
            self.call_deps = CallDeps(
                decide=control.decide,
                record=self.failed_legs.counting(outbox.record),
                transmit=self.transport.transmit,
                now=loop.time,
                ports=ports,
                ids=self.ids,
                advertised_address=s.advertised_address,
                edge_id=s.edge_id,
                webhook_secret=s.webhook_secret,
                retry_after_s=s.retry_after_s,
                egress=s.egress,
                dial=self._dial_deps(),
                transfer=self._transfer_deps(),
            )
            await self.transport.start()
            self._refresher = AllowlistRefresher(control, self.allowlist)
            background = [loop.create_task(self._refresher.run())]
            if s.command_queue_url:
                background += await self._start_commands(s)
            beats = HeartbeatSender(
                control,
                s.edge_id,
                lambda: self.held_call_ids() | outbox.undelivered_call_ids(),
                interval_s=s.heartbeat_s,
                queue_url=lambda: self.edge_queue.url if self.edge_queue else None,
                ended_at=lambda: self.ended_calls(outbox),
            )
            self._beats = beats
            background.append(loop.create_task(beats.run()))
            logger.info(
                "sipline relay ready: sip udp/tcp %s:%d%s, rtp %d-%d, control plane %s",
                s.sip_host,
                s.sip_port,
                f", tls {s.tls_port}" if s.tls_enabled else "",
                s.rtp_port_min,
                s.rtp_port_max,
                s.control_url,
            )
            reporter = self._reporter(outbox)
            if reporter is not None:
                background.append(loop.create_task(reporter.run()))
            try:
                if s.health_port is not None:  # open from ready on, never before
                    self.health = HealthPort(s.sip_host, s.health_port)
                    await self.health.open()
                self.ready.set()
                await stop.wait()
            finally:
                await self._shut_down(background, outbox, cut)
                if reporter is not None:
                    reporter.emit()  # the last minute's counts

    async def _shut_down(
        self,
        background: list[asyncio.Task[Any]],
        outbox: EventOutbox,
        cut: asyncio.Event | None = None,
    ) -> None:
        self.ready.clear()  # new INVITEs get 503 Retry-After: 1, not a call dropped at exit
        if self.health is not None:
            await self.health.close()  # the load balancer moves new flows away
        if self._call_tasks and self.settings.drain_s > 0:
            logger.info(
                "draining: %d calls may go on for %g s",
                len(self._call_tasks),
                self.settings.drain_s,
            )
            left = await wait_for_calls(lambda: self._call_tasks.keys(), self.settings.drain_s, cut)
            logger.info("drain over: %d calls to end", left)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        for flow in list(self._call_tasks.values()):  # outgoing ones before their INVITE too
            flow.signals.shutting_down = True  # recorded relay_shutdown, BYE with a Reason
            flow.signals.hang_up_requested.set()
        if self._call_tasks:
            await asyncio.wait(self._call_tasks, timeout=SHUTDOWN_GRACE_S)
        for task in self._call_tasks:
            task.cancel()
        undelivered = await outbox.drain(SHUTDOWN_GRACE_S)
        if undelivered:
            logger.warning("%d events stay spooled for the next start", undelivered)
        if self.edge_queue is not None:  # last: its calls have ended and their events are out
            with suppress(TimeoutError):
                await asyncio.wait_for(self.edge_queue.delete(), SHUTDOWN_GRACE_S)
        await self.transport.close()

    def _reporter(self, outbox: EventOutbox) -> EmfReporter | None:
        """The EMF reporter when ``SIPLINE_METRICS=emf``, else ``None``."""
        if self.settings.metrics != "emf":
            return None

        def sample() -> Sample:
            refused = self.invites_refused
            return Sample(
                active_calls=len(self._call_tasks),
                spool_backlog=outbox.undelivered,
                calls_failed_total=self.failed_legs.total,
                invites_refused_total=refused.get(NOT_READY, 0) + refused.get(AT_CAPACITY, 0),
            )

        return EmfReporter(sample, self.settings.stage)

    def at_capacity(self) -> bool:
        """Whether ``SIPLINE_MAX_CALLS`` calls run now (0: no cap)."""
        cap = self.settings.max_calls
        return cap > 0 and len(self._call_tasks) >= cap

    def ended_calls(self, outbox: EventOutbox) -> dict[str, datetime]:
        """The calls that ended here with events still undelivered, and each one's last event
        time (the heartbeat's ``endedAt``, ``relay/control/heartbeat.py``)."""
        held = self.held_call_ids()
        return {c: at for c, at in outbox.undelivered_until().items() if c not in held}

    def held_call_ids(self) -> set[str]:
        """Return the calls whose task is running: they may still record events."""
        return {flow.call_id for flow in self._call_tasks.values() if flow.call_id is not None}

    # --- the endpoint's events (synchronous: never await here) ------------------------------

    def _drain(self) -> None:
        while (event := self.core.next_event()) is not None:
            self._dispatch(event)

    def _dispatch(self, event: Event) -> None:
        match event:
            case IncomingCallReceived():
                self._incoming(event)
            case CallAnswered(call=call, media=media):
                if (flow := self.flows.get(call)) and not flow.signals.answered.done():
                    flow.signals.answered.set_result(media)
            case CallEnded(call=call):
                if (flow := self.flows.pop(call, None)) and not flow.signals.ended.done():
                    flow.signals.ended.set_result(event)
            case MediaUpdated(call=call, media=media):
                if (flow := self.flows.get(call)) and flow.session is not None:
                    flow.session.update(media)
            case InfoReceived(call=call, content_type=content_type, body=body):
                if (flow := self.flows.get(call)) and flow.session is not None:
                    flow.info_dtmf(content_type, body)
            case CallProgress(call=call):
                if isinstance(
                    flow := self.flows.get(call), (OutgoingCallFlow, TransferLeg, ReferLeg)
                ):
                    flow.progress(event)
            case ReferReceived(session=session):
                if flow := self.flows.get(session):
                    referred(flow, event, asyncio.get_running_loop().time())
            case ReferAccepted() | ReferProgress() | ReferSucceeded() | ReferFailed():
                if flow := self.flows.get(event.session):
                    flow.signals.refer.put_nowait(event)
            case InviteRefused(refusal=refusal):
                self._refused(refusal.rule)
            case _:
                logger.debug("endpoint event %s", type(event).__name__)

    def _follows_refer(
        self,
        session: InviteSession,
        uri: SipUri | AbsoluteUri,
        referred_by: str | None,
        headers: tuple[tuple[str, str], ...],
    ) -> bool:
        """The REFER policy: the call's own (``relay/calls/far_refer.py``); else 603."""
        flow = self.flows.get(session)
        return isinstance(flow, IncomingCallFlow) and flow.follows_refer(uri, headers)

    def _refused(self, rule: str) -> None:
        """Count a stateless refusal; after the guard's, look at the ranges again (bounded)."""
        self.invites_refused[rule] = self.invites_refused.get(rule, 0) + 1
        now = asyncio.get_running_loop().time()
        if rule == NOT_ALLOWED.rule and now - self._guard_refresh_at >= GUARD_REFRESH_MIN_S:
            self._guard_refresh_at = now
            self._refresher.refresh_soon()  # the ranges may have just changed: look again

    def _incoming(self, event: IncomingCallReceived) -> None:
        call, now = event.call, asyncio.get_running_loop().time()
        if self.call_deps is None or not self.ready.is_set() or self.at_capacity():
            rule = AT_CAPACITY if self.ready.is_set() else NOT_READY
            self.invites_refused[rule] = self.invites_refused.get(rule, 0) + 1
            call.reject(503, now=now, headers=BUSY_RETRY_AFTER)
            return
        flow = IncomingCallFlow(call, event.request, self.call_deps)
        self.flows[call] = flow
        task = asyncio.get_running_loop().create_task(flow.run())
        self._call_tasks[task] = flow
        task.add_done_callback(self._call_finished)

    # --- commands -------------------------------------------------------------------------

    def command_handlers(self) -> CommandHandlers:
        """The handler of each command type this relay takes (both queues use the same)."""
        return CommandHandlers(
            dial=self._dial_command,
            hangup=self._hang_up_command,
            transfer=self._transfer_command,
            transfer_outcome=self._transfer_outcome_command,
        )

    async def _start_commands(self, s: RelaySettings) -> list[asyncio.Task[None]]:
        """Consume the shared queue, make this relay's own queue and consume it too."""
        loop = asyncio.get_running_loop()
        sqs = sqs_client()
        handlers = self.command_handlers()
        self.commands = command_consumer(s, handlers, sqs, **self.consumer_options)
        self.edge_queue = EdgeQueue(
            sqs,
            edge_queue_name(s.edge_queue_prefix, s.edge_id),
            s.edge_id,
            dead_letter_queue_url=s.command_dead_letter_queue_url,
        )
        try:  # made before the first heartbeat, which then announces it
            await asyncio.wait_for(self.edge_queue.make(), EDGE_QUEUE_START_S)
        except Exception as error:  # SQS slow or refusing: serve; keep() makes it later
            logger.warning("own command queue not made at start (%r); retrying", error)

        async def consume(url: str) -> None:
            options = self.consumer_options | {"queue_url": url, "addressed": True}
            self.edge_commands = command_consumer(s, handlers, sqs, **options)
            await self.edge_commands.run()

        def announce() -> None:
            if self._beats is not None:
                self._beats.wake()

        return [
            loop.create_task(self.commands.run()),
            loop.create_task(self.edge_queue.keep(consume, announce)),
        ]

    def _call_finished(self, task: asyncio.Task[None]) -> None:
        flow = self._call_tasks.pop(task)
        if flow.call_id is not None:
            self._ended[flow.call_id] = None
            while len(self._ended) > ENDED_REMEMBERED:
                self._ended.popitem(last=False)

    def _dial_deps(self) -> DialDeps | None:
        """What outgoing calls need; ``None`` (no ``dial`` taken) without a DNS configuration."""
        s = self.settings
        try:
            locator = SipLocator(s.dns, egress=s.egress, ids=self.ids)
        except OSError as error:
            logger.error("outgoing calls disabled: %s", error)
            return None
        return DialDeps(
            place_call=partial(place_call, self.core),
            hold=self._hold,
            locate=locator.locate,
            cipher=password_cipher(s.password_key, s.kms_key_id),
            ring_timeout_s=s.ring_timeout_s,
        )

    def _transfer_deps(self) -> TransferDeps:
        """What transfers need (a bridged one's second leg is placed with ``_dial_deps``)."""
        loader = HoldMusicLoader(HoldMusicFetchSettings(egress=self.settings.egress))
        return TransferDeps(
            send_refer=partial(send_refer, self.core),
            hold_music=loader.choose,
            notify_timeout_s=self.settings.refer_timeout_s,
            referred_bye_s=REFERRED_BYE_S,
            decision_timeout_s=self.settings.warm_decision_timeout_s,
        )

    def _hold(self, call: InviteSession, flow: CallFlow) -> None:
        self.flows[call] = flow

    async def _dial_command(self, command: DialCommand) -> None:
        """Place the call in its own task (returns once it is started); a duplicate is a no-op."""
        if self.call_deps is None or self.call_deps.dial is None or not self.ready.is_set():
            raise CommandNotHere("this relay places no calls now")
        if command.call_id in self._dialled:
            logger.info("dial of call %s again: placed once already", command.call_id)
            return
        if self.at_capacity():  # passed on to another relay, never lost
            raise CommandNotHere(f"this relay runs its {self.settings.max_calls} calls already")
        self._dialled[command.call_id] = None
        while len(self._dialled) > DIALLED_REMEMBERED:
            self._dialled.popitem(last=False)
        # Bind the call to this relay before its INVITE (docs/relay.md, Commands) while the flow
        # prepares: a hang-up that came first, or another relay that took a duplicate, says drop
        # it. Unreachable: the flow (still waiting, nothing sent) is cancelled and this raises,
        # so the command comes back.
        assert self._control is not None  # set before the ready event
        loop = asyncio.get_running_loop()
        claimed: asyncio.Future[bool] = loop.create_future()
        flow = OutgoingCallFlow(command, self.call_deps, claimed=claimed)
        task = loop.create_task(flow.run())
        self._call_tasks[task] = flow
        task.add_done_callback(self._call_finished)
        try:
            claim = await self._control.claim_dial(
                DialClaim(call_id=command.call_id, edge_id=self.settings.edge_id)
            )
        except BaseException:
            task.cancel()
            self._dialled.pop(command.call_id, None)  # the retried command must place it
            raise
        claimed.set_result(claim.proceed)
        if not claim.proceed:
            logger.info("dial of call %s dropped: %s", command.call_id, claim.reason)

    def _to_flow(self, call_id: str, what: str, deliver: Callable[[CallFlow], None]) -> None:
        """Hand an in-call command to the flow of ``call_id`` (``deliver``); acknowledge it for a
        call that ended here; raise :class:`CommandNotHere` (the command is passed on) else."""
        for flow in self._call_tasks.values():
            if flow.call_id == call_id:
                deliver(flow)
                return
        if call_id in self._ended:
            logger.info("%s of call %s, which ended here: acknowledged", what, call_id)
            return
        raise CommandNotHere(f"call {call_id} is not on this edge")

    async def _hang_up_command(self, command: HangUpCommand) -> None:
        # A duplicate sets the event again: no change.
        self._to_flow(command.call_id, "hangup", lambda f: f.signals.hang_up_requested.set())

    async def _transfer_outcome_command(self, command: TransferOutcomeCommand) -> None:
        """Hand a warm transfer's outcome to the call's flow (``relay/calls/transfer_warm.py``)."""
        self._to_flow(
            command.call_id,
            "transfer outcome",
            lambda f: _queue(f.signals.outcomes, command, "outcome", command.transfer_id),
        )

    async def _transfer_command(self, command: TransferCommand) -> None:
        """Hand the command to the call's flow (``relay/calls/transfer_cold.py`` runs it)."""
        self._to_flow(
            command.call_id,
            "transfer",
            lambda f: _queue(f.signals.transfers, command, "transfer", command.transfer_id),
        )


def _queue(queue: asyncio.Queue[Any], command: Any, what: str, transfer_id: str) -> None:
    """Queue a transfer's command for its call; a full queue (one runs at a time, or none is
    waited for) means duplicates or stale ones: dropped with a log line."""
    try:
        queue.put_nowait(command)
    except asyncio.QueueFull:
        logger.warning(
            "%s of transfer %s of call %s dropped: %d wait already",
            what,
            transfer_id,
            command.call_id,
            queue.qsize(),
        )
