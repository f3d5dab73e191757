"""Plain data shared by the core modules. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Request states (shared/CONTRACT.md). Transitions live in the store.
PENDING = "pending"
APPROVED = "approved"
DENIED = "denied"
EXPIRED = "expired"
CANCELLED = "cancelled"
ISSUED = "issued"
REVOKED = "revoked"
STATUSES = (PENDING, APPROVED, DENIED, EXPIRED, CANCELLED, ISSUED, REVOKED)

# How a request was decided.
ON_CALL = "on_call"
PEER = "peer"
BREAK_GLASS = "break_glass"  # issued at once, loudly; an approver reviews it afterwards

# A break-glass grant's review (public_dict's "review"; None for every other request).
UNREVIEWED = "unreviewed"
REVIEWED = "reviewed"
INCIDENT = "incident"  # working an open PagerDuty incident on one of the role's services


@dataclass(frozen=True)
class Caller:
    """Who is calling: the AWS principal (from STS, never typed) and the person behind it."""

    arn: str
    account: str
    person: str  # lower-case email, the key for PagerDuty and approver comparisons
    # Where the call came from: "cli" (an AWS identity: arn is its principal) or "slack" (a
    # Slack user the broker mapped to a person: arn is "slack:USER_ID"; jitctl.slack).
    channel: str = "cli"


@dataclass(frozen=True)
class OnCallEvidence:
    """Why PagerDuty says the caller is on call: which policy or schedule, level, shift."""

    matched_kind: str  # "escalation_policy", "schedule" or "service"
    matched_id: str  # the id from the role's policy that matched
    escalation_policy_id: str
    level: int
    start: datetime | None  # None: permanent on-call
    end: datetime | None  # None: permanent on-call
    pd_user_id: str
    schedule_id: str | None = None

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form for --json output and audit records."""
        from jitctl.timeutil import rfc3339

        return {
            "matched_kind": self.matched_kind,
            "matched_id": self.matched_id,
            "escalation_policy_id": self.escalation_policy_id,
            "schedule_id": self.schedule_id,
            "level": self.level,
            "start": rfc3339(self.start) if self.start else None,
            "end": rfc3339(self.end) if self.end else None,
            "pd_user_id": self.pd_user_id,
        }

    def tag_value(self) -> str:
        """Compact form for an STS session tag (allowed chars only)."""
        return f"{self.matched_kind}/{self.matched_id}/L{self.level}"


@dataclass(frozen=True)
class OnCallResult:
    on_call: bool
    reason: str  # human-readable: why the fast path applies or not
    evidence: OnCallEvidence | None = None


@dataclass(frozen=True)
class IncidentEvidence:
    """The PagerDuty incident a request is tied to, and how the requester is on it."""

    incident_id: str
    number: int
    title: str
    service_id: str
    status: str  # "triggered" or "acknowledged" when read (resolved ones never count)
    how: str  # "assigned" or "acknowledged"
    pd_user_id: str

    def as_dict(self) -> dict[str, Any]:
        """The form kept on the request, in audit records and in --json output."""
        return {
            "id": self.incident_id,
            "number": self.number,
            "title": self.title,
            "service": self.service_id,
            "status": self.status,
            "how": self.how,
            "pd_user_id": self.pd_user_id,
        }

    def tag_value(self) -> str:
        """For the jitctl:incident session tag: id/number/service (no title: tag values allow
        only letters, digits, spaces and ``_.:/=+-@``)."""
        return f"{self.incident_id}/{self.number}/{self.service_id}"


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    expiration: datetime | None = None  # None: a cached set written without one

    def __repr__(self) -> str:  # never let a secret reach a log or a traceback
        return f"Credentials(access_key_id={self.access_key_id!r}, expiration={self.expiration!r})"

    @property
    def expires(self) -> datetime:
        """The end of a set STS issued (AssumeRole always gives one; only a cached set read
        back may lack it, and those are never reused or issued on)."""
        if self.expiration is None:
            raise ValueError("credentials without an expiration")
        return self.expiration


@dataclass
class Issued:
    """Credentials the core handed out for a request. ``credentials`` is secret: renderers
    never print it."""

    request: AccessRequest
    credentials: Credentials | None  # None: an identity_center grant (nothing to hand out)
    evidence: OnCallEvidence | None = None
    notes: list[str] = field(default_factory=list)
    region: str | None = None  # the role's `region` in the policy, for the jit profile

    def keys(self) -> Credentials:
        """The credentials, for whatever hands them out; an identity_center grant has none."""
        if self.credentials is None:
            from jitctl.errors import UsageError

            raise UsageError(
                f"{self.request.role} is an IAM Identity Center grant: it has no credentials",
                "sign in as usual (`aws sso login`, or the access portal)",
            )
        return self.credentials


