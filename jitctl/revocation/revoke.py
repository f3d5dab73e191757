"""Revoking an issued grant so that it really stops working, not just in our records.

STS credentials cannot be recalled once handed out. What AWS offers instead is a deny on the
role for sessions issued before a point in time: an inline policy ``jitctl-revocations`` on
the target role with one statement per revoked person (the latest cutoff wins),

    Deny * on * if aws:SourceIdentity == <the requester> and aws:TokenIssueTime < <cutoff>

The cutoff is now, but never earlier than a margin past the grant's ``issued_at``
(``cutoff_for``): a revoker with a slow clock must still deny the grant it revokes. After
writing, the policy is read back and must deny that grant, or the command fails (exit 5).

SourceIdentity is set by jitctl at AssumeRole (``aws.sts_name(person)``) and survives role
chaining, so the session and anything it assumed *through this role* stop working. The deny
is per person, not per request: every session of that person on that role issued before the
cutoff is cut off, and their next grant (issued after it) works.

Order, so a failure can always be retried: the AWS deny first (a failure leaves the request
``issued`` and ``jitctl revoke`` can simply be run again), then the store transition, then
the audit record, then best-effort cleanup of local copies (profile, credential cache).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jitctl import models
from jitctl.errors import AwsUnavailable, Denied, JitctlError
from jitctl.models import AccessRequest, is_identity_center
from jitctl.oncall import incident_track
from jitctl.oncall.approvers import approvers_now, is_approver
from jitctl.revocation.iam import PERMISSION_HINT as PERMISSION_HINT  # still public here
from jitctl.revocation.iam import ROUNDS as ROUNDS
from jitctl.revocation.iam import SETTLE_SECONDS, ensure_denied, lock_path_for, read_policy
from jitctl.revocation.policy import (
    MAX_SESSION,
    POLICY_NAME,
    cutoff_for,
    deny_statement,
    iam_role_name,
    latest_cutoff,
    statement_id,
)
from jitctl.store.base import TransitionError
from jitctl.timeutil import rfc3339

if TYPE_CHECKING:
    from jitctl.context import Environment


class RevocationNotInForce(AwsUnavailable):
    """The policy read back after writing does not deny the grant (exit 5): never "revoked"."""


@dataclass
class Revocation:
    """What `revoke` did. ``statement_written`` is False when no live session could remain."""

    request: AccessRequest
    role_arn: str
    iam_role: str
    statement_id: str
    source_identity: str
    cutoff: datetime
    already_revoked: bool
    issued_at: datetime | None = None
    confirmed: bool = False  # a read-back showed the grant denied
    statement_written: bool = True
    pruned: int = 0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        """The `revocation` part of `jitctl revoke --json`."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        del out["request"]
        issued_at = rfc3339(self.issued_at) if self.issued_at else None
        return out | {
            "policy_name": POLICY_NAME,
            "cutoff": rfc3339(self.cutoff),
            "issued_at": issued_at,
        }


def confirm_denied(iam: Any, result: Revocation) -> None:
    """Read the policy back: it must deny the requester's sessions issued at the grant's
    ``issued_at`` (and up to our cutoff). RevocationNotInForce otherwise."""
    document = read_policy(iam, result.iam_role, result.role_arn)
    latest = latest_cutoff(document, result.source_identity)
    issued_at = result.issued_at
    if latest is not None and latest >= result.cutoff and (issued_at is None or latest > issued_at):
        result.confirmed = True
        return
    denies = (
        f"only their sessions issued before {rfc3339(latest)}"
        if latest
        else "none of their sessions"
    )
    issued = (
        f"was issued at {rfc3339(issued_at)}"
        if issued_at
        else "needs a cutoff of " + rfc3339(result.cutoff)
    )
    raise RevocationNotInForce(
        f"{result.request.request_id} is NOT revoked: read back, {POLICY_NAME} on "
        f"{result.role_arn} denies {result.source_identity} {denies}, and the grant {issued}",
        "the request is still marked issued; run the same `jitctl revoke` again, and check "
        f"what else edits {POLICY_NAME}",
    )


# --------------------------------------------------------------------- the command's core


