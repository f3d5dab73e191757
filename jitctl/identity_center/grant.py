"""Issuing and ending identity_center grants: one account assignment, shared by overlapping
grants of the same person, permission set and account, and never deleted if it was there first.

Order, so that a crash anywhere leaves something ``reconcile`` can finish: the request's
``assignment`` record is written ("creating") before CreateAccountAssignment, so the store
always knows an assignment jitctl may have made; the `assigned` audit record and the store's
"present" follow AWS's SUCCEEDED. Ending deletes the assignment only when no other live grant
holds it (``kept`` otherwise) and never one recorded ``preexisting``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from jitctl import models
from jitctl.errors import JitctlError
from jitctl.identity_center import sso
from jitctl.lifecycle.reissue import claim_recorded
from jitctl.models import AccessRequest, OnCallEvidence
from jitctl.store import claims
from jitctl.timeutil import format_duration, rfc3339

if TYPE_CHECKING:
    from jitctl.audit.fields import Who
    from jitctl.context import Environment
    from jitctl.policy.roles import Role

KIND = "identity_center"
CREATING, PRESENT, PREEXISTING, KEPT, REMOVED = (
    "creating",
    "present",
    "preexisting",
    "kept",
    "removed",
)
HELD = (CREATING, PRESENT)  # jitctl made it (or may have) and has not given it up
MIN_SECONDS = 60
# aws/aws-sdk#598: what deleting an assignment does not end. Said wherever it matters.
NOT_CUT = (
    "AWS does not end a session already signed in when the assignment is deleted: it lasts "
    "the permission set's session duration"
)


def describe(role: Role) -> dict[str, Any]:
    """The record a request of an identity_center role carries from its submission."""
    return {"kind": KIND, "account": role.account, "permission_set": role.permission_set}


def check_requester(env: Environment, person: str) -> None:
    """Refuse at submission (exit 2, before any approver is asked) someone the Identity Store
    does not know: no approval could ever be issued to them."""
    from jitctl.errors import UsageError

    _, store_id = sso.instance(env)
    if sso.find_user(env, store_id, person) is None:
        raise UsageError(
            f"{person} is not in the Identity Store {store_id} (by email or user name), so "
            "no IAM Identity Center access can be assigned to them",
            "ask an Identity Center administrator to add the user, then request again",
        )


def target_for(env: Environment, role: Role, person: str) -> tuple[sso.Target, dict[str, Any]]:
    """The assignment this person's grant of ``role`` is (from the policy as it is now) and
    the permission set AWS describes."""
    instance_arn, store_id = sso.instance(env)
    principal = sso.find_user(env, store_id, person)
    if principal is None:
        check_requester(env, person)  # raises, naming the Identity Store
    described = sso.permission_set(env, instance_arn, str(role.permission_set))
    target = sso.Target(
        instance_arn, role.account, str(described["PermissionSetArn"]), str(principal)
    )
    return target, described


def grant_seconds(req: AccessRequest, evidence: OnCallEvidence | None, now: datetime) -> int:
    """The duration asked for, cut to the on-call shift; no STS floor, but at least a minute."""
    seconds = req.duration_seconds
    if evidence is not None and evidence.end is not None:
        seconds = min(seconds, int((evidence.end - now).total_seconds()))
    return max(seconds, MIN_SECONDS)


def issue(
    env: Environment,
    role: Role,
    req: AccessRequest,
    evidence: OnCallEvidence | None,
    now: datetime,
    common: Who,
) -> AccessRequest:
    """Assign under a claim (one approval, one grant) and record it; the issued request."""
    seconds = grant_seconds(req, evidence, now)
    end = now + timedelta(seconds=seconds)
    held = claim_recorded(env, req, now, end, common)
    try:
        record, took = _assign(env, role, held, now, common)
    except BaseException as exc:
        _failed(env, held, common, exc)
        raise
    env.audit.append(
        "issued",
        **common,
        approval=req.approval,
        approvers=req.approvers,
        expires_at=rfc3339(end),
        duration_seconds=seconds,
        kind=KIND,
        assignment=record["state"],
        attempt=held.issue_attempt,
    )
    env.store.mark_issued(
        req.request_id, now=now, credentials_expire_at=end, attempt=held.issue_attempt
    )
    record["seconds_to_assign"] = round(took, 3)
    return env.store.set_assignment(req.request_id, record)


def _failed(
    env: Environment, held: AccessRequest, common: Who, exc: BaseException
) -> None:
    """Recorded in the store (the claim's failure: `jitctl wait` may try again) and the audit
    trail; the assignment record stays "creating", for sweep to finish or clean."""
    try:
        env.store.mark_issue_failed(
            held.request_id, attempt=held.issue_attempt, kind=claims.ASSUME_FAILED
        )
    except JitctlError:
        pass
    error = exc.message if isinstance(exc, JitctlError) else type(exc).__name__
    env.audit.append("issue_failed", **common, kind=KIND, error=error)


def _assign(
    env: Environment, role: Role, req: AccessRequest, now: datetime, common: Who
) -> tuple[dict[str, Any], float]:
    """Look before creating: an assignment already there is someone's (``preexisting``) unless
    another of jitctl's live records holds it."""
    target, described = target_for(env, role, req.requester)
    record = (
        describe(role)
        | target.as_dict()
        | {
            "session_duration": described.get("SessionDuration"),
        }
    )
    existed = sso.exists(env, target)
    # jitctl's own if a record made it and has not let go of it (live or not yet swept):
    # another request's, or this one's own earlier attempt (failed or stuck)
    own = same_target(req, target) and not (req.assignment or {}).get("preexisting")
    own = own and (req.assignment or {}).get("state") == CREATING
    others = _same(env, req, target)
    ours = own or any((o.assignment or {}).get("state") in HELD for o in others)
    preexisting = existed and not ours
    record |= {"preexisting": preexisting, "state": CREATING}
    env.store.set_assignment(req.request_id, record)  # before AWS: a crash leaves it known
    took = 0.0
    if not existed:
        took = sso.create(env, target, _progress(env))
    record["state"] = PREEXISTING if preexisting else PRESENT
    env.audit.append(
        "assigned",
        **common,
        account=target.account,
        permission_set=role.permission_set,
        permission_set_arn=target.permission_set_arn,
        principal_id=target.principal_id,
        assignment=record["state"],
        created=not existed,
        seconds=round(took, 3),
    )
    return record, took


def _progress(env: Environment) -> sso.Progress | None:
    return env.on_progress


def same_target(req: AccessRequest, target: sso.Target) -> bool:
    rec = req.assignment or {}
    return (
        rec.get("kind") == KIND
        and rec.get("principal_id") == target.principal_id
        and rec.get("permission_set_arn") == target.permission_set_arn
        and rec.get("account") == target.account
        and rec.get("instance_arn") == target.instance_arn
    )


def _holders(env: Environment, req: AccessRequest, target: sso.Target, now: datetime) -> list[str]:
    """The person's other live grants that hold this assignment (jitctl's, or theirs from before)."""
    return [
        o.request_id
        for o in _same(env, req, target)
        if (o.assignment or {}).get("state") in (PRESENT, PREEXISTING) and live(o, now)
    ]


def _same(env: Environment, req: AccessRequest, target: sso.Target) -> list[AccessRequest]:
    """The person's other requests recorded for the same assignment."""
    others = env.store.list(requester=req.requester, limit=1000)
    return [o for o in others if o.request_id != req.request_id and same_target(o, target)]


def live(req: AccessRequest, now: datetime) -> bool:
    """An issued identity_center grant whose time has not run out (revoked ones are not ISSUED)."""
    ends = req.credentials_expire_at
    return req.status == models.ISSUED and ends is not None and ends > now


def release(
    env: Environment, req: AccessRequest, now: datetime, common: Who
) -> AccessRequest:
    """End this grant's hold on its assignment: deleted (waits for SUCCEEDED) unless another
    live grant holds it (``kept``) or it was never jitctl's (``preexisting``: left alone)."""
    record = dict(req.assignment or {})
    if record.get("state") not in HELD:
        return req
    if "principal_id" not in record:  # "creating" is written with its target: never here
        return req
    target = sso.target_from(record)
    _check_owner(env, req, target)
    holders = _holders(env, req, target, now)
    took = 0.0
    if holders:
        record["state"], record["kept_for"] = KEPT, holders
    else:
        if not record.get("preexisting") and sso.exists(env, target):
            took = sso.delete(env, target, _progress(env))
        record["state"] = PREEXISTING if record.get("preexisting") else REMOVED
    env.audit.append(
        "unassigned",
        **common,
        account=target.account,
        permission_set=record.get("permission_set"),
        permission_set_arn=target.permission_set_arn,
        principal_id=target.principal_id,
        assignment=record["state"],
        kept_for=holders,
        seconds=round(took, 3),
        note=NOT_CUT,
    )
    return env.store.set_assignment(req.request_id, record)


def _check_owner(env: Environment, req: AccessRequest, target: sso.Target) -> None:
    """The stored record names whose assignment to delete, and the store is data (in direct
    mode the requester can write it): delete only the requester's own, as the Identity Store
    says now, in the instance configured now."""
    from jitctl.errors import Denied

    instance_arn, store_id = sso.instance(env)
    if target.instance_arn != instance_arn or sso.find_user(env, store_id, req.requester) != (
        target.principal_id
    ):
        raise Denied(
            f"request {req.request_id}: its stored assignment is not {req.requester}'s in "
            f"instance {instance_arn}; jitctl will not delete it",
            "the store was changed outside jitctl: check the assignment in IAM Identity Center",
        )


def issued_note(req: AccessRequest, now: datetime) -> str:
    """How to use the grant: nothing was written to the credentials file."""
    rec = req.assignment or {}
    ends = req.credentials_expire_at or now
    left = format_duration(max(ends - now, timedelta(0)))
    return (
        f"permission set {rec.get('permission_set')} is assigned to you in account "
        f"{rec.get('account')} for {left}: sign in as usual (`aws sso login` with your profile "
        f"for that account and permission set, or the AWS access portal). No credentials were "
        f"written. When it ends, {NOT_CUT[0].lower()}{NOT_CUT[1:]}."
    )


def issued_assignment(
    env: Environment, role: Role, req: AccessRequest, evidence: OnCallEvidence | None, now: datetime
) -> models.Issued:
    """``flow.issue`` for an identity_center role: the assignment made (or found), and what the
    requester is told; no credentials."""
    from jitctl.audit.fields import audit_fields
    from jitctl.oncall import incident_track

    issued = issue(env, role, req, evidence, now, audit_fields(env, req))
    issued.fast_path_reason = req.fast_path_reason
    text = incident_track.issued_text(issued)
    notes = [issued_note(issued, now), incident_track.note(env, issued, text)]
    return models.Issued(
        request=issued, credentials=None, evidence=evidence, notes=[n for n in notes if n]
    )
