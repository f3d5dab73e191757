"""One approval, one grant: the issue claim, taken in the store before AssumeRole.

An issuer first claims the next issue of a request (a conditional write: SQLite inside its
write transaction, DynamoDB with a condition on the item's version and status), then assumes
the role, then marks the claim issued. So of two issuers, or of a killed issuer and the
`jitctl wait` that follows it, only one holds a claim at a time, and the store remembers
every issue ever claimed, whether or not its process lived to record it.

An issue after the first (a re-issue) needs a recorded failure of the latest one, and each
kind of failure buys at most one re-issue per request:

- ``delivery_failed``: the caller could not write what it was given (a full disk, a bad
  path), reported by the caller itself. Once: a second report is refused, so a requester
  cannot mint key pairs by reporting failures in a loop.
- ``interrupted``: a claim whose issuer never finished (killed, crashed, lost its network)
  and is older than CLAIM_LEASE. Once.
- ``assume_failed``: AWS refused or failed the AssumeRole after the claim. Once.

So a request yields at most four sets of credentials over its life, and the issuer of every
re-issue first cuts off the sets issued before (jitctl.lifecycle.reissue); the store keeps the first
issue's planned end, which bounds every re-issue's end.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from jitctl.errors import Denied, Unavailable
from jitctl.models import APPROVED, ISSUED, AccessRequest
from jitctl.store.step import Planner, Step, TransitionError, copy_request
from jitctl.timeutil import rfc3339

DELIVERY_FAILED = "delivery_failed"
INTERRUPTED = "interrupted"
ASSUME_FAILED = "assume_failed"
FAILURES = (DELIVERY_FAILED, INTERRUPTED, ASSUME_FAILED)
# How long a claim is left to its issuer before `jitctl wait` takes it as interrupted: longer
# than a slow issue (the cut-off's IAM writes, AssumeRole, the audit trail). Safety does not
# rest on it: every set of an earlier claim is cut off, whenever it was issued.
CLAIM_LEASE = timedelta(minutes=2)
_WHY = {
    DELIVERY_FAILED: "a failed delivery",
    INTERRUPTED: "an interrupted issue",
    ASSUME_FAILED: "a failed AssumeRole",
}


class IssueInProgress(Unavailable):
    """Another process holds the request's issue claim and may still finish it (exit 5)."""


def attempts(req: AccessRequest) -> tuple[int, int]:
    """(issues claimed, issue recorded); a grant issued before claims existed counts as one."""
    if req.issue_attempt == 0 and req.status == ISSUED:
        return 1, 1
    return req.issue_attempt, req.issued_attempt


def in_progress(req: AccessRequest) -> bool:
    """A claim was taken and its issue never recorded (still running, or interrupted)."""
    claimed, issued = attempts(req)
    return claimed > issued and req.issue_failure is None


def failure_now(req: AccessRequest, now: datetime, lease: timedelta | None = None) -> str | None:
    """The recorded failure that would allow a re-issue at ``now``, or None."""
    lease = CLAIM_LEASE if lease is None else lease  # read when used: tests shorten it
    if req.issue_failure is not None:
        return req.issue_failure
    if req.status == ISSUED and req.delivery_failed_at is not None and not in_progress(req):
        return DELIVERY_FAILED  # recorded before claims existed
    if in_progress(req) and req.claimed_at is not None and now >= req.claimed_at + lease:
        return INTERRUPTED
    return None


def reissuable(req: AccessRequest, now: datetime, lease: timedelta | None = None) -> bool:
    """Issued, or claimed, and a failure not yet re-issued after allows one more issue."""
    failure = failure_now(req, now, lease)
    claimed, _ = attempts(req)
    return claimed > 0 and failure is not None and failure not in req.reissued_after


def plan_claim(now: datetime, planned_end: datetime, lease: timedelta | None = None) -> Planner:
    """Claim the next issue. ``planned_end``: when a first issue would end (kept; a re-issue
    is bounded by the one stored)."""

    def plan(req: AccessRequest) -> Step:
        if req.status not in (APPROVED, ISSUED):
            raise TransitionError(f"request {req.request_id} is {req.status}, not approved")
        claimed, _ = attempts(req)
        if claimed == 0:
            if req.status != APPROVED:
                raise TransitionError(f"request {req.request_id} is {req.status}, not approved")
            return Step(write=_claimed(req, 1, now, planned_end=planned_end))
        failure = _reissue_failure(req, now, lease)
        end = req.planned_end or req.credentials_expire_at or planned_end
        return Step(
            write=_claimed(
                req,
                claimed + 1,
                now,
                planned_end=end,
                reissued_after=[*req.reissued_after, failure],
            )
        )

    return plan


