"""The request flow: check the policy and PagerDuty, record, assume the role, hand out credentials.

Every step leaves an audit record; nothing is issued unless its record was written first.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from jitctl import models
from jitctl.context import Environment
from jitctl.errors import Denied, JitctlError, UsageError
from jitctl.models import AccessRequest, Credentials, OnCallEvidence, OnCallResult
from jitctl.sanitize import MAX_REASON, clean, require_text
from jitctl.timeutil import format_duration, rfc3339

STS_MIN_SECONDS = 900
DEFAULT_DURATION = timedelta(hours=1)


@dataclass
class Grant:
    """Credentials handed out for a request. `credentials` is secret: renderers never print it."""

    request: AccessRequest
    credentials: Credentials
    profile: str | None
    evidence: OnCallEvidence | None
    notes: list[str] = field(default_factory=list)


@dataclass
class Submitted:
    """What `submit` did: fast-tracked (`evidence` set, status approved) or pending."""

    request: AccessRequest
    on_call: OnCallResult
    approvers: list[str]
    warnings: list[str] = field(default_factory=list)

    @property
    def fast_tracked(self) -> bool:
        return self.request.status == models.APPROVED


def new_request_id() -> str:
    """Short enough to read out over a call at 4am, random enough never to collide in practice."""
    return "r-" + base64.b32encode(secrets.token_bytes(5)).decode().lower()


def check_reason(reason: str | None) -> str:
    if reason is None or not reason.strip():
        raise UsageError("a reason is required", 'pass --reason "INC-123 what you are doing"')
    if len(reason) > MAX_REASON:
        raise UsageError(
            f"the reason is {len(reason)} characters long; the limit is {MAX_REASON}", "shorten it"
        )
    return clean(require_text(reason, "the reason")).strip()


def check_duration(requested: timedelta | None, max_duration: timedelta, role: str) -> timedelta:
    """A duration over the role's max is refused, not silently cut."""
    if requested is None:
        return min(DEFAULT_DURATION, max_duration)
    if requested > max_duration:
        raise UsageError(
            f"--duration {format_duration(requested)} is longer than role {role!r} allows",
            f"ask for at most {format_duration(max_duration)}",
        )
    return requested


def session_seconds(
    duration: timedelta, shift_end: datetime | None, now: datetime
) -> tuple[int, str | None]:
    """DurationSeconds: the requested duration, cut to the on-call shift, never under STS's 900 s."""
    seconds = int(duration.total_seconds())
    note = None
    if shift_end is not None:
        left = int((shift_end - now).total_seconds())
        if left < seconds:
            seconds = left
            note = f"credentials end with your on-call shift, in {format_duration(timedelta(seconds=max(left, 0)))}"
    if seconds < STS_MIN_SECONDS:
        note = (
            f"your on-call shift ends in {format_duration(timedelta(seconds=max(seconds, 0)))}, "
            "but STS sessions last at least 15m"
        )
        seconds = STS_MIN_SECONDS
    return seconds, note


def check_fast_track(env: Environment, role, person: str) -> OnCallResult:
    """Ask PagerDuty whether the caller is on call where the role's policy says it matters."""
    if role.on_call is None:
        return OnCallResult(on_call=False, reason=f"role {role.name!r} has no on-call fast track")
    from jitctl import oncall

    token, _source = env.pagerduty_token()
    with oncall.make_client(env.config.pagerduty, token) as client:
        return oncall.check_on_call(client, person, role.on_call, env.clock.now())


def audit_fields(env: Environment, req: AccessRequest) -> dict[str, str | None]:
    caller = env.caller
    return {
        "request_id": req.request_id,
        "actor": caller.arn,
        "person": caller.person,
        "role": req.role,
    }


def notify(
    env: Environment, event: str, req: AccessRequest, approvers: list[str] | None = None
) -> str | None:
    """Post to the webhook; a failure is audited and returned as a warning, never raised."""
    from jitctl import notify as notifier

    settings = env.config.notify
    if not settings.webhook_url:
        return None
    problem = notifier.post(settings, notifier.message(event, req, approvers=approvers))
    if problem:
        env.audit.append("notify_failed", **audit_fields(env, req), about=event, error=problem)
        return f"could not notify approvers ({problem}); send them the approve command yourself"
    return None


