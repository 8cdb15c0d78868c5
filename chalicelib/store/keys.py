"""Every partition and sort key of the single table, built in one place.

Layout (``docs/storage.md`` has the full picture):

====================================  =========================  ====================================
pk                                    sk                         what
====================================  =========================  ====================================
``ACCOUNT#<account>``                 ``SIPCONFIG``              the account's SIP configuration
``ACCOUNT#<account>``                 ``AGENT#<agentId>``        an agent (ids are UUIDv7: by creation)
``ACCOUNT#<account>``                 ``INVITE#<digest>``        idempotency key of an INVITE decision
``ACCOUNT#<account>``                 ``ACTIVECALLS``            how many of its calls hold a slot
``REGISTRATION#<registrationId>``     ``REGISTRATION``           a registration (GSI1: per account)
``REGISTRATION#<registrationId>``     ``EVENT#<eventId>``        a registration event, once
``CALL#<callId>``                     ``CALL``                   a call (GSI1: per account by time)
``CALL#<callId>``                     ``EVENT#<eventId>``        a call event, once
``CALL#<callId>``                     ``TRANSFER#<nnnn>``        the call's nth transfer request
``EDGES``                             ``EDGE#<edgeId>``          a relay's latest heartbeat
====================================  =========================  ====================================

GSI2 is sparse: only calls that have not ended carry ``gsi2pk``/``gsi2sk`` (``OPEN_CALLS#<shard>``
/ ``<created>#<callId>``), so the reaper lists open calls without reading ended ones.
"""

from __future__ import annotations

import hashlib

SIP_CONFIG_SK = "SIPCONFIG"
CALL_SK = "CALL"
REGISTRATION_SK = "REGISTRATION"
ACTIVE_CALLS_SK = "ACTIVECALLS"
ACTIVE_CALLS_ATTRIBUTE = "active"
"""The counter's number attribute on the ``ACTIVECALLS`` item (docs/storage.md)."""
GSI1 = "gsi1"
GSI2 = "gsi2"
EDGES_PK = "EDGES"
OPEN_CALL_SHARDS = 8
"""GSI2 partitions of open calls: spreads their index writes over several partitions."""


def account_pk(account_id: str) -> str:
    """Partition of everything an account owns directly."""
    return f"ACCOUNT#{account_id}"


def agent_sk(agent_id: str = "") -> str:
    """Sort key of an agent (``agent_sk()`` is the prefix of them all)."""
    return f"AGENT#{agent_id}"


def invite_sk(sip_call_id: str, from_tag: str, source: str) -> str:
    """Sort key of the idempotency record of one INVITE (a retried webhook finds it)."""
    digest = hashlib.sha256(f"{sip_call_id}\n{from_tag}\n{source}".encode()).hexdigest()
    return f"INVITE#{digest}"


def registration_pk(registration_id: str) -> str:
    """Partition of one registration and its events."""
    return f"REGISTRATION#{registration_id}"


def registrations_gsi1pk(account_id: str) -> str:
    """GSI1 partition listing an account's registrations."""
    return f"ACCOUNT#{account_id}#REGISTRATIONS"


def call_pk(call_id: str) -> str:
    """Partition of one call and its events."""
    return f"CALL#{call_id}"


def calls_gsi1pk(account_id: str) -> str:
    """GSI1 partition listing an account's calls, sorted by creation time."""
    return f"ACCOUNT#{account_id}#CALLS"


def account_of_calls_gsi1pk(value: str) -> str | None:
    """The account of a call item's ``gsi1pk`` (read without its ``data``), if it is one."""
    prefix, suffix = "ACCOUNT#", "#CALLS"
    if value.startswith(prefix) and value.endswith(suffix):
        return value[len(prefix) : -len(suffix)]
    return None


def calls_gsi1sk(created_iso: str, call_id: str) -> str:
    """GSI1 sort key of a call: its creation time, then its id."""
    return f"{created_iso}#{call_id}"


def event_sk(event_id: str = "") -> str:
    """Sort key of an event under its call or registration (``event_sk()`` is the prefix)."""
    return f"EVENT#{event_id}"


def transfer_sk(sequence: int | None = None) -> str:
    """Sort key of a call's ``sequence``-th transfer (``transfer_sk()`` is the prefix of them
    all). Zero-padded, so they list in order; the first write of a number wins (one at a time)."""
    return "TRANSFER#" if sequence is None else f"TRANSFER#{sequence:04d}"


def edge_sk(edge_id: str = "") -> str:
    """Sort key of a relay's heartbeat under ``EDGES_PK`` (``edge_sk()`` is the prefix)."""
    return f"EDGE#{edge_id}"


def open_calls_gsi2pk(shard: int) -> str:
    """GSI2 partition ``shard`` of the calls that have not ended."""
    return f"OPEN_CALLS#{shard}"


def open_call_shard(call_id: str) -> int:
    """The GSI2 partition an open call is listed in (stable for a call id)."""
    return hashlib.sha256(call_id.encode()).digest()[0] % OPEN_CALL_SHARDS
