"""The request's Slack message: posted when a request on a Slack-decided role waits (or when
break-glass is used on one: ``break_glass.announce_break_glass``), updated (buttons gone) when
it is decided, cancelled, expires, is issued, revoked or reviewed, by whatever path.

``sync`` is the one call: the lifecycle calls it after each change, with the request as the
store now has it. Best effort: Slack down, rate limiting or a wrong token never blocks or
fails the request (the CLI path still works) and never grants anything; the failure is
audited (``slack_failed``) and returned as a warning.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from jitctl import models
from jitctl.audit.fields import audit_fields
from jitctl.errors import JitctlError
from jitctl.identity.rule import person_for
from jitctl.models import AccessRequest
from jitctl.policy.schema import SLACK, is_arn
from jitctl.sanitize import clean
from jitctl.slack import api, message

if TYPE_CHECKING:
    from datetime import datetime

    from jitctl.context import Environment


def sync(env: Environment, req: AccessRequest) -> str | None:
    """Make Slack show ``req`` as it is now; a warning (audited) if Slack could not."""
    if not _announced_in_slack(env, req):
        return None
    try:
        if req.slack:
            _update(env, req)
        elif _announces(req):
            _post(env, req)
    except JitctlError as exc:
        problem = clean(exc.message)[:300]
        env.audit.append("slack_failed", **audit_fields(env, req), error=problem)
        return f"could not update the request's Slack message ({problem}); the CLI still works"
    return None


def _announced_in_slack(env: Environment, req: AccessRequest) -> bool:
    """Only with a bot token, and only roles that take decisions from Slack."""
    if not env.config.slack.has_token:
        return False  # no token here (a client's machine): the broker does it
    role = env.policy.roles.get(req.role)
    return role is not None and role.approval is not None and SLACK in role.approval.approve_from


def _announces(req: AccessRequest) -> bool:
    """A request is posted when it starts to wait, or as a break-glass grant is being issued
    (recorded approved, not yet issued: the one moment ``announce_break_glass`` runs). A grant
    already reviewed is not news: a review never posts a message the announcement failed to."""
    if req.approval == models.BREAK_GLASS:
        return req.status == models.APPROVED and req.reviewed_at is None
    return req.status == models.PENDING


def _post(env: Environment, req: AccessRequest) -> None:
    """To the role's channel, else a direct message to each approver Slack knows (never the
    requester); where it went is kept with the request, for the updates. A change that landed
    between posting and keeping where (a CLI approval, a click) found no message to update:
    what the store holds now is compared with what was posted, and shown at once."""
    rule = env.policy.role(req.role).approval
    assert rule is not None
    targets = [rule.slack_channel] if rule.slack_channel else _direct_messages(env, req)
    posted = []
    for channel in targets:
        answer = api.call(
            env,
            "chat_postMessage",
            channel=channel,
            text=message.summary(req),
            blocks=message.blocks(req),
        )
        if not answer.get("ts"):
            raise api.SlackError("Slack chat.postMessage answered without a ts")
        posted.append({"channel": str(answer.get("channel") or channel), "ts": str(answer["ts"])})
    if posted:
        _keep(env, req, posted)


def _keep(env: Environment, shown: AccessRequest, messages: list[dict[str, Any]]) -> None:
    """Store where (and how) the request is shown; if the store's request no longer reads as
    ``shown`` (a change landed meanwhile, whose own update missed), show it as it is now."""
    now = env.store.set_slack(shown.request_id, messages)
    if message.blocks(now) != message.blocks(shown):
        _update(env, now)


def end_unshown(req: AccessRequest, now: datetime) -> bool:
    """A break-glass grant's time is over and its Slack message does not say so yet."""
    ends = models.access_ends(req)
    if req.approval != models.BREAK_GLASS or req.status != models.ISSUED or not req.slack:
        return False
    return ends is not None and now >= ends and not message.ended(req)


def grant_ended(env: Environment, req: AccessRequest, now: datetime) -> str | None:
    """A break-glass grant whose time ran out: its message says so, once (the sweep calls
    this; ``ended`` is kept with each message after Slack shows it, so a failure is retried
    by the next sweep). A warning (audited) if Slack could not."""
    if not end_unshown(req, now):
        return None
    marked = [{**m, "ended": True} for m in req.slack or []]
    shown = replace(req, slack=marked)
    warning = sync(env, shown)
    if warning is None:
        _keep(env, shown, marked)
    return warning


def _update(env: Environment, req: AccessRequest) -> None:
    for posted in req.slack or []:
        api.call(
            env,
            "chat_update",
            channel=posted["channel"],
            ts=posted["ts"],
            text=message.summary(req),
            blocks=message.blocks(req),
        )


def _direct_messages(env: Environment, req: AccessRequest) -> list[str]:
    """The direct-message channels of the role's approvers now (groups and oncall:/schedule:
    expanded), found by email; the requester and people Slack does not know are skipped."""
    from jitctl.oncall.approvers import approvers_now

    role = env.policy.role(req.role)
    channels = []
    for person in dict.fromkeys(_email(env, a) for a in approvers_now(env, role)):
        if person and person != req.requester:
            user = _user_by_email(env, person)
            if user:
                opened = api.call(env, "conversations_open", users=user)
                channels.append(str((opened.get("channel") or {}).get("id") or user))
    return channels


def _email(env: Environment, approver: str) -> str | None:
    return person_for(approver, env.policy.identity) if is_arn(approver) else approver


def _user_by_email(env: Environment, email: str) -> str | None:
    try:
        found: dict[str, Any] = api.call(env, "users_lookupByEmail", email=email)
    except api.SlackError as exc:
        if "users_not_found" in exc.message:
            return None  # not in this Slack: they still have the CLI
        raise
    return str((found.get("user") or {}).get("id") or "") or None
