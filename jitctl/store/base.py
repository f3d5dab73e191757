"""The request store's interface, its errors and the one state machine both backends share.

Backends only know how to read a record and write it back atomically (``_transition``);
every rule about which transition is legal lives here, so SQLite and DynamoDB cannot drift.

    pending -> approved -> issued -> revoked
    pending -> denied | expired | cancelled
    approved/issued: claim an issue -> issued   (claims: at most one re-issue per recorded
                                                 failure kind, jitctl.store.claims)
    break-glass, unreviewed -> reviewed  (whatever its status: an approver looked at it)
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from datetime import UTC, datetime
from typing import Any, Protocol

from jitctl.errors import Denied, JitctlError, UsageError
from jitctl.models import (
    APPROVED,
    BREAK_GLASS,
    CANCELLED,
    DENIED,
    EXPIRED,
    ISSUED,
    PEER,
    PENDING,
    REVOKED,
    AccessRequest,
)
from jitctl.store import claims
from jitctl.store.bookkeeping import plan_assignment, plan_extended, plan_page, plan_slack
from jitctl.store.records import aware
from jitctl.store.records import ts as ts  # re-exported: benchmarks/run.py imports it here
from jitctl.store.refusals import RequestExpired as RequestExpired
from jitctl.store.refusals import decided as _decided
from jitctl.store.refusals import refused as _not
from jitctl.store.step import Planner as Planner
from jitctl.store.step import Step as Step
from jitctl.store.step import TransitionError as TransitionError
from jitctl.store.step import copy_request as _copy
from jitctl.timeutil import rfc3339

# ---------------------------------------------------------------- errors


class StoreError(JitctlError):
    """The store failed in a way the user cannot fix (exit 1)."""


class DuplicateRequest(StoreError):
    """``create`` with an id that already exists: ids are random, so this is a bug."""


class NotFound(UsageError):
    """No request has this id."""


# ---------------------------------------------------------------- interface


class RequestStore(Protocol):
    """Both backends. Every transition is atomic and takes the caller's ``now`` (the clock is
    the app's). Reads never write: ``get``/``list`` given ``now`` REPORT a pending request
    past its expiry as expired (``derive``), and ``list(pending_only=True)`` leaves it out;
    without ``now`` they return exactly what is stored. ``list`` is newest first."""

    def init(self) -> None: ...
    def create(self, req: AccessRequest) -> None: ...
    def get(self, request_id: str, *, now: datetime | None = None) -> AccessRequest | None: ...
    def list(
        self,
        *,
        pending_only: bool = False,
        requester: str | None = None,
        role: str | None = None,
        limit: int = 100,
        now: datetime | None = None,
    ) -> builtins.list[AccessRequest]: ...
    def approve(
        self,
        request_id: str,
        approver: str,
        *,
        now: datetime,
        reason: str | None = None,
        min_approvals: int | None = None,
        channel: str = "cli",
    ) -> AccessRequest: ...
    def deny(
        self, request_id: str, person: str, *, now: datetime, reason: str
    ) -> AccessRequest: ...
    def cancel(self, request_id: str, person: str, *, now: datetime) -> AccessRequest: ...
    def expire(self, request_id: str, *, now: datetime) -> AccessRequest: ...
    def claim_issue(
        self, request_id: str, *, now: datetime, planned_end: datetime
    ) -> AccessRequest: ...
    def mark_issued(
        self,
        request_id: str,
        *,
        now: datetime,
        credentials_expire_at: datetime,
        attempt: int | None = None,
    ) -> AccessRequest: ...
    def mark_issue_failed(self, request_id: str, *, attempt: int, kind: str) -> AccessRequest: ...
    def release_claim(self, request_id: str, *, attempt: int) -> AccessRequest: ...
    def mark_delivery_failed(self, request_id: str, *, now: datetime) -> AccessRequest: ...
    def mark_revoked(
        self, request_id: str, person: str, *, now: datetime, reason: str
    ) -> AccessRequest: ...
    def review(
        self, request_id: str, person: str, *, now: datetime, reason: str | None
    ) -> AccessRequest: ...
    def set_page(self, request_id: str, page: dict[str, Any]) -> AccessRequest: ...
    def set_slack(
        self, request_id: str, messages: builtins.list[dict[str, Any]]
    ) -> AccessRequest: ...
    def set_assignment(self, request_id: str, assignment: dict[str, Any]) -> AccessRequest: ...
    def mark_extended(
        self, request_id: str, *, extension: str, until: datetime
    ) -> AccessRequest: ...


# ---------------------------------------------------------------- the state machine


def _lapsed(req: AccessRequest, now: datetime) -> Step | None:
    """Any transition on a pending request past its expiry expires it instead."""
    if req.status == PENDING and now >= req.expires_at:
        return Step(
            write=_copy(req, status=EXPIRED, decided_at=now, decided_by=None),
            error=RequestExpired(
                f"request {req.request_id} expired at {rfc3339(req.expires_at)} before a decision"
            ),
        )
    return None


def plan_approve(
    approver: str,
    now: datetime,
    reason: str | None,
    min_approvals: int | None = None,
    channel: str = "cli",
) -> Planner:
    """``min_approvals``: the policy's current number (None: the one stored with the request,
    which its requester could have rewritten). ``channel``: where the approval came from
    ("cli" or "slack"), kept per approver in ``approved_from``."""
    person = approver.strip().lower()

    def plan(req: AccessRequest) -> Step:
        if (lapsed := _lapsed(req, now)) is not None:
            return lapsed
        if req.status != PENDING:
            raise _decided(req)
        # Policy decides who may approve; this is defence in depth for the one rule that never bends.
        if person == req.requester.strip().lower():
            raise Denied(f"{person} requested {req.request_id} and cannot approve it")
        if person in req.approvers:
            return Step()  # the same approver twice counts once
        approvers = [*req.approvers, person]
        came_from = {**req.approved_from, person: channel}
        need = max(1, req.min_approvals if min_approvals is None else min_approvals)
        if len(approvers) < need:
            return Step(
                write=_copy(req, approvers=approvers, approved_from=came_from, min_approvals=need)
            )
        return Step(
            write=_copy(
                req,
                status=APPROVED,
                approval=PEER,
                approvers=approvers,
                approved_from=came_from,
                min_approvals=need,
                decided_at=now,
                decided_by=person,
                decision_reason=reason,
            )
        )

    return plan


def plan_deny(person: str, now: datetime, reason: str) -> Planner:
    if not reason or not reason.strip():
        raise UsageError("denying a request needs a reason", "pass --reason TEXT")

    def plan(req: AccessRequest) -> Step:
        if (lapsed := _lapsed(req, now)) is not None:
            return lapsed
        if req.status != PENDING:
            raise _decided(req)
        return Step(
            write=_copy(
                req, status=DENIED, decided_at=now, decided_by=person, decision_reason=reason
            )
        )

    return plan


def plan_cancel(person: str, now: datetime) -> Planner:
    def plan(req: AccessRequest) -> Step:
        if (lapsed := _lapsed(req, now)) is not None:
            return lapsed
        if req.status != PENDING:
            raise _not(req, PENDING)
        return Step(write=_copy(req, status=CANCELLED, decided_at=now, decided_by=person))

    return plan


def plan_expire(now: datetime) -> Planner:
    def plan(req: AccessRequest) -> Step:
        if req.status == EXPIRED:
            return Step()  # a sweeper and a waiter may both get here: harmless
        if req.status != PENDING:
            raise _not(req, PENDING)
        if now < req.expires_at:
            raise TransitionError(
                f"request {req.request_id} does not expire until {rfc3339(req.expires_at)}"
            )
        return Step(write=_copy(req, status=EXPIRED, decided_at=now, decided_by=None))

    return plan


def derive(req: AccessRequest, now: datetime | None) -> AccessRequest:
    """What a reader reports at ``now``: a pending request past its expiry is expired (as of
    its ``expires_at``). Nothing is written: a reader with a wrong clock must not change the
    team's state; the next transition records the expiry with the trusted time."""
    if now is None or req.status != PENDING or aware(now) < req.expires_at:
        return req
    return _copy(req, status=EXPIRED, decided_at=req.expires_at, decided_by=None)


