"""Commands addressed to a call reach the relay that holds it; dials are claimed once.

Theory of operation (the argument and the alternatives: ``docs/relay.md``, "Commands: how one
reaches the relay holding the call"):

1. **Where a call lives.** A call is bound to one relay, its ``edgeId``: set by the INVITE webhook
   for an incoming call, and by the winning :func:`claim_dial` for an outgoing one (the relay
   claims the call before it sends the INVITE). Each relay announces its own SQS queue in its
   heartbeat (``commandQueueUrl``); the latest heartbeat of every relay is one DynamoDB query.
2. **Sending a call-addressed command** (:func:`deliver_hang_up`; transfers use
   :func:`deliver_to_holder`, DTMF will): the holder is the bound relay if it is fresh (``chalicelib/liveness.py``),
   else a fresh relay whose heartbeat lists the call. A fresh holder that announced a queue gets
   the command there; one that announced none (a relay older than this design, during an
   upgrade) gets it on the shared queue, where relays pass on what they do not hold. An
   announced URL is used only if it is an SQS queue with ``SIPLINE_EDGE_QUEUE_PREFIX`` in the
   shared queue's account and endpoint: a heartbeat cannot make the control plane send commands
   elsewhere.
3. **No live holder.** The control plane never sends into a void: when the holder's heartbeat
   is stale (or its queue is gone), the call is closed at once by the reaper's path (a
   ``call_closed`` event: ended, billed, slot freed; ``docs/billing.md``).
4. **A hang-up before any relay took the dial.** :func:`deliver_hang_up` marks the call
   ``hangupRequested`` with a version condition while it has no ``edgeId``, then closes it. The
   claim is the other version-conditioned write of the same item, so exactly one wins: either the
   claim (the hang-up, retried on the conflict, now finds the holder and sends it the command) or
   the hang-up (the claim answers ``proceed: false``, and the relay drops the dial). A relay
   never rings a callee whose call was already hung up.
5. **Duplicates** (SQS delivers at least once): a second claim by the same relay answers
   ``proceed: true`` again (the relay's dial handler drops a dial for a call it already holds); a
   claim by another relay answers ``taken``. A second hang-up finds the call ended (409), or, on
   the relay, finds no call and is acknowledged.
"""

from __future__ import annotations

from chalicelib import reaper
from chalicelib.call_models import Call
from chalicelib.commands import (
    QueueGone,
    SqsCommandSender,
    announced_queue_ok,
)
from chalicelib.contracts import (
    CallEvent,
    CallEventBatch,
    CallEventType,
    Command,
    DialClaim,
    DialClaimResult,
    HangUpCommand,
    LegEndReason,
    LegRole,
)
from chalicelib.errors import CommandNotSent, NotFound
from chalicelib.events import apply_batch
from chalicelib.liveness import CloseRule, Closing, RelayView, closing_for, holder
from chalicelib.observability import logger
from chalicelib.services import Services, retry_on_conflict
from chalicelib.store import keys
from chalicelib.store.heartbeats import StoredHeartbeat


def _shared_queue_url(services: Services) -> str | None:
    commands = services.commands
    if isinstance(commands, SqsCommandSender):
        return commands.shared_queue_url
    return services.settings.command_queue_url


def queue_of(services: Services, relay: StoredHeartbeat) -> str | None:
    """The queue to send ``relay`` its calls' commands to; None: the shared queue (rule 2)."""
    url = relay.heartbeat.command_queue_url
    if url is None:
        return None
    prefix = services.settings.edge_queue_prefix
    if announced_queue_ok(url, prefix, _shared_queue_url(services)):
        return url
    logger.warning(
        "relay announced a command queue outside the allowed ones; using the shared queue",
        extra={"edge_id": relay.heartbeat.edge_id, "prefix": prefix},
    )
    return None


def _send(services: Services, command: Command, queue_url: str | None) -> None:
    try:
        services.commands.send(command, queue_url)
    except QueueGone:
        raise
    except Exception as error:  # any failure of the queue: the caller's user may retry (503)
        raise CommandNotSent(f"could not queue the {command.type} command: {error}") from error


def _events(services: Services, call_id: str) -> list[CallEvent]:
    return services.store.list_events(keys.call_pk(call_id))


def deliver(services: Services, call: Call, command: Command, relays: RelayView) -> Closing | None:
    """Send a call-addressed ``command`` to the relay holding ``call`` (rules 2-3).

    Returns how the call must be closed instead (no live holder, or its queue is gone), or None
    when the command was sent. Raises CommandNotSent when a queue refused it.
    """
    now = services.clock()
    closing = reaper.verdict_now(services, call, relays, hang_up=True)
    live = holder(call, relays, now)
    if live is None or (closing is not None and call.call_id not in live.heartbeat.call_ids):
        return closing or closing_for(
            CloseRule.NEVER_JOINED,
            call,
            lambda: _events(services, call.call_id),
            relays,
            "no live relay holds it",
        )
    queue_url = queue_of(services, live)
    try:
        _send(services, command, queue_url)
    except QueueGone:
        detail = f"relay {live.heartbeat.edge_id}'s command queue is gone"
        logger.warning("command queue gone", extra={"call_id": call.call_id, "detail": detail})
        return closing or closing_for(
            CloseRule.RELAY_SILENT, call, lambda: _events(services, call.call_id), relays, detail
        )
    return closing