def _claimed(req: AccessRequest, attempt: int, now: datetime, **changes: Any) -> AccessRequest:
    _, issued = attempts(req)
    return copy_request(
        req,
        issue_attempt=attempt,
        issued_attempt=issued,
        claimed_at=now,
        issue_failure=None,
        **changes,
    )


def _reissue_failure(req: AccessRequest, now: datetime, lease: timedelta | None) -> str:
    """The failure this re-issue is after; raises when none allows one."""
    failure = failure_now(req, now, lease)
    if failure is None and in_progress(req):
        since = req.claimed_at or now
        lease = CLAIM_LEASE if lease is None else lease
        raise IssueInProgress(
            f"request {req.request_id} is being issued by another jitctl process "
            f"(claimed at {rfc3339(since)})",
            f"if that process died, `jitctl wait {req.request_id}` issues again after "
            f"{rfc3339(since + lease)}",
        )
    if failure is None:
        raise TransitionError(
            f"request {req.request_id} is already issued; request again for new credentials"
        )
    if failure in req.reissued_after:
        raise Denied(
            f"request {req.request_id} was already issued again once after {_WHY[failure]}: "
            "one approval yields at most one re-issue per kind of failure",
            "request again",
        )
    return failure


def plan_issued(now: datetime, credentials_expire_at: datetime, attempt: int | None) -> Planner:
    """Record the credentials of issue ``attempt`` (None: claim and record the first issue in
    one step, for a request never claimed)."""

    def plan(req: AccessRequest) -> Step:
        claimed, issued = attempts(req)
        if req.status not in (APPROVED, ISSUED):
            raise TransitionError(f"request {req.request_id} is {req.status}, not approved")
        if attempt is None and (claimed != 0 or req.status != APPROVED):
            raise TransitionError(f"request {req.request_id} is {req.status}, not approved")
        number = attempt or 1
        if attempt is not None and (claimed != attempt or issued >= attempt):
            raise TransitionError(
                f"request {req.request_id}: issue {attempt} was superseded (issue {claimed} "
                "holds the claim); its credentials are not handed out"
            )
        return Step(
            write=copy_request(
                req,
                status=ISSUED,
                issued_at=now,
                credentials_expire_at=credentials_expire_at,
                delivery_failed_at=None,
                issue_attempt=number,
                issued_attempt=number,
                issue_failure=None,
                first_issued_at=req.first_issued_at or now,  # a grant's life starts here
                # AWS's end of the first issue, if earlier than planned, bounds re-issues
                planned_end=min(req.planned_end or credentials_expire_at, credentials_expire_at)
                if number == 1
                else req.planned_end,
            )
        )

    return plan


def plan_delivery_failed(now: datetime) -> Planner:
    """The caller could not write the credentials of the latest issue."""

    def plan(req: AccessRequest) -> Step:
        if req.status != ISSUED or in_progress(req):
            raise TransitionError(f"request {req.request_id} is {req.status}, not issued")
        if DELIVERY_FAILED in req.reissued_after:
            raise Denied(
                f"request {req.request_id} was already issued again once after a failed "
                "delivery: it is not issued a third time",
                "fix the credentials file, then request again",
            )
        return Step(write=copy_request(req, delivery_failed_at=now, issue_failure=DELIVERY_FAILED))

    return plan


def plan_failed(attempt: int, kind: str) -> Planner:
    """Issue ``attempt`` failed after its claim: AssumeRole failed (``assume_failed``), or its
    issuer was interrupted (``interrupted``: no lease to wait out). Nothing changes if that
    claim was superseded or recorded meanwhile."""

    def plan(req: AccessRequest) -> Step:
        claimed, issued = attempts(req)
        if claimed != attempt or issued >= attempt or req.issue_failure is not None:
            return Step()
        return Step(write=copy_request(req, issue_failure=kind))

    return plan


def plan_release(attempt: int) -> Planner:
    """Claim ``attempt`` issued nothing (its cut-off or its time bound failed before
    AssumeRole): give back the failure it was claimed for, so a later claim may use it."""

    def plan(req: AccessRequest) -> Step:
        claimed, issued = attempts(req)
        if claimed != attempt or issued >= attempt or not req.reissued_after:
            return Step()
        *rest, failure = req.reissued_after
        return Step(write=copy_request(req, issue_failure=failure, reissued_after=rest))

    return plan
