"""The request flow: check the policy and PagerDuty, record, assume the role, hand out credentials.

Every step leaves an audit record; nothing is issued unless its record was written first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from jitctl import models
from jitctl.audit.fields import audit_fields
from jitctl.errors import Denied, JitctlError, TimedOut
from jitctl.lifecycle import break_glass as glass
from jitctl.lifecycle import chaining, extend, interrupts, reissue
from jitctl.lifecycle.background import in_background
from jitctl.lifecycle.notify import notify
from jitctl.lifecycle.request_rules import (
    check_duration,
    check_reason,
    new_request_id,
    request_ttl,
    session_seconds,
)
from jitctl.models import AccessRequest, Credentials, Issued, OnCallEvidence, OnCallResult
from jitctl.oncall import incident_track, paging
from jitctl.oncall.approvers import approvers_now, is_approver
from jitctl.policy.schema import CLI
from jitctl.slack.announce import sync as slack_sync
from jitctl.store.base import TransitionError, redeliverable
from jitctl.store.claims import INTERRUPTED
from jitctl.timeutil import format_duration, rfc3339
from jitctl.trusted_time import SKEW_LIMIT

if TYPE_CHECKING:
    from jitctl.audit.fields import Who
    from jitctl.context import Environment
    from jitctl.policy.roles import Role



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


def check_fast_track(env: Environment, role: Role, person: str) -> OnCallResult:
    """Ask PagerDuty whether the caller is on call where the role's policy says it matters."""
    if role.on_call is None:
        return OnCallResult(on_call=False, reason=f"role {role.name!r} has no on-call fast track")
    from jitctl.oncall import session as oncall

    return oncall.check_on_call(env.pagerduty, person, role.on_call, env.clock.now())


def submit(
    env: Environment,
    *,
    role_name: str,
    reason: str | None,
    duration: timedelta | None,
    break_glass: bool = False,
    incident: str | None = None,
    extends: str | None = None,
) -> Submitted:
    """Record a request: approved at once when on call or working one of the role's
    incidents (fast path) or break-glass, else pending for a peer. ``incident``: `request
    --incident ID`; ``extends``: the grant an extension asks more time for (`jitctl extend`)."""
    role = env.policy.role(role_name)
    incident = incident_track.check_id(incident)
    if role.on_call is not None or role.incident is not None or incident is not None:
        env.prepare_pagerduty()  # its client is built while AWS names the caller
    req = _new_request(env, role, check_reason(reason), duration, extends)
    caller, now = env.caller, req.created_at
    common = audit_fields(env, req)
    # PagerDuty answers while the request is recorded; nothing is decided before both are
    # done. Only the on-call lookup overlaps: an incident or break-glass path asks in turn.
    plain = not break_glass and incident is None and role.incident is None
    lookup = in_background(lambda: check_fast_track(env, role, caller.person)) if plain else None
    env.audit.append(
        "requested",
        **common,
        reason=req.reason,
        duration_seconds=req.duration_seconds,
        **({"extends": extends} if extends else {}),
        **({"incident": incident} if incident else {}),
        **({"break_glass": True} if break_glass else {}),
    )
    if break_glass:
        return _break_glass(env, role, req, common)
    track = _track_incident(env, role, req, incident, common)
    if track.fast:
        return _fast_incident(env, req, track, common)
    result = lookup() if lookup is not None else check_fast_track(env, role, caller.person)
    if role.incident is not None or incident is not None:  # both reasons count for the user
        result = OnCallResult(result.on_call, f"{result.reason}; {track.reason}", result.evidence)
    req.fast_path_reason = result.reason
    approvers = approvers_now(env, role)
    if result.on_call and result.evidence is not None:
        env.audit.append(
            "auto_approved", **common, approval=models.ON_CALL, evidence=result.evidence.as_dict()
        )
        req.status, req.approval, req.decided_at = models.APPROVED, models.ON_CALL, now
        env.store.create(req)
        return Submitted(req, result, approvers)
    if role.approval is None:
        raise _on_call_only(env, role, common, result.reason)
    interrupts.record(env, req)  # a Ctrl-C acts once this run knows what it must cancel
    env.audit.append("pending", **common, why=result.reason, **incident_track.fields(req))
    warnings = [notify(env, "requested", req, approvers), paging.on_pending(env, req)]
    warnings.append(slack_sync(env, req))
    return Submitted(req, result, approvers, [w for w in warnings if w])