def check_may_revoke(env: Environment, req: AccessRequest) -> None:
    """The requester, or one of the role's approvers (persons compared, never ARNs)."""
    caller = env.caller
    if caller.person == req.requester:
        return
    role = env.policy.role(req.role)
    if is_approver(env, role, caller.person, caller.arn):
        return
    approvers = approvers_now(env, role)
    raise Denied(
        f"you ({caller.person}) may not revoke {req.request_id}: only {req.requester} or an "
        f"approver of role {req.role!r} may",
        "approvers: " + (", ".join(approvers) or "none (on-call only)"),
    )


def revoke(
    env: Environment,
    request_id: str,
    *,
    reason: str | None,
    settle: float = SETTLE_SECONDS,
    lock_dir: Path | None = None,
    actor: str | None = None,
) -> Revocation:
    """Revoke an issued grant: AWS deny, then store, then audit, then local cleanup.

    ``actor``: a system revoking on the policy's own authority (``"pagerduty"``: the sweep,
    for ``end_with_incident``); no person check, and the records name it as the revoker."""
    from jitctl.lifecycle.decisions import get_request
    from jitctl.lifecycle.request_rules import REVOKE_REASON, check_reason

    reason = check_reason(reason, REVOKE_REASON)
    req = get_request(env, request_id)
    if actor is None:
        check_may_revoke(env, req)
    _check_revocable(req)
    now = env.clock.now()
    if is_identity_center(req):
        result = _unassign(env, req, now)
    else:
        result = _deny(env, req, now, settle, lock_dir)
    _record(env, result, reason=reason, now=now, actor=actor)
    if not result.already_revoked:
        _notify_revoked(env, result)
        text = incident_track.revoked_text(result.request)
        result.notes += [w for w in [incident_track.note(env, result.request, text)] if w]
    return result


def _deny(
    env: Environment, req: AccessRequest, now: datetime, settle: float, lock_dir: Path | None
) -> Revocation:
    """assume_role: the deny on the role, written and read back."""
    role = env.policy.role(req.role)
    result = _plan(req, role.arn, now)
    statement = deny_statement(result.statement_id, result.source_identity, result.cutoff)
    if result.cutoff + MAX_SESSION <= now:
        result.statement_written = False
        result.notes.append("every session issued before the cutoff has expired: nothing to deny")
    else:
        _deny_in_aws(env, result, statement, now=now, settle=settle, lock_dir=lock_dir)
    return result


def _unassign(env: Environment, req: AccessRequest, now: datetime) -> Revocation:
    """identity_center: the assignment deleted now (waiting for SUCCEEDED), or kept while
    another live grant holds it. AWS lets nothing cut a session already signed in: the
    permission set's role is protected from edits (no deny can be written on it), so say so."""
    from jitctl.audit.fields import audit_fields
    from jitctl.identity_center import grant

    if req.status == models.ISSUED:
        req = grant.release(env, req, now, audit_fields(env, req))
    result = _plan(req, "", now)
    result.iam_role = result.statement_id = ""
    result.statement_written = False
    result.notes.append(f"assignment {(req.assignment or {}).get('state')}: {grant.NOT_CUT}")
    return result


def _check_revocable(req: AccessRequest) -> None:
    """Only an issued grant has anything to revoke; revoking again re-asserts the deny."""
    if req.status not in (models.ISSUED, models.REVOKED):
        raise TransitionError(
            f"request {req.request_id} is {req.status}, not issued: there is no grant to revoke",
            "deny a pending request instead" if req.status == models.PENDING else None,
        )


def _plan(req: AccessRequest, role_arn: str, now: datetime) -> Revocation:
    """What to deny: this requester's sessions on the role issued before the cutoff."""
    from jitctl.aws import sts_name

    already = req.status == models.REVOKED
    # Revoking again re-asserts the original cutoff: a later one would also cut the person's
    # newer, legitimate grants (their sessions issued in between).
    cutoff = cutoff_for(req.issued_at, req.revoked_at if already and req.revoked_at else now)
    return Revocation(
        request=req,
        role_arn=role_arn,
        iam_role=iam_role_name(role_arn) if role_arn else "",
        statement_id=statement_id(req.request_id),
        source_identity=sts_name(req.requester),
        cutoff=cutoff,
        already_revoked=already,
        issued_at=req.issued_at,
    )


