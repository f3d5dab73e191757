"""Approving, denying, cancelling and looking at requests.

Who may decide is the policy's call; persons are compared, never ARNs, so alice through her
SSO role and through an IAM user is one person and cannot approve her own request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jitctl import models
from jitctl.audit.fields import audit_fields
from jitctl.errors import Denied
from jitctl.lifecycle.notify import notify
from jitctl.lifecycle.request_rules import DENY_REASON, check_reason
from jitctl.models import AccessRequest
from jitctl.oncall import paging
from jitctl.oncall.approvers import approvers_now, is_approver
from jitctl.policy.schema import CLI, SLACK
from jitctl.slack.announce import sync as slack_sync
from jitctl.store.base import NotFound

if TYPE_CHECKING:
    from jitctl.context import Environment
    from jitctl.policy.roles import Role


def get_request(env: Environment, request_id: str) -> AccessRequest:
    req = env.store.get(request_id, now=env.clock.now())
    if req is None:
        raise NotFound(f"no request {request_id!r}", "see `jitctl list --pending`")
    return req


def _reason(reason: str | None, *, required: bool) -> str | None:
    """An approval's reason is optional; a denial's is not. Same limits as a request's."""
    if not required and (reason is None or not reason.strip()):
        return None
    return check_reason(reason, DENY_REASON)


def check_may_decide(env: Environment, req: AccessRequest) -> None:
    """Denied (exit 3) unless the caller is one of the role's approvers and not the requester."""
    caller = env.caller
    if caller.person == req.requester:
        others = approvers_for(env, req)
        raise Denied(
            f"you ({caller.person}) requested {req.request_id}; someone else must decide it",
            f"send it to one of: {', '.join(others)}" if others else None,
        )
    role = env.policy.role(req.role)
    check_channel(env, role, req)
    if role.approval is None or not is_approver(env, role, caller.person, caller.arn):
        raise Denied(
            f"you ({caller.person}) may not decide requests for role {req.role!r}",
            "approvers: " + (", ".join(approvers_for(env, req)) or "none now"),
        )


def decision_channels(role: Role) -> tuple[str, ...]:
    """Where the role's decisions (approvals, denials, reviews) may come from: the CLI alone
    unless its policy's ``approve_from`` says more."""
    return role.approval.approve_from if role.approval is not None else (CLI,)


def check_channel(env: Environment, role: Role, req: AccessRequest) -> None:
    """Denied (exit 3) when the caller's channel (the CLI's AWS identity, or Slack's sign-in)
    is not one the role takes decisions from."""
    channels = decision_channels(role)
    if env.caller.channel not in channels:
        raise Denied(
            f"decisions on role {req.role!r} may not come from {env.caller.channel}: its policy "
            f"takes them from {' and '.join(channels)} only",
            f"decide it there: {_where_to_decide(channels, req)}",
        )


def _where_to_decide(channels: tuple[str, ...], req: AccessRequest) -> str:
    ways = {"cli": f"`jitctl approve {req.request_id}`", SLACK: "the request's Slack message"}
    return " or ".join(ways[c] for c in channels)


def channel_fields(env: Environment) -> dict[str, str]:
    """What a decision's audit record says about where it came from (CONTRACT: `channel`)."""
    caller = env.caller
    if caller.channel == SLACK:
        return {"channel": SLACK, "slack_user": caller.arn.removeprefix("slack:")}
    return {"channel": caller.channel}


def approvers_for(env: Environment, req: AccessRequest) -> list[str]:
    role = env.policy.role(req.role)
    if role.approval is None:
        return []
    return [a for a in approvers_now(env, role) if a != req.requester]


def may_decide(env: Environment, req: AccessRequest) -> bool:
    try:
        check_may_decide(env, req)
    except Denied:
        return False
    return True


def approve(
    env: Environment, request_id: str, *, reason: str | None
) -> tuple[AccessRequest, list[str]]:
    """Record the caller's approval. Returns the request and any warnings (e.g. webhook failures)."""
    reason = _reason(reason, required=False)
    req = get_request(env, request_id)
    check_may_decide(env, req)
    caller = env.caller
    role = env.policy.role(req.role)
    updated = env.store.approve(
        request_id,
        caller.person,
        now=env.clock.now(),
        reason=reason,
        # The policy's number now, not the one stored with the request (its requester can
        # rewrite that); `flow.issue` checks again before anything is issued.
        min_approvals=role.approval.min_approvals if role.approval else None,
        # Kept per approver, so that `flow.issue` can re-check it against approve_from then.
        channel=caller.channel,
    )
    env.audit.append(
        "approved",
        **audit_fields(env, updated),
        requester=updated.requester,
        reason=reason,
        approvals=len(updated.approvers),
        min_approvals=updated.min_approvals,
        **channel_fields(env),
    )
    warnings = [slack_sync(env, updated)]  # approvals so far, or approved: buttons gone
    if updated.status == models.APPROVED:
        warnings += [notify(env, "approved", updated), paging.on_ended(env, updated)]
    return updated, [w for w in warnings if w]


def deny(
    env: Environment, request_id: str, *, reason: str | None
) -> tuple[AccessRequest, list[str]]:
    reason = _reason(reason, required=True)
    assert reason is not None
    req = get_request(env, request_id)
    check_may_decide(env, req)
    updated = env.store.deny(request_id, env.caller.person, now=env.clock.now(), reason=reason)
    env.audit.append(
        "denied",
        **audit_fields(env, updated),
        requester=updated.requester,
        reason=reason,
        **channel_fields(env),
    )
    warnings = [notify(env, "denied", updated), paging.on_ended(env, updated)]
    warnings.append(slack_sync(env, updated))
    return updated, [w for w in warnings if w]


def cancel(env: Environment, request_id: str, *, interrupted: bool = False) -> AccessRequest:
    """The requester withdraws their own pending request (``interrupted``: by a Ctrl-C of
    the run that made it, in either mode: jitctl.lifecycle.interrupts). The page is resolved."""
    from jitctl.lifecycle.interrupts import INTERRUPTED_WHY

    req = get_request(env, request_id)
    if env.caller.person != req.requester:
        raise Denied(f"only {req.requester} can cancel {request_id}", "approvers deny instead")
    updated = env.store.cancel(request_id, env.caller.person, now=env.clock.now())
    why = INTERRUPTED_WHY if interrupted else "cancelled by the requester"
    env.audit.append("cancelled", **audit_fields(env, updated), why=why)
    for warning in (paging.on_ended(env, updated), slack_sync(env, updated)):
        if warning is not None and env.on_warning:
            env.on_warning(warning)  # cancel returns the request alone: the host shows it
    return updated


def list_requests(
    env: Environment,
    *,
    pending_only: bool,
    mine: bool,
    role: str | None,
    limit: int = 100,
) -> list[AccessRequest]:
    requester = env.caller.person if mine else None
    if role is not None:
        env.policy.role(role)  # an unknown role is a typo worth reporting, not an empty list
    return env.store.list(
        pending_only=pending_only, requester=requester, role=role, limit=limit, now=env.clock.now()
    )


def decidable(env: Environment) -> list[AccessRequest]:
    """Pending requests the caller may approve (for `jitctl approve` with no id)."""
    return [
        r
        for r in list_requests(env, pending_only=True, mine=False, role=None)
        if may_decide(env, r)
    ]