def plan_revoked(person: str, now: datetime, reason: str) -> Planner:
    def plan(req: AccessRequest) -> Step:
        if req.status == REVOKED:
            return Step()  # revoking twice is harmless
        if (lapsed := _lapsed(req, now)) is not None:
            return lapsed
        if req.status != ISSUED:
            raise _not(req, ISSUED)
        return Step(
            write=_copy(
                req, status=REVOKED, revoked_at=now, revoked_by=person, revoked_reason=reason
            )
        )

    return plan


def plan_reviewed(person: str, now: datetime, reason: str | None) -> Planner:
    """A break-glass request is reviewed once, by someone other than its requester."""
    reviewer = person.strip().lower()

    def plan(req: AccessRequest) -> Step:
        if req.approval != BREAK_GLASS:
            raise TransitionError(
                f"request {req.request_id} is not a break-glass grant: nothing to review"
            )
        if reviewer == req.requester.strip().lower():  # defence in depth, as for approvals
            raise Denied(f"{reviewer} requested {req.request_id} and cannot review it")
        if req.reviewed_at is not None:
            raise TransitionError(
                f"request {req.request_id} was already reviewed by {req.reviewed_by} "
                f"at {rfc3339(req.reviewed_at)}"
            )
        return Step(write=_copy(req, reviewed_at=now, reviewed_by=reviewer, review_reason=reason))

    return plan


