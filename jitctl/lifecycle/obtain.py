"""The request lifecycle, the same for every host: submit, wait for a decision, issue.

Hosts pass callbacks to show progress; the steps themselves go through an ``AccessService``
(local or a broker), so a terminal and a server run one sequence.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from jitctl.lifecycle.contract import AccessService, Outcome, PollCallback
from jitctl.models import AccessRequest, Issued


def obtain(
    service: AccessService,
    *,
    role: str,
    reason: str | None,
    duration: timedelta | None,
    timeout: timedelta | None,
    wait: bool,
    on_pending: Callable[[Outcome], None] | None = None,
    on_poll: Callable[[Outcome], PollCallback | None] | None = None,
    break_glass: bool = False,
    incident: str | None = None,
) -> Issued | AccessRequest:
    """Credentials (at once when fast-tracked or break-glass, else after approval), or the
    pending request when ``wait`` is false. ``on_poll`` builds the per-poll callback for a
    pending request. A Ctrl-C at any point cancels the pending request: the service notes
    it as this run's as it is recorded, and the host's handler ends the run with
    ``jitctl.lifecycle.interrupts.interrupted``."""
    outcome = service.request(role, reason, duration, break_glass, incident=incident)
    return follow(
        service, outcome, timeout=timeout, wait=wait, on_pending=on_pending, on_poll=on_poll
    )


def follow(
    service: AccessService,
    outcome: Outcome,
    *,
    timeout: timedelta | None,
    wait: bool,
    on_pending: Callable[[Outcome], None] | None = None,
    on_poll: Callable[[Outcome], PollCallback | None] | None = None,
) -> Issued | AccessRequest:
    """After a request (or an extension, `jitctl extend`) is recorded: its credentials when
    issued at once; else the pending request, or, with ``wait``, the credentials once approved."""
    if outcome.issued is not None:
        return outcome.issued
    if on_pending is not None:
        on_pending(outcome)
    if not wait:
        return outcome.request
    approved = service.wait(
        outcome.request.request_id,
        timeout=timeout,
        on_poll=on_poll(outcome) if on_poll else None,
    )
    return service.issue(approved.request_id)