def _on_call_only(env: Environment, role: Role, common: Who, why: str) -> Denied:
    """A role with no [approval] table whose fast path did not apply: denied, and recorded."""
    env.audit.append("denied", **common, why=why)
    return Denied(
        f"role {role.name!r} is on-call only and the fast path did not apply: {why}",
        "ask whoever is on call, or have the policy add an [approval] table",
    )


def _new_request(
    env: Environment,
    role: Role,
    reason: str,
    duration: timedelta | None,
    extends: str | None = None,
) -> AccessRequest:
    wanted = check_duration(duration, role.max_duration, role.name)
    if role.identity_center:  # refused now, not after an approver has spent their time
        from jitctl.identity_center import grant as assignments

        assignments.check_requester(env, env.caller.person)
    now = env.clock.now()
    held = {"kind": role.kind, "account": role.account, "permission_set": role.permission_set}
    return AccessRequest(
        request_id=new_request_id(),
        role=role.name,
        requester=env.caller.person,
        requester_arn=env.caller.arn,
        reason=reason,
        duration_seconds=int(wanted.total_seconds()),
        status=models.PENDING,
        created_at=now,
        expires_at=now + request_ttl(role),
        min_approvals=role.approval.min_approvals if role.approval else 1,
        assignment=held if role.identity_center else None,
        extends=extends,
    )


def _track_incident(
    env: Environment, role: Role, req: AccessRequest, incident: str | None, common: Who
) -> incident_track.IncidentTrack:
    """The incident side: tie the request to the incident found or named; a named incident
    the requester is not on is refused (audited)."""
    try:
        track = incident_track.check_submit(env, role, incident)
    except Denied as exc:
        env.audit.append("denied", **common, why=exc.message)
        raise
    if track.evidence is not None:
        incident_track.keep(req, role, track.evidence)
    return track


def _fast_incident(
    env: Environment, req: AccessRequest, track: incident_track.IncidentTrack, common: Who
) -> Submitted:
    """Working one of the role's open incidents: approved at once (approval ``incident``)."""
    req.fast_path_reason = track.reason
    req.status, req.approval, req.decided_at = models.APPROVED, models.INCIDENT, req.created_at
    env.audit.append("auto_approved", **common, approval=models.INCIDENT, incident=req.incident)
    env.store.create(req)
    return Submitted(req, OnCallResult(on_call=False, reason=track.reason), [])


def _break_glass(env: Environment, role: Role, req: AccessRequest, common: Who) -> Submitted:
    """Recorded approved at once (duration capped), announced to every approver before
    anything is issued. A role without [break_glass] refuses it (exit 3), on the record."""
    try:
        wanted, note = glass.capped(role, timedelta(seconds=req.duration_seconds))
    except Denied as exc:
        env.audit.append("denied", **common, why=exc.message)
        raise
    req.duration_seconds = int(wanted.total_seconds())
    req.status, req.approval = models.APPROVED, models.BREAK_GLASS
    req.decided_at, req.decided_by = req.created_at, req.requester
    req.fast_path_reason = "break-glass: issued without approval; an approver must review it"
    env.audit.append(
        "auto_approved",
        **common,
        approval=models.BREAK_GLASS,
        duration_seconds=req.duration_seconds,
    )
    env.store.create(req)
    warnings = glass.announce_break_glass(env, req)
    approvers = approvers_now(env, env.policy.role(req.role))
    result = OnCallResult(on_call=False, reason=req.fast_path_reason)
    return Submitted(req, result, approvers, [*([note] if note else []), *warnings])