def _record(
    env: Environment, result: Revocation, *, reason: str, now: datetime, actor: str | None
) -> None:
    """The store transition (unless already revoked), then the audit record."""
    from jitctl.audit.fields import audit_fields

    requester = result.request.requester
    by = actor or env.caller.person
    if not result.already_revoked:
        updated = env.store.mark_revoked(result.request.request_id, by, now=now, reason=reason)
        # A concurrent revoker may have won the transition: theirs is the recorded one.
        result.already_revoked = updated.revoked_at != now or updated.revoked_by != by
        result.request = updated
    fields, by_system = audit_fields(env, result.request), {}
    if actor is not None:  # the system decided; whoever ran it is named beside it
        fields["actor"] = actor
        by_system = {"run_by": env.caller.arn, "incident": result.request.incident}
    env.audit.append(
        "revoked",
        **fields,
        **by_system,
        requester=requester,
        reason=reason,
        cutoff=rfc3339(result.cutoff),
        role_arn=result.role_arn,
        policy_name=POLICY_NAME,
        statement_id=result.statement_id,
        source_identity=result.source_identity,
        already_revoked=result.already_revoked,
        pruned=result.pruned,
    )


def _notify_revoked(env: Environment, result: Revocation) -> None:
    """The webhook's "by" and "reason" are the revoker's, not the original decider's."""
    from jitctl.lifecycle.notify import notify

    revoked = result.request
    told = dataclasses.replace(
        revoked, decided_by=revoked.revoked_by, decision_reason=revoked.revoked_reason
    )
    from jitctl.slack.announce import sync as slack_sync

    result.notes += [w for w in [notify(env, "revoked", told), slack_sync(env, revoked)] if w]


def _deny_in_aws(
    env: Environment,
    result: Revocation,
    statement: dict[str, Any],
    *,
    now: datetime,
    settle: float,
    lock_dir: Path | None,
) -> None:
    """Write the deny and confirm it from a read-back; a failure to confirm is audited."""
    from jitctl.audit.fields import audit_fields

    iam = env.aws.client("iam")
    result.statement_written, result.pruned = ensure_denied(
        iam,
        role_name=result.iam_role,
        role_arn=result.role_arn,
        statement=statement,
        now=now,
        lock_path=lock_path_for(result.role_arn, lock_dir),
        settle=settle,
    )
    try:
        confirm_denied(iam, result)
    except RevocationNotInForce as exc:
        env.audit.append(
            "revoke_failed",
            **audit_fields(env, result.request),
            error=exc.message,
            cutoff=rfc3339(result.cutoff),
            role_arn=result.role_arn,
            source_identity=result.source_identity,
        )
        raise


@dataclass
class LocalCleanup:
    """What revoking removed from the revoker's own machine (the broker never has copies)."""

    profiles_removed: list[str] = field(default_factory=list)
    cache_removed: bool = False
    notes: list[str] = field(default_factory=list)


def remove_local_copies(env: Environment, req: AccessRequest) -> LocalCleanup:
    """Best effort: the revocation is done whatever happens here; problems become notes."""
    from jitctl.credentials import profiles

    done = LocalCleanup()
    path = profiles.shared_credentials_path(env.environ)
    ours = {req.request_id, req.extends or req.request_id}  # an extension's copies: its grant's
    try:
        for profile in profiles.profiles_for_request(path, req.extends or req.request_id):
            if profiles.remove_profile(path, profile):
                done.profiles_removed.append(profile)
    except (OSError, ValueError, JitctlError) as exc:  # e.g. a linked lock file: refused
        done.notes.append(f"could not clean {path}: {exc}")
    try:
        cache = env.credential_cache
        grant = cache.lookup(req.role).grant
        # Keyed by role: only drop it if it is this grant, not a newer one.
        if grant is not None and grant.request_id in ours:
            done.cache_removed = cache.remove(req.role)
    except Exception as exc:  # never fail a done revocation over a local cache
        done.notes.append(f"could not clean the credential cache ({type(exc).__name__})")
    return done
