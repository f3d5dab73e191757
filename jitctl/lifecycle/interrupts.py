"""Ctrl-C: a run that is interrupted cancels the pending request it made (exit 130).

The contract's exit 130 means "interrupted; a pending request of this run is cancelled". It
holds wherever the Ctrl-C lands because of two rules:

- The step that records a request (the store write in direct mode, the broker's
  ``POST /requests`` in broker mode) runs with Ctrl-C ``held``: once the write is on its way
  it finishes, the run notes the request (``ThisRun.recorded``), and only then does the
  Ctrl-C take effect. So there is no moment at which a pending request exists that the run
  that made it does not know about, however slow the store or the broker.
- The host's one Ctrl-C handler (``jitctl.cli.main``) ends the run with ``interrupted``,
  which cancels that request through the one cancel path (``decisions.cancel``, run here or
  by the broker: the same audit reason, the approvers' page resolved) with further Ctrl-Cs
  held, so a second press cannot stop the cancel half-way.

Only the main thread receives signals; elsewhere (the broker's worker threads) holding is a
no-op, and nothing there is interrupted by a person.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from jitctl.errors import ExitCode, Interrupted, JitctlError
from jitctl.models import AccessRequest

if TYPE_CHECKING:
    from jitctl.context import Environment

# The audit reason of a cancel made by a Ctrl-C, in both modes (`jitctl cancel` records
# "cancelled by the requester").
INTERRUPTED_WHY = "interrupted by the requester (Ctrl-C)"
# What a failed cancel that leaves nothing pending says: decided or expired meanwhile.
_NOTHING_LEFT = (ExitCode.USAGE, ExitCode.DENIED, ExitCode.TIMEOUT)


def _can_hold() -> bool:
    """Python runs signal handlers on the main thread only, and only its own can be swapped."""
    if threading.current_thread() is not threading.main_thread():
        return False
    return signal.getsignal(signal.SIGINT) is not None


@contextmanager
def held(*, deliver: bool = True) -> Iterator[None]:
    """Run the block with Ctrl-C (SIGINT) held: one that arrives meanwhile is delivered when
    the block ends (to whatever handler was there before), or dropped with ``deliver=False``.
    The block must be bounded (every network call here has a timeout)."""
    if not _can_hold():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and deliver:
            signal.raise_signal(signal.SIGINT)  # the previous handler, now: KeyboardInterrupt


def record(env: Environment, req: AccessRequest) -> None:
    """Create ``req`` in the store and note it as this run's, with Ctrl-C held."""
    with held():
        env.store.create(req)
        env.run.recorded(req)


def interrupted(env: Environment) -> JitctlError:
    """The error a Ctrl-C ends the run with: exit 130 once the pending request this run made
    is cancelled (or was decided or expired meanwhile); the cancel's own exit code (5: the
    store or the broker cannot be reached) when it could not be cancelled."""
    run = env.run
    if run.made is None:
        if run.waiting is not None:
            return Interrupted(
                f"interrupted: stopped waiting; {run.waiting} is still pending",
                f"resume with `jitctl wait {run.waiting}`",
            )
        return Interrupted("interrupted")
    request_id = run.made
    try:
        with held(deliver=False):  # pressed again: the cancel still finishes
            env.service.cancel(request_id, interrupted=True)
    except JitctlError as exc:
        return _not_cancelled(request_id, exc)
    run.made = None
    return Interrupted(f"interrupted: request {request_id} cancelled")


def _not_cancelled(request_id: str, exc: JitctlError) -> JitctlError:
    if exc.exit_code in _NOTHING_LEFT:  # approved, denied or expired meanwhile: not pending
        return Interrupted(f"interrupted: request {request_id} was not cancelled: {exc.message}")
    error = JitctlError(
        f"interrupted, but request {request_id} could not be cancelled: {exc.message}",
        f"it stays pending until it expires; cancel it with `jitctl cancel {request_id}`",
    )
    error.exit_code = exc.exit_code
    return error