def refuse(
    env: Environment, req: AccessRequest, why: str, *, hint: str | None = None, lapsed: bool = False
) -> JitctlError:
    """Audit why a request is not issued; return the error (exit 3, or 4 for a lapsed approval)."""
    env.audit.append("issue_refused", **audit_fields(env, req), why=why)
    error = TimedOut if lapsed else Denied
    return error(f"request {req.request_id} cannot be issued: {why}", hint)


def peer_problem(env: Environment, role: Role, req: AccessRequest) -> str | None:
    """Why the stored peer approvals do not satisfy the policy as it is NOW, or None.

    The stored list is only what the store says (anyone with the store's keys can write it);
    the approvers' own `approved` audit records are the evidence. Approvers are matched by
    person: their ARN is not known here."""
    if role.approval is None:
        return f"role {role.name!r} takes no peer approvals"
    people = [p.strip().lower() for p in req.approvers]
    if len(set(people)) != len(people):
        return "the same approver is counted more than once"
    if req.requester.strip().lower() in people:
        return f"the requester ({req.requester}) is listed as an approver"
    for person in people:
        if not is_approver(env, role, person, ""):
            return f"{person} may not approve role {role.name!r} under the current policy"
        if (came_from := approved_from(req, person)) not in role.approval.approve_from:
            return (
                f"{person} approved from {came_from}, and role {role.name!r} no longer takes "
                f"decisions from there"
            )
    if len(people) < role.approval.min_approvals:
        return f"{len(people)} approval(s); role {role.name!r} needs {role.approval.min_approvals}"
    return None


def approved_from(req: AccessRequest, person: str) -> str:
    """Where ``person``'s approval of ``req`` came from; the CLI for a request approved before
    jitctl kept it (Slack decisions always kept it)."""
    kept = {k.strip().lower(): v for k, v in req.approved_from.items()}
    return kept.get(person, CLI)


def fresh_on_call(
    env: Environment, role: Role, req: AccessRequest, evidence: OnCallEvidence | None, now: datetime
) -> OnCallEvidence:
    """An `on_call` record proves nothing by itself: use the evidence this process got from
    PagerDuty (the fast path, moments ago) or ask PagerDuty again; refuse if not on call now."""
    if role.on_call is None:
        raise refuse(env, req, f"role {role.name!r} has no on-call fast track")
    if evidence is None:
        result = check_fast_track(env, role, env.caller.person)
        if not (result.on_call and result.evidence is not None):
            raise refuse(
                env,
                req,
                f"approved as on call, but PagerDuty does not show you on call now: {result.reason}",
                hint="request again; a peer can approve it",
            )
        evidence = result.evidence
    if evidence.end is not None and evidence.end <= now:
        raise refuse(env, req, "your on-call shift has ended", hint="request again")
    return evidence


def check_redeemable(
    env: Environment, role: Role, req: AccessRequest, evidence: OnCallEvidence | None, now: datetime
) -> OnCallEvidence | None:
    """Re-check a stored decision before issuing: the kind of approval against the policy as
    it is now, and that the approval has not lapsed (request_ttl after `decided_at`)."""
    if req.status != models.APPROVED and not redeliverable(req):
        raise TransitionError(f"request {req.request_id} is {req.status}, not approved")
    if req.decided_at is None or req.decided_at > now + SKEW_LIMIT:
        raise refuse(env, req, "the stored decision has no believable time")
    if now > req.decided_at + request_ttl(role):
        raise refuse(
            env,
            req,
            f"the approval lapsed at {rfc3339(req.decided_at + request_ttl(role))} "
            f"({format_duration(request_ttl(role))} after the decision)",
            hint="request again",
            lapsed=True,
        )
    if req.approval == models.ON_CALL:
        return fresh_on_call(env, role, req, evidence, now)
    if req.approval == models.PEER:
        if (problem := peer_problem(env, role, req)) is not None:
            raise refuse(env, req, problem, hint="request again; ask the role's approvers")
        return None
    if req.approval == models.BREAK_GLASS:
        if (problem := glass.problem(role, req)) is not None:
            raise refuse(env, req, problem, hint="request again")
        return None
    if req.approval == models.INCIDENT:
        if (problem := incident_track.recheck(env, role, req)) is not None:
            raise refuse(env, req, problem, hint="request again; a peer can approve it")
        return None
    raise refuse(env, req, f"unknown kind of approval {req.approval!r}")