def deliver_hang_up(services: Services, call: Call, reason: str = "api") -> None:
    """End ``call``: a hang-up to its holder, or the control plane closes it (rules 2-4)."""
    relays = reaper.relay_view(services)
    call = _cancel_if_unclaimed(services, call, relays)
    if call.ended is not None:
        return
    if call.hangup_requested is not None:  # rule 4: no relay will ever place it
        _end_unplaced(services, call)
        return
    command = HangUpCommand(call_id=call.call_id, edge_id=call.edge_id, reason=reason)
    closing = deliver(services, call, command, relays)
    if closing is not None:
        reaper.close_call(services, call.call_id, closing)


def deliver_to_holder(services: Services, call: Call, command: Command) -> bool:
    """Send a call-addressed command other than a hang-up (``transfer``, ``transfer_outcome``)
    to the relay holding ``call`` (rules 2-3). With no live holder, the call is closed as a
    hang-up would close it, and False is returned: the command has nobody to act on it.

    Raises CommandNotSent when a queue refused it.
    """
    relays = reaper.relay_view(services)
    closing = deliver(services, call, command, relays)
    if closing is None:
        return True
    reaper.close_call(services, call.call_id, closing)
    return False


def _end_unplaced(services: Services, call: Call) -> None:
    """Rule 4: end an outgoing call hung up before any relay claimed its ``dial``.

    It ends as a relay records a hang-up that comes before its INVITE (docs/relay.md, the
    outgoing call's table: ``local_hangup``, detail ``api_hang_up``): ``invite_sent`` and
    ``leg_ended`` at one instant, so the call reads ``unjoined``, ``SIP_TERMINATION_CANCELED``
    and bills nothing, whichever side of the claim the hang-up fell on. The event ids are the
    call's own: a retried ``DELETE`` writes nothing twice.
    """
    at = call.hangup_requested or services.clock()
    leg = {"callId": call.call_id, "legId": "unplaced", "legRole": LegRole.CALLER,
           "occurredAt": at.isoformat()}  # fmt: skip
    events = [
        CallEvent.model_validate(leg | {"eventId": f"{call.call_id}:unplaced:1",
                                        "type": CallEventType.INVITE_SENT}),
        CallEvent.model_validate(leg | {"eventId": f"{call.call_id}:unplaced:2",
                                        "type": CallEventType.LEG_ENDED,
                                        "reason": LegEndReason.LOCAL_HANGUP,
                                        "detail": "api_hang_up"}),
    ]  # fmt: skip
    apply_batch(services, CallEventBatch(events=events), from_edge=False)


def _cancel_if_unclaimed(services: Services, call: Call, relays: RelayView) -> Call:
    """Rule 4: mark an outgoing call no relay holds as hung up, atomically against a claim."""
    if call.direction != "outgoing" or call.edge_id is not None:
        return call
    if holder(call, relays, services.clock()) is not None:
        return call  # a relay that does not claim (older than claims) lists it: send it there

    def attempt() -> Call:
        stored = services.store.get_call(call.call_id)
        current = stored.value
        if current.edge_id is not None or current.ended is not None:
            return current  # a claim won the race: route to that relay
        if current.hangup_requested is None:
            current = current.model_copy(update={"hangup_requested": services.clock()})
            services.store.save_call(current, stored.version)
        return current

    return retry_on_conflict(attempt)


def claim_dial(services: Services, claim: DialClaim) -> DialClaimResult:
    """``POST /webhooks/sip/dial``: bind an outgoing call to the relay that took its ``dial``."""

    def attempt() -> DialClaimResult:
        try:
            stored = services.store.get_call(claim.call_id)
        except NotFound:
            return DialClaimResult(proceed=False, reason="not_found")
        call = stored.value
        if call.direction != "outgoing":
            return DialClaimResult(proceed=False, reason="not_outgoing")
        if call.hangup_requested is not None or call.ended is not None:
            return DialClaimResult(proceed=False, reason="hung_up")
        if call.edge_id == claim.edge_id:
            return DialClaimResult(proceed=True)  # the same relay again: a duplicate delivery
        if call.edge_id is not None:
            return DialClaimResult(proceed=False, reason="taken")
        services.store.save_call(call.model_copy(update={"edge_id": claim.edge_id}), stored.version)
        return DialClaimResult(proceed=True)

    result = retry_on_conflict(attempt)
    logger.info(
        "dial claimed" if result.proceed else "dial claim refused",
        extra={"call_id": claim.call_id, "edge_id": claim.edge_id, "reason": result.reason},
    )
    return result
