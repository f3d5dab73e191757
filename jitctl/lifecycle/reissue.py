"""Issuing under a claim: one approval, at most one live set of credentials at a time.

``flow.issue`` calls ``claim`` before AssumeRole. The store's claim (jitctl.store.claims) says
whether this is the first issue or a re-issue after a recorded failure; a re-issue is bounded
by the first issue's planned end and first cuts off every earlier issue's sessions
(jitctl.revocation.cutoff). Nothing here assumes a role: a claim that fails before AssumeRole
is released, and its failure can be tried again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from jitctl.errors import JitctlError, TimedOut
from jitctl.lifecycle.request_rules import STS_MIN_SECONDS
from jitctl.models import AccessRequest, Credentials, OnCallEvidence
from jitctl.oncall import incident_track
from jitctl.revocation.cutoff import ISSUE_TAG, cut_off_earlier, denied_tags, issue_tag
from jitctl.store import claims
from jitctl.timeutil import rfc3339

if TYPE_CHECKING:
    from jitctl.audit.fields import Who
    from jitctl.context import Environment
    from jitctl.policy.roles import Role


@dataclass(frozen=True)
class Claimed:
    """The issue this process holds: its number, its session length, what it comes after."""

    request: AccessRequest
    attempt: int
    seconds: int
    after: str | None  # the failure this re-issue comes after; None for the first issue

    @property
    def tag(self) -> str:
        """The session's ``jitctl:issue`` tag: what a later re-issue cuts off."""
        return issue_tag(self.request.request_id, self.attempt)


# AWS starts the session's clock when it handles AssumeRole, a moment after ``now`` was read
# (and its expiry is whole seconds): the re-issue asks for this much less than is left.
SLACK_SECONDS = 2
TRANSITIVE = (ISSUE_TAG,)  # kept by role chaining, so a chained session is cut off too


def claim_recorded(
    env: Environment, req: AccessRequest, now: datetime, planned_end: datetime, common: Who
) -> AccessRequest:
    """The store's claim on the next issue of ``req`` (one approval, one grant), every kind of
    grant alike; a refusal is audited as ``issue_refused`` and raised."""
    try:
        return env.store.claim_issue(req.request_id, now=now, planned_end=planned_end)
    except JitctlError as exc:
        env.audit.append("issue_refused", **common, why=exc.message)
        raise


def claim(
    env: Environment, role: Role, req: AccessRequest, now: datetime, seconds: int, common: Who
) -> Claimed:
    """Claim the next issue of ``req`` (refusals audited as ``issue_refused``); for a re-issue,
    bound its length and cut off the earlier issues first."""
    planned_end = now + timedelta(seconds=seconds)
    held = claim_recorded(env, req, now, planned_end, common)
    if held.issue_attempt == 1:
        return Claimed(held, 1, seconds, None)
    claimed = Claimed(held, held.issue_attempt, seconds, held.reissued_after[-1])
    try:
        _bounded(claimed, now)  # refused before anything is cut off
        _cut_off(env, role, claimed, common)
        claimed = _bounded(claimed, env.clock.now())  # the cut-off took time
    except BaseException:  # nothing was assumed under this claim: give its failure back
        _release(env, claimed)
        raise
    return claimed


def _release(env: Environment, claimed: Claimed) -> None:
    try:
        env.store.release_claim(claimed.request.request_id, attempt=claimed.attempt)
    except JitctlError:
        pass  # the claim stays; after its lease it counts as interrupted: still safe


def _bounded(claimed: Claimed, now: datetime) -> Claimed:
    """A re-issue never ends later than the first issue would have (its planned end, kept
    by the store); STS will not issue under 15 minutes, so with less left there is none."""
    end = claimed.request.planned_end
    assert end is not None  # the first claim stored it
    left = int((end - now).total_seconds()) - SLACK_SECONDS
    if left < STS_MIN_SECONDS:
        raise TimedOut(
            f"request {claimed.request.request_id} cannot be issued again: its grant was "
            f"planned to end at {rfc3339(end)}, under 15 minutes from now",
            "request again",
        )
    return Claimed(claimed.request, claimed.attempt, min(claimed.seconds, left), claimed.after)


def _cut_off(env: Environment, role: Role, claimed: Claimed, common: Who) -> None:
    """Deny every earlier issue's sessions in AWS, confirmed, before a new one exists."""
    req = claimed.request
    assert req.planned_end is not None
    try:
        done = cut_off_earlier(env, role.arn, req.request_id, claimed.attempt, req.planned_end)
    except JitctlError as exc:
        env.audit.append("issue_failed", **common, error=f"cannot cut off earlier sets: {exc}")
        raise
    env.audit.append(
        "cut_off",
        **common,
        after=claimed.after,
        issues=sorted(denied_tags(done)),
        statement_id=done["Sid"],
        role_arn=role.arn,
    )


def failed(env: Environment, claimed: Claimed, kind: str) -> None:
    """Record that the issue under ``claimed`` failed after its claim (best effort: the error
    that follows is the one to report; an unrecorded failure ends as an interrupted claim
    once its lease is over)."""
    try:
        env.store.mark_issue_failed(claimed.request.request_id, attempt=claimed.attempt, kind=kind)
    except JitctlError:
        pass


def session_tags(
    req: AccessRequest, evidence: OnCallEvidence | None, claimed: Claimed
) -> dict[str, str]:
    """Session tags, so CloudTrail ties every call of the session to its request and approval
    (and a re-issue can cut off exactly this issue's sessions: ``jitctl:issue``)."""
    from jitctl.aws import approvers_tag

    return {
        "jitctl:request-id": req.request_id,
        ISSUE_TAG: claimed.tag,
        "jitctl:approval": req.approval or "",
        "jitctl:on-call": evidence.tag_value() if evidence else "",
        "jitctl:approvers": approvers_tag(req.approvers),
        "jitctl:incident": incident_track.tag(req),
        "jitctl:extends": req.extends or "",  # an extension's session: the grant it extends
    }


def assume(
    env: Environment,
    role: Role,
    req: AccessRequest,
    evidence: OnCallEvidence | None,
    claimed: Claimed,
    common: Who,
) -> Credentials:
    """Assume the role for the caller; a failure is recorded (store and audit) before it
    propagates."""
    from jitctl import aws

    try:
        return aws.assume_role(
            env.aws,
            role_arn=role.arn,
            person=env.caller.person,
            duration_seconds=claimed.seconds,
            tags=session_tags(req, evidence, claimed),
            session_policy=role.session_policy,
            transitive=TRANSITIVE,
        )
    except Exception as exc:
        failed(env, claimed, claims.ASSUME_FAILED)
        env.audit.append("issue_failed", **common, error=str(exc))
        raise


def record(
    env: Environment,
    req: AccessRequest,
    creds: Credentials,
    now: datetime,
    common: Who,
    attempt: int,
) -> AccessRequest:
    """Record the issue under its claim; a claim superseded meanwhile (this process was
    taken for dead) is refused: these credentials never leave `issue` (and the re-issue
    that superseded it has cut them off), and the log says why."""
    try:
        return env.store.mark_issued(
            req.request_id, now=now, credentials_expire_at=creds.expires, attempt=attempt
        )
    except JitctlError as exc:
        env.audit.append(
            "issue_failed", **common, access_key_id=creds.access_key_id, error=str(exc)
        )
        raise