@dataclass
class AccessRequest:
    """One access request, as the store keeps it. Times are aware UTC datetimes."""

    request_id: str
    role: str
    requester: str  # person (email)
    requester_arn: str
    reason: str
    duration_seconds: int
    status: str
    created_at: datetime
    expires_at: datetime  # a pending request expires at this time
    min_approvals: int = 1
    approval: str | None = None  # "on_call", "peer" or "break_glass" once decided
    approvers: list[str] = field(default_factory=list)  # persons who approved
    # Where each approval came from (person -> "cli" or "slack"): `flow.issue` re-checks it
    # against the role's approve_from as it is then. A person missing here approved from the CLI.
    approved_from: dict[str, str] = field(default_factory=dict)
    decided_at: datetime | None = None
    decided_by: str | None = None  # person who denied / cancelled, or the last approver
    decision_reason: str | None = None
    fast_path_reason: str | None = None  # why the fast path did (not) apply
    issued_at: datetime | None = None
    credentials_expire_at: datetime | None = None
    revoked_at: datetime | None = None
    revoked_by: str | None = None  # person who revoked the grant
    revoked_reason: str | None = None
    delivery_failed_at: datetime | None = None  # issued, but the credentials were not delivered
    # One approval, one grant (jitctl.store.claims): issues claimed so far (each claim comes
    # before its AssumeRole), the one whose credentials the store recorded, when the latest
    # claim was taken, the first issue's planned end (no re-issue ends later), the failure
    # recorded against the latest issue, and the failures already re-issued after.
    issue_attempt: int = 0
    issued_attempt: int = 0
    claimed_at: datetime | None = None
    planned_end: datetime | None = None
    issue_failure: str | None = None
    reissued_after: list[str] = field(default_factory=list)
    reviewed_at: datetime | None = None  # a break-glass grant's after-the-fact review
    reviewed_by: str | None = None  # person (an approver, never the requester)
    review_reason: str | None = None
    # The PagerDuty incident this grant is tied to (IncidentEvidence.as_dict(), plus
    # "end_with_incident"), and the page that asked approvers ({"service", "id", "status"}).
    incident: dict[str, Any] | None = None
    page: dict[str, Any] | None = None
    # The Slack messages that announced it ([{"channel", "ts"}], jitctl.slack.announce), each
    # updated when the request changes.
    slack: list[dict[str, Any]] | None = None
    # An identity_center grant's account assignment (jitctl.identity_center.record): kind,
    # account, permission set, and its state ("present", "preexisting", "kept", "removed", or
    # "creating" from just before CreateAccountAssignment until AWS says SUCCEEDED).
    assignment: dict[str, Any] | None = None
    # Extending a grant (jitctl.lifecycle.extend): an extension request names the grant it
    # extends; the grant keeps when its first issue was, its extended end, and its extensions.
    extends: str | None = None
    first_issued_at: datetime | None = None
    extended_until: datetime | None = None
    extensions: list[str] = field(default_factory=list)
    version: int = 0  # optimistic-concurrency counter, bumped on every write


def review_state(req: AccessRequest) -> str | None:
    """ "unreviewed" while a break-glass request awaits an approver's review, then "reviewed"."""
    if req.approval != BREAK_GLASS:
        return None
    return REVIEWED if req.reviewed_at is not None else UNREVIEWED


def grant_end(req: AccessRequest) -> datetime | None:
    """When an issued grant's credentials end, extensions included (None: never issued)."""
    ends, extended = req.credentials_expire_at, req.extended_until
    if ends is None or extended is None:
        return ends
    return max(ends, extended)


def access_ends(req: AccessRequest) -> datetime | None:
    """When an issued grant's access ends: its credentials' end (extensions included), or its
    revocation if sooner."""
    ends = grant_end(req)
    if ends is not None and req.revoked_at is not None:
        return min(ends, req.revoked_at)
    return ends


def public_dict(req: AccessRequest) -> dict[str, object]:
    """The contract's JSON shape for a request (never a secret)."""
    from jitctl.timeutil import rfc3339

    def ts(value: datetime | None) -> str | None:
        return rfc3339(value) if value else None

    return {
        "request_id": req.request_id,
        "role": req.role,
        "requester": req.requester,
        "requester_arn": req.requester_arn,
        "status": req.status,
        "reason": req.reason,
        "created_at": ts(req.created_at),
        "expires_at": ts(req.expires_at),
        "duration_seconds": req.duration_seconds,
        "min_approvals": req.min_approvals,
        "approval": req.approval,
        "approvers": list(req.approvers),
        "decided_at": ts(req.decided_at),
        "decided_by": req.decided_by,
        "decision_reason": req.decision_reason,
        "fast_path": req.fast_path_reason,
        "issued_at": ts(req.issued_at),
        "credentials_expire_at": ts(req.credentials_expire_at),
        # When the grant's access ends (or ended): its own field, so that `expires_at` keeps
        # one meaning, the pending request's TTL. Null for a request never issued.
        "ends_at": ts(access_ends(req)),
        "revoked_at": ts(req.revoked_at),
        "revoked_by": req.revoked_by,
        "revoked_reason": req.revoked_reason,
        "delivery_failed_at": ts(req.delivery_failed_at),
        "review": review_state(req),
        "reviewed_at": ts(req.reviewed_at),
        "reviewed_by": req.reviewed_by,
        "review_reason": req.review_reason,
        "incident": dict(req.incident) if req.incident else None,
        "page": dict(req.page) if req.page else None,
        "extends": req.extends,
        "extensions": list(req.extensions),
    } | assignment_fields(req)


def is_identity_center(req: AccessRequest) -> bool:
    """A request of an identity_center role (an account assignment, not STS credentials)."""
    return (req.assignment or {}).get("kind") == "identity_center"


def assignment_fields(req: AccessRequest) -> dict[str, object]:
    """An identity_center request's `kind`, `account`, `permission_set` (as the policy writes
    it) and `assignment` (its state; null before it is issued); nothing for assume_role."""
    held = req.assignment or {}
    if not is_identity_center(req):
        return {}
    state = held.get("state")
    return {
        "kind": "identity_center",
        "account": held.get("account"),
        "permission_set": held.get("permission_set"),
        "assignment": state if state in ASSIGNMENT_STATES else None,
    }


@dataclass
class ThisRun:
    """What a Ctrl-C must know about this run: the pending request it recorded (cancelled),
    and a request it only waits for (`jitctl wait`: left pending, resumable)."""

    made: str | None = None
    waiting: str | None = None

    def recorded(self, req: AccessRequest) -> None:
        """Called inside ``held`` by whatever recorded ``req``."""
        if req.status == PENDING:
            self.made = req.request_id


ASSIGNMENT_STATES = ("present", "preexisting", "kept", "removed")