def check_new(req: AccessRequest) -> None:
    """What ``create`` accepts: a pending request, or a fast-path one created already approved."""
    aware(req.created_at)
    aware(req.expires_at)
    if req.status not in (PENDING, APPROVED):
        raise StoreError(
            f"request {req.request_id}: cannot create a request with status {req.status}"
        )
    if req.status == APPROVED and not req.approval:
        raise StoreError(f"request {req.request_id}: an approved request needs approval set")


class BaseStore(ABC):
    """Both backends: the public transitions, expressed as planners over ``_transition``."""

    @abstractmethod
    def _transition(self, request_id: str, plan: Planner) -> AccessRequest:
        """Atomically: read the record, ``plan`` it, write the Step's record if any, then raise
        the Step's error if any. Raises NotFound for an unknown id."""

    def approve(
        self,
        request_id: str,
        approver: str,
        *,
        now: datetime,
        reason: str | None = None,
        min_approvals: int | None = None,
        channel: str = "cli",
    ) -> AccessRequest:
        plan = plan_approve(approver, aware(now), reason, min_approvals, channel)
        return self._transition(request_id, plan)

    def deny(self, request_id: str, person: str, *, now: datetime, reason: str) -> AccessRequest:
        return self._transition(request_id, plan_deny(person, aware(now), reason))

    def cancel(self, request_id: str, person: str, *, now: datetime) -> AccessRequest:
        return self._transition(request_id, plan_cancel(person, aware(now)))

    def expire(self, request_id: str, *, now: datetime) -> AccessRequest:
        return self._transition(request_id, plan_expire(aware(now)))

    def claim_issue(
        self, request_id: str, *, now: datetime, planned_end: datetime
    ) -> AccessRequest:
        """Claim the request's next issue before AssumeRole (jitctl.store.claims)."""
        return self._transition(request_id, claims.plan_claim(aware(now), aware(planned_end)))

    def mark_issued(
        self,
        request_id: str,
        *,
        now: datetime,
        credentials_expire_at: datetime,
        attempt: int | None = None,
    ) -> AccessRequest:
        plan = claims.plan_issued(aware(now), aware(credentials_expire_at), attempt)
        return self._transition(request_id, plan)

    def mark_issue_failed(self, request_id: str, *, attempt: int, kind: str) -> AccessRequest:
        return self._transition(request_id, claims.plan_failed(attempt, kind))

    def release_claim(self, request_id: str, *, attempt: int) -> AccessRequest:
        return self._transition(request_id, claims.plan_release(attempt))

    def mark_delivery_failed(self, request_id: str, *, now: datetime) -> AccessRequest:
        return self._transition(request_id, claims.plan_delivery_failed(aware(now)))

    def mark_revoked(
        self, request_id: str, person: str, *, now: datetime, reason: str
    ) -> AccessRequest:
        return self._transition(request_id, plan_revoked(person, aware(now), reason))

    def review(
        self, request_id: str, person: str, *, now: datetime, reason: str | None
    ) -> AccessRequest:
        return self._transition(request_id, plan_reviewed(person, aware(now), reason))

    def set_page(self, request_id: str, page: dict[str, Any]) -> AccessRequest:
        return self._transition(request_id, plan_page(page))

    def set_slack(self, request_id: str, messages: list[dict[str, Any]]) -> AccessRequest:
        return self._transition(request_id, plan_slack(messages))
    def set_assignment(self, request_id: str, assignment: dict[str, Any]) -> AccessRequest:
        return self._transition(request_id, plan_assignment(assignment))
    def mark_extended(self, request_id: str, *, extension: str, until: datetime) -> AccessRequest:
        return self._transition(request_id, plan_extended(extension, aware(until)))


def not_found(request_id: str) -> NotFound:
    return NotFound(f"no request {request_id}", "`jitctl list` shows the known requests")


def redeliverable(req: AccessRequest) -> bool:
    """Issued (or claimed) and a recorded failure may allow one more issue: `jitctl wait` tries,
    and the claim decides (an issue still within its lease is left to its issuer)."""
    return claims.reissuable(req, datetime.max.replace(tzinfo=UTC))
