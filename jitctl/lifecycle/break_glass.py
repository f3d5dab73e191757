"""Break-glass: `request --break-glass` issues at once, loudly, and an approver reviews it after.

A role allows it with ``[roles.R.break_glass]`` (its ``max_duration`` caps the grant). The
request is recorded approved with approval ``break_glass``; every approver is told at once
(``announce_break_glass``: the notify webhook, the role's Slack when it takes decisions from
Slack, and an audit record naming who was told), and the request stays ``unreviewed`` until an
approver who is not the requester runs ``jitctl review ID`` or clicks the Slack message's
Review button (the same ``review``). ``list --unreviewed`` and ``doctor`` show what still
awaits review.
"""

from __future__ import annotations

import builtins
from datetime import timedelta
from typing import TYPE_CHECKING

from jitctl import models
from jitctl.audit.fields import audit_fields
from jitctl.errors import Denied
from jitctl.lifecycle.notify import notify
from jitctl.models import AccessRequest
from jitctl.oncall import paging
from jitctl.oncall.approvers import approvers_now, is_approver
from jitctl.slack.announce import sync as slack_sync
from jitctl.timeutil import format_duration

if TYPE_CHECKING:
    from jitctl.context import Environment
    from jitctl.policy.roles import BreakGlassRule, Role

# How many requests `list --unreviewed` and doctor look through for ones awaiting review.
SCAN_LIMIT = 1000


def rule_for(role: Role) -> BreakGlassRule:
    """The role's break_glass table; Denied (exit 3: the policy forbids it) without one."""
    if role.break_glass is None:
        raise Denied(
            f"role {role.name!r} does not allow --break-glass",
            f"request it without --break-glass, or have the policy add [roles.{role.name}.break_glass]",
        )
    return role.break_glass


def capped(role: Role, wanted: timedelta) -> tuple[timedelta, str | None]:
    """The break-glass duration: at most the rule's max_duration (cut, and said so)."""
    cap = rule_for(role).max_duration
    if wanted <= cap:
        return wanted, None
    return cap, f"break-glass grants of {role.name!r} last at most {format_duration(cap)}"


def problem(role: Role, req: AccessRequest) -> str | None:
    """Why a stored break-glass approval does not hold under the policy as it is NOW."""
    if role.break_glass is None:
        return f"role {role.name!r} no longer allows break-glass"
    if req.duration_seconds > role.break_glass.max_duration.total_seconds():
        return f"break-glass grants of {role.name!r} last at most {format_duration(role.break_glass.max_duration)}"
    return None


def announce_break_glass(env: Environment, req: AccessRequest) -> builtins.list[str]:
    """The loud part, in one place: tell every approver now and record that it was done.
    Returns warnings (a failed post is audited by notify or by Slack's sync, and never
    blocks the grant). The role's page_service is paged too; that page stays open until the
    review. A role that takes decisions from Slack gets the Slack message (Review button)."""
    role = env.policy.role(req.role)
    approvers = [a for a in approvers_now(env, role) if a != req.requester]
    warning = notify(env, models.BREAK_GLASS, req, approvers)
    title = f"BREAK-GLASS {paging.title_for(req)}: review with `jitctl review {req.request_id}`"
    paged = paging.page(env, req, title)
    slack = slack_sync(env, req)
    env.audit.append(
        "break_glass",
        **audit_fields(env, req),
        reason=req.reason,
        duration_seconds=req.duration_seconds,
        notified=approvers,
        notify_failed=warning is not None,
    )
    return [w for w in (warning, paged, slack) if w]


def review(env: Environment, request_id: str, reason: str | None) -> AccessRequest:
    """An approver (never the requester) records having looked at a break-glass grant, from
    a channel the role takes decisions from (the CLI, or its Slack message's Review button)."""
    from jitctl.lifecycle.decisions import _reason, channel_fields, check_channel, get_request

    reason = _reason(reason, required=False)
    req = get_request(env, request_id)
    caller, role = env.caller, env.policy.role(req.role)
    if caller.person == req.requester:
        raise Denied(
            f"you ({caller.person}) used break-glass for {req.request_id}; someone else must review it",
            "approvers: "
            + (", ".join(a for a in approvers_now(env, role) if a != caller.person) or "none now"),
        )
    check_channel(env, role, req)  # a review is a decision: from where the role takes them
    if not is_approver(env, role, caller.person, caller.arn):
        raise Denied(f"you ({caller.person}) may not review requests for role {req.role!r}")
    updated = env.store.review(request_id, caller.person, now=env.clock.now(), reason=reason)
    env.audit.append(
        "reviewed",
        **audit_fields(env, updated),
        requester=updated.requester,
        reason=reason,
        **channel_fields(env),
    )
    paging.on_ended(env, updated)  # the break-glass page ends with the review (sweep retries)
    if (warning := slack_sync(env, updated)) is not None and env.on_warning:
        env.on_warning(warning)  # review returns the request alone: the host shows it
    return updated


def awaits_review(req: AccessRequest) -> bool:
    return models.review_state(req) == models.UNREVIEWED


def unreviewed(
    env: Environment, *, mine: bool = False, role: str | None = None, limit: int = 100
) -> builtins.list[AccessRequest]:
    """Break-glass requests no approver has reviewed yet, newest first (among the newest
    SCAN_LIMIT requests: the stores index status and requester, not the review)."""
    if role is not None:
        env.policy.role(role)  # an unknown role is a typo worth reporting, not an empty list
    requester = env.caller.person if mine else None
    now = env.clock.now()
    reqs = env.store.list(requester=requester, role=role, limit=SCAN_LIMIT, now=now)
    return [r for r in reqs if awaits_review(r)][:limit]
