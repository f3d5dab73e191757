"""Housekeeping a scheduler runs: ``jitctl sweep`` in direct mode (cron), the broker's
scheduled event under Lambda and its timer under ``broker serve``.

Unlike readers, the sweep writes: it records the expiry of pending requests past their TTL,
resolves the PagerDuty pages of requests that ended (decided, cancelled, expired), tells a
break-glass grant's Slack message that its time ran out, and revokes
grants tied to an incident that has resolved when the role says ``end_with_incident`` (through
``jitctl.revocation.revoke``, the path `jitctl revoke` takes, with the actor ``pagerduty``). Each task is
idempotent and one failure never stops the others: a run that PagerDuty or AWS cut short is
finished by the next one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jitctl import models
from jitctl.audit.fields import audit_fields
from jitctl.errors import JitctlError
from jitctl.models import AccessRequest, Caller
from jitctl.oncall import paging
from jitctl.oncall.client import LookupFailed
from jitctl.slack.announce import end_unshown, grant_ended
from jitctl.slack.announce import sync as slack_sync

if TYPE_CHECKING:
    from jitctl.context import Environment

SCAN_LIMIT = 1000  # newest requests looked at per run (pending TTLs are at most 7 days)
SYSTEM_PERSON = "jitctl-broker"  # who the broker's own scheduled sweep acts as


@dataclass
class SweepReport:
    checked: int = 0
    expired: list[str] = field(default_factory=list)
    pages_resolved: list[str] = field(default_factory=list)
    revoked: list[dict[str, Any]] = field(default_factory=list)
    unassigned: list[dict[str, Any]] = field(default_factory=list)  # identity_center grants ended
    problems: list[str] = field(default_factory=list)
    # 5 while problems are outages the next run may get past; 2 when this setup cannot do
    # the work at all (no PagerDuty token): a retry will not fix that, its config will
    exit_code: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "exit_code": self.exit_code,
            "checked": self.checked,
            "expired": list(self.expired),
            "pages_resolved": list(self.pages_resolved),
            "revoked": [dict(r) for r in self.revoked],
            "unassigned": [dict(r) for r in self.unassigned],
            "problems": list(self.problems),
        }


def system_caller(env: Environment) -> Caller:
    """The broker itself, for its scheduled sweep: its own principal, a non-email person."""
    arn, account = env.identity()
    return Caller(arn=arn, account=account, person=SYSTEM_PERSON)


def sweep(env: Environment, *, limit: int = SCAN_LIMIT) -> SweepReport:
    """Run every task over the newest ``limit`` requests (as stored: this is a writer)."""
    report = SweepReport()
    now = env.clock.now()
    for req in env.store.list(limit=limit):
        report.checked += 1
        try:
            req = _expire(env, req, now, report)
            _resolve_page(env, req, report)
            _end_with_incident(env, req, now, report)
            _end_assignment(env, req, now, report)
            _slack_ended(env, req, now, report)
        except JitctlError as exc:
            report.problems.append(f"{req.request_id}: {exc.message}")
    if report.problems:
        report.exit_code = _problems_code(env, report)
    return report


def _slack_ended(env: Environment, req: AccessRequest, now: Any, report: SweepReport) -> None:
    """A break-glass grant's Slack message says when its time ran out."""
    if not end_unshown(req, now):
        return  # the store is read again only for the few that need it
    current = env.store.get(req.request_id) or req  # _end_with_incident may have revoked it
    if (warning := grant_ended(env, current, now)) is not None:
        report.problems.append(f"{req.request_id}: {warning}")


def _end_assignment(env: Environment, req: AccessRequest, now: Any, report: SweepReport) -> None:
    """An identity_center grant that is over: its assignment removed (or kept for another
    live grant); also the reconciler for issues that failed or crashed mid-way."""
    if not models.is_identity_center(req):
        return
    from jitctl.identity_center import reconcile

    current = env.store.get(req.request_id) or req  # _end_with_incident may have ended it
    done = reconcile.end(env, current, now)
    if done is not None:
        report.unassigned.append(done)


def _problems_code(env: Environment, report: SweepReport) -> int:
    """2 when PagerDuty was needed and no token is configured (said once, first), else 5."""
    from jitctl.errors import ExitCode, TokenError

    try:
        env.pagerduty_token()
    except TokenError as exc:
        report.problems.insert(0, str(exc))
        return int(ExitCode.USAGE)
    except JitctlError:
        pass
    return int(ExitCode.UNAVAILABLE)


def _expire(env: Environment, req: AccessRequest, now: Any, report: SweepReport) -> AccessRequest:
    """Record the expiry of a pending request past its TTL (so its page can be resolved)."""
    if req.status != models.PENDING or now < req.expires_at:
        return req
    updated = env.store.expire(req.request_id, now=now)
    env.audit.append("expired", **audit_fields(env, updated), why="expired before a decision")
    report.expired.append(req.request_id)
    if (warning := slack_sync(env, updated)) is not None:
        report.problems.append(f"{req.request_id}: {warning}")
    return updated


def _resolve_page(env: Environment, req: AccessRequest, report: SweepReport) -> None:
    if not paging.needs_resolving(req):
        return
    warning = paging.on_ended(env, req)
    if warning is None:
        report.pages_resolved.append(req.request_id)
    else:
        report.problems.append(f"{req.request_id}: {warning}")


def _end_with_incident(env: Environment, req: AccessRequest, now: Any, report: SweepReport) -> None:
    """Revoke a live grant whose incident resolved, when it was tied with end_with_incident."""
    inc = req.incident or {}
    if not inc or req.status != models.ISSUED:
        return
    # The policy as it is now decides, not the flag stored with the request: in direct mode
    # the requester can write the store.
    rule = env.policy.role(req.role).incident
    if rule is None or not rule.end_with_incident:
        return
    ends = models.grant_end(req)  # extensions included
    if ends is not None and ends <= now:
        return  # nothing live to cut
    from jitctl.oncall import incidents as pd
    from jitctl.revocation.revoke import revoke

    try:
        status = str(pd.read_incident(env.pagerduty, str(inc["id"]))["status"])
    except LookupFailed as exc:
        report.problems.append(f"{req.request_id}: incident {inc['id']}: {exc.reason}")
        return
    if status != "resolved":
        return
    why = f"incident {inc['id']} (#{inc.get('number')}) resolved (end_with_incident)"
    done = revoke(env, req.request_id, reason=why, actor="pagerduty")
    report.revoked.append({"request_id": req.request_id, "incident": inc["id"]})
    report.problems += [f"{req.request_id}: {note}" for note in done.notes]
