"""Lambda SnapStart: what the control plane redoes when Lambda restores it from a snapshot.

With SnapStart on (a published version behind an alias; docs/deployment.md, "SnapStart"),
Lambda runs the function's initialization once, when the version is published, takes a
Firecracker snapshot of the process's memory, and starts every later execution environment from
a copy of it. Whatever initialization left in memory is then *shared* by every environment
restored from that snapshot, possibly days later. Initialization here is ``import app``:

- **no connection, no client, no secret**: the services (boto3 clients, the settings, the
  secrets read from Secrets Manager, the Fernet or KMS cipher) are built on the first request,
  not at import (:mod:`chalicelib.runtime`), so none of them is in the snapshot: no stale
  socket, no credentials or secret values captured, no secret outliving its rotation;
- **unique values are drawn per use** from the kernel (``secrets``: call and agent ids, API
  keys, ``os.urandom``), not from a generator seeded at import;
- **one exception, the ``random`` module**: its generator is seeded from the kernel when
  ``random`` is first imported, during initialization, so every restored environment would hold
  the *same* generator state and draw the same sequence. It only serves retry jitter
  (:mod:`chalicelib.store.dynamodb`'s write retries, botocore's own retries), whose point is
  that clients do not retry in step: identical jitter in every environment started together,
  which is when throttling happens, would defeat it. :func:`after_restore` reseeds it from
  the kernel, as AWS's uniqueness guidance for Python recommends.

:func:`register` hands :func:`after_restore` to ``snapshot_restore_py``, the hook library that
Lambda's python3.12+ managed runtimes include (it is not in the package); where the library is
absent (the local stack, tests without it, python3.11 which has no SnapStart) nothing is
registered and nothing is needed. Registering costs nothing while SnapStart is off: the hooks
only run on a restore.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any


def after_restore() -> None:
    """Reseed ``random`` from the kernel: this environment's jitter is its own again."""
    random.seed()


def register() -> bool:
    """Register :func:`after_restore` with the runtime's SnapStart hooks; False without them."""
    hook = _register_after_restore()
    if hook is None:
        return False
    hook(after_restore)
    return True


def _register_after_restore() -> Callable[..., Any] | None:
    try:
        from snapshot_restore_py import register_after_restore
    except ImportError:  # not a Lambda python3.12+ runtime: no snapshots here
        return None
    hook: Callable[..., Any] = register_after_restore
    return hook
