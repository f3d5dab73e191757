"""Waiting for a peer's decision: poll the store, back off gently, end cleanly on every outcome."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from jitctl import models
from jitctl.audit.fields import audit_fields
from jitctl.errors import Denied, TimedOut
from jitctl.models import AccessRequest
from jitctl.slack.announce import sync as slack_sync
from jitctl.store.base import NotFound, TransitionError, redeliverable
from jitctl.timeutil import format_duration

if TYPE_CHECKING:
    from jitctl.context import Environment

FIRST_INTERVAL = 0.5  # seconds between polls at first: an approval shows up within a second
MAX_INTERVAL = 5.0  # never slower than this, however long the wait
BRISK_PERIOD = 10.0  # poll at FIRST_INTERVAL this long before backing off


def next_interval(interval: float, elapsed: float) -> float:
    if elapsed < BRISK_PERIOD:
        return FIRST_INTERVAL
    return min(MAX_INTERVAL, interval * 1.5)


def wait_for_decision(
    env: Environment,
    request_id: str,
    *,
    timeout: timedelta | None,
    on_poll: Callable[[AccessRequest, float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> AccessRequest:
    """Return the request once approved. Denied -> exit 3, expired or timed out -> exit 4.
    A Ctrl-C is the run's to handle (jitctl.lifecycle.interrupts: its pending request is cancelled)."""
    start = monotonic()
    interval = FIRST_INTERVAL
    while True:
        req = _observe(env, request_id)
        elapsed = monotonic() - start
        if _ready(env, req):
            return req
        if on_poll is not None:
            on_poll(req, elapsed)
        _check_timeout(request_id, timeout, elapsed)
        sleep(_pause(interval, timeout, elapsed))
        interval = next_interval(interval, monotonic() - start)


def _ready(env: Environment, req: AccessRequest) -> bool:
    """Approved (a peer approval is recorded as observed), or issued but never delivered."""
    if redeliverable(req):
        return True  # issued, but never delivered: issue again while the approval holds
    if req.status != models.APPROVED:
        return False
    if req.approval == models.PEER:
        # What the store says, seen by the requester: the evidence of a decision is
        # each approver's own `approved` record (actor = the approver's principal).
        env.audit.append(
            "approved",
            **audit_fields(env, req),
            stored_approvers=req.approvers,
            stored_decided_by=req.decided_by,
            observed=True,
        )
    return True


def _check_timeout(request_id: str, timeout: timedelta | None, elapsed: float) -> None:
    if timeout is not None and elapsed >= timeout.total_seconds():
        raise TimedOut(
            f"no decision on {request_id} after {format_duration(timeout)}; it stays pending "
            f"until it expires",
            f"resume with `jitctl wait {request_id}`",
        )


def _pause(interval: float, timeout: timedelta | None, elapsed: float) -> float:
    """The next sleep: the poll interval, cut so the wait ends on time."""
    if timeout is None:
        return interval
    return min(interval, max(0.05, timeout.total_seconds() - elapsed))


def record_expiry(env: Environment, request_id: str, now: datetime) -> None:
    """The requester's waiter records its own request's expiry (a transition, at the trusted
    time), so it leaves the pending listings; a reader elsewhere only reports it."""
    try:
        expired = env.store.expire(request_id, now=now)
    except TransitionError:
        return  # decided just now, or already expired: the next poll sees which
    if (warning := slack_sync(env, expired)) is not None and env.on_warning:
        env.on_warning(warning)


def _observe(env: Environment, request_id: str) -> AccessRequest:
    """One poll: the request's state now, with terminal states turned into their exit codes."""
    now = env.clock.now()
    req = env.store.get(request_id, now=now)  # reports a lapsed request as expired
    if req is None:
        raise NotFound(f"no request {request_id}")
    if req.status == models.EXPIRED:
        record_expiry(env, request_id, now)
        env.audit.append("expired", **audit_fields(env, req))
        raise TimedOut(f"request {request_id} expired before anyone decided", "request again")
    if req.status == models.DENIED:
        env.audit.append(
            "denied", **audit_fields(env, req), decided_by=req.decided_by, observed=True
        )
        why = f": {req.decision_reason}" if req.decision_reason else ""
        raise Denied(f"request {request_id} was denied by {req.decided_by}{why}")
    if req.status == models.CANCELLED:
        raise Denied(f"request {request_id} was cancelled")
    if req.status in (models.ISSUED, models.REVOKED) and not redeliverable(req):
        raise TransitionError(
            f"request {request_id} is already {req.status}; request again for new credentials"
        )
    return req
