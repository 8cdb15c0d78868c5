"""The call event vectors of ``tests/vectors/events``, as a test posts them for a call it made.

Each vector is a timeline from ``2025-03-14T09:00:00Z`` (t=0, the folder's README). A call is
billed only for time after its creation minus five minutes (docs/billing.md), so a test moves the
timeline to its own call: t=0 becomes ``at``, the moment the test's clock created the call.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.support.fakes import START

VECTORS = Path(__file__).parent.parent / "vectors" / "events"
T0 = datetime.fromisoformat("2025-03-14T09:00:00+00:00")
"""t=0 of every vector (tests/vectors/events/README.md)."""


def _moved(event: dict[str, Any], call_id: str, at: datetime) -> dict[str, Any]:
    occurred = datetime.fromisoformat(event["occurredAt"].replace("Z", "+00:00"))
    moved = (at + (occurred - T0)).isoformat().replace("+00:00", "Z")
    return event | {"occurredAt": moved} | ({"callId": call_id} if "callId" in event else {})


def vector_events(name: str, call_id: str, *, at: datetime = START) -> list[dict[str, Any]]:
    """The events of ``<name>.json``, naming ``call_id``, with t=0 moved to ``at``."""
    events = json.loads((VECTORS / f"{name}.json").read_text())["events"]
    return [_moved(event, call_id, at) for event in events]