def submit(
    env: Environment, *, role_name: str, reason: str | None, duration: timedelta | None
) -> Submitted:
    """Record a request: approved at once when on call (fast path), else pending for a peer."""
    reason = check_reason(reason)
    role = env.policy.role(role_name)
    wanted = check_duration(duration, role.max_duration, role.name)
    caller = env.caller
    now = env.clock.now()
    req = AccessRequest(
        request_id=new_request_id(),
        role=role.name,
        requester=caller.person,
        requester_arn=caller.arn,
        reason=reason,
        duration_seconds=int(wanted.total_seconds()),
        status=models.PENDING,
        created_at=now,
        expires_at=now + (role.approval.request_ttl if role.approval else timedelta(minutes=30)),
        min_approvals=role.approval.min_approvals if role.approval else 1,
    )
    common = audit_fields(env, req)
    env.audit.append("requested", **common, reason=reason, duration_seconds=req.duration_seconds)
    result = check_fast_track(env, role, caller.person)
    req.fast_path_reason = result.reason
    approvers = env.policy.approvers_display(role) if role.approval else []
    if result.on_call and result.evidence is not None:
        env.audit.append(
            "auto_approved", **common, approval=models.ON_CALL, evidence=result.evidence.as_dict()
        )
        req.status, req.approval, req.decided_at = models.APPROVED, models.ON_CALL, now
        env.store.create(req)
        return Submitted(req, result, approvers)
    if role.approval is None:
        env.audit.append("denied", **common, why=result.reason)
        raise Denied(
            f"role {role.name!r} is on-call only and the fast path did not apply: {result.reason}",
            "ask whoever is on call, or have the policy add an [approval] table",
        )
    env.store.create(req)
    env.audit.append("pending", **common, why=result.reason)
    warning = notify(env, "requested", req, approvers)
    return Submitted(req, result, approvers, [warning] if warning else [])


def issue(env: Environment, req: AccessRequest, *, evidence: OnCallEvidence | None) -> Grant:
    """Assume the role for an approved request, record it, and return the credentials.

    Nothing is written to the caller's disk here: that is ``jitctl.delivery``'s job, on the
    caller's machine (in broker mode the broker runs this and the client delivers)."""
    from jitctl import aws

    role = env.policy.role(req.role)
    caller = env.caller
    if caller.person != req.requester:
        raise Denied(f"request {req.request_id} belongs to {req.requester}; only they can use it")
    now = env.clock.now()
    seconds, note = session_seconds(
        timedelta(seconds=req.duration_seconds), evidence.end if evidence else None, now
    )
    tags = {
        "jitctl:request-id": req.request_id,
        "jitctl:approval": req.approval or "",
        "jitctl:on-call": evidence.tag_value() if evidence else "",
        "jitctl:approvers": " ".join(req.approvers),
    }
    common = audit_fields(env, req)
    try:
        creds = aws.assume_role(
            env.aws,
            role_arn=role.arn,
            person=caller.person,
            duration_seconds=seconds,
            tags=tags,
            session_policy=role.session_policy,
        )
    except Exception as exc:
        env.audit.append("issue_failed", **common, error=str(exc))
        raise
    # The record comes first: if the audit trail (local or central) cannot take it, the
    # credentials are dropped and the request stays approved, so `jitctl wait` can retry.
    env.audit.append(
        "issued",
        **common,
        approval=req.approval,
        approvers=req.approvers,
        access_key_id=creds.access_key_id,
        expires_at=rfc3339(creds.expiration),
        duration_seconds=seconds,
    )
    # Then the store claims the grant atomically: of two waiters, one wins; the other's
    # credentials never leave this function, and the log says why.
    try:
        issued = env.store.mark_issued(
            req.request_id, now=now, credentials_expire_at=creds.expiration
        )
    except JitctlError as exc:
        env.audit.append(
            "issue_failed", **common, access_key_id=creds.access_key_id, error=str(exc)
        )
        raise
    issued.fast_path_reason = req.fast_path_reason
    return Grant(
        request=issued,
        credentials=creds,
        profile=None,
        evidence=evidence,
        notes=[note] if note else [],
    )