def issue(env: Environment, req: AccessRequest, *, evidence: OnCallEvidence | None) -> Issued:
    """Re-check the decision, assume the role, record it, and return the credentials.

    The broker runs this same step, so every check on the decision lives here. Nothing is
    written to the caller's disk here: that is ``jitctl.credentials.delivery``'s job, on the caller's
    machine (in broker mode the broker runs this and the client delivers)."""
    role = env.policy.role(req.role)
    if env.caller.person != req.requester:
        raise Denied(f"request {req.request_id} belongs to {req.requester}; only they can use it")
    now = env.clock.now()
    evidence = check_redeemable(env, role, req, evidence, now)
    if role.identity_center:  # the account assignment instead of AssumeRole; no credentials
        from jitctl.identity_center.grant import issued_assignment

        return issued_assignment(env, role, req, evidence, now)
    seconds, note = _session(env, role, req, evidence, now)
    seconds, chained = chaining.cap(seconds, env.identity()[0])  # who assumes: broker or you
    common = audit_fields(env, req)
    if chained:
        common["capped"] = chained
    claimed = reissue.claim(env, role, req, now, seconds, common)  # before AssumeRole
    try:
        creds, issued = _issue_claimed(env, role, req, evidence, claimed, now, common)
    except BaseException:  # Ctrl-C, a failed audit trail: recorded now, so `jitctl wait` need
        reissue.failed(env, claimed, INTERRUPTED)  # not wait out the lease (no-op if recorded)
        raise
    issued.fast_path_reason = req.fast_path_reason
    if issued.extends:  # the grant's new end, recorded before the credentials leave
        extend.applied(env, issued, creds, common)
    notes = [note, chained, incident_track.note(env, issued, incident_track.issued_text(issued))]
    notes.append(slack_sync(env, issued))  # its message says so, by whatever path
    return Issued(
        request=issued,
        credentials=creds,
        evidence=evidence,
        notes=[n for n in notes if n],
        region=role.region,
    )


def _session(
    env: Environment, role: Role, req: AccessRequest, evidence: OnCallEvidence | None, now: datetime
) -> tuple[int, str | None]:
    """DurationSeconds and a note: the duration asked, cut to the shift; an extension's ends
    its grant's extension later (jitctl.lifecycle.extend)."""
    if req.extends:
        try:
            return extend.session_seconds(env, role, req, evidence, now)
        except Denied as exc:
            raise refuse(env, req, exc.message, hint=exc.hint) from None
    shift_end = evidence.end if evidence else None
    return session_seconds(timedelta(seconds=req.duration_seconds), shift_end, now)


def _issue_claimed(
    env: Environment,
    role: Role,
    req: AccessRequest,
    evidence: OnCallEvidence | None,
    claimed: reissue.Claimed,
    now: datetime,
    common: Who,
) -> tuple[Credentials, AccessRequest]:
    """AssumeRole under the claim, the `issued` record, then the store's mark."""
    creds = reissue.assume(env, role, req, evidence, claimed, common)
    # The record comes first: if the audit trail (local or central) cannot take it, the
    # credentials are dropped and the failure recorded: `jitctl wait` may issue again
    # (once), cutting these off first.
    env.audit.append(
        "issued",
        **common,
        approval=req.approval,
        approvers=req.approvers,  # as stored, checked against the policy just now
        access_key_id=creds.access_key_id,
        expires_at=rfc3339(creds.expires),
        duration_seconds=claimed.seconds,
        retry=claimed.attempt > 1,
        attempt=claimed.attempt,
        issue_tag=claimed.tag,
        after=claimed.after,
        **incident_track.fields(req),
    )
    return creds, reissue.record(env, req, creds, now, common, claimed.attempt)
