"""Why the store's state machine refuses a transition, as errors carrying the contract's exit
codes (jitctl.store.base re-exports them)."""

from __future__ import annotations

from jitctl.errors import Denied, JitctlError, TimedOut
from jitctl.models import APPROVED, DENIED, EXPIRED, PENDING, AccessRequest
from jitctl.store.step import TransitionError


class RequestExpired(TimedOut):
    """The request expired before a decision; the store has marked it expired (exit 4)."""


def refused(req: AccessRequest, wanted: str) -> TransitionError:
    """``req`` is not in the ``wanted`` status this transition needs."""
    if wanted == PENDING and req.status == APPROVED:
        return TransitionError(f"request {req.request_id} is already approved")
    return TransitionError(f"request {req.request_id} is {req.status}, not {wanted}")


def decided(req: AccessRequest) -> JitctlError:
    """Why no decision now: 4 it expired, 3 an approver denied it, else 2, saying who decided."""
    rid, by, who = req.request_id, f" by {req.decided_by or ''}", ", ".join(req.approvers)
    if req.status == EXPIRED:
        return RequestExpired(f"request {rid} expired before a decision")
    if req.status == DENIED:
        return Denied(f"request {rid} was already denied{by}: {req.decision_reason}")
    now = "" if req.status == APPROVED else f" (now {req.status})"
    if who:
        return TransitionError(f"request {rid} is already approved by {who}{now}")
    return refused(req, PENDING)
