"""The Block Kit of a request's Slack message: what it asks, and what became of it. A
break-glass grant's message has no Approve/Deny (nothing waits): it says loudly who took which
role without approval and why, and carries a Review button until an approver reviews it.

Every piece of people's text (requester, reason, approvers, incident title, decision reason)
goes through ``jitctl.sanitize.slack_text``, the one Slack escaping rule.
"""

from __future__ import annotations

from typing import Any

from jitctl import models
from jitctl.models import AccessRequest
from jitctl.sanitize import slack_text
from jitctl.timeutil import rfc3339

APPROVE, DENY, REVIEW = "jitctl_approve", "jitctl_deny", "jitctl_review"  # action ids (CONTRACT)
DENY_CALLBACK, REASON_ACTION, REASON_BLOCK = "jitctl_deny", "reason", "reason"

_ENDED = {
    models.APPROVED: ":white_check_mark: Approved",
    models.ISSUED: ":key: Approved and issued",
    models.DENIED: ":no_entry: Denied",
    models.CANCELLED: ":leftwards_arrow_with_hook: Cancelled by the requester",
    models.EXPIRED: ":hourglass: Expired before a decision",
    models.REVOKED: ":scissors: Issued, then revoked",
}


def summary(req: AccessRequest) -> str:
    """The notification text (and the fallback where blocks are not shown)."""
    if req.approval == models.BREAK_GLASS:
        return (
            f":rotating_light: BREAK-GLASS: {slack_text(req.requester)} took "
            f"{slack_text(req.role)} for {req.duration_seconds // 60} min without approval: "
            f"{slack_text(req.reason)}"
        )
    return (
        f"{slack_text(req.requester)} requests {slack_text(req.role)} "
        f"for {req.duration_seconds // 60} min: {slack_text(req.reason)}"
    )


def blocks(req: AccessRequest) -> list[dict[str, Any]]:
    """The message as it should read now: buttons only while the request waits."""
    if req.approval == models.BREAK_GLASS:
        return _break_glass(req)
    body = [_section(f"*{summary(req)}*"), _section(_facts(req))]
    if req.status == models.PENDING:
        return [*body, _buttons(req.request_id)]
    return [*body, _section(_outcome(req))]


def _break_glass(req: AccessRequest) -> list[dict[str, Any]]:
    """No decision to take: what happened, and the Review button while nobody has reviewed it."""
    body = [_section(f"*{summary(req)}*"), _section(_glass_facts(req))]
    if req.reviewed_at is None:
        return [*body, _actions(req.request_id, _button("Review", REVIEW, req.request_id))]
    by = f"{slack_text(req.reviewed_by or '')} at {rfc3339(req.reviewed_at)}"
    why = f": {slack_text(req.review_reason)}" if req.review_reason else ""
    return [*body, _section(f":white_check_mark: Reviewed by {by}{why}")]


def _glass_facts(req: AccessRequest) -> str:
    lines = [
        f"*Request* `{req.request_id}`",
        f"*Duration* {req.duration_seconds // 60} min",
        f"*Grant* {_glass_state(req)}",
    ]
    if req.reviewed_at is None:
        lines.append(f"*Review* awaiting an approver (or `jitctl review {req.request_id}`)")
    return "\n".join(lines)


def _glass_state(req: AccessRequest) -> str:
    ends = models.grant_end(req)
    if req.status == models.REVOKED:
        return f":scissors: revoked by {slack_text(req.revoked_by or '')}"
    if req.status == models.ISSUED and ends is not None and ended(req):
        return f":hourglass: issued, ended {rfc3339(ends)}"
    if req.status == models.ISSUED:
        return ":key: issued" + (f", ends {rfc3339(ends)}" if ends else "")
    return ":rotating_light: being issued now, without approval"


def _facts(req: AccessRequest) -> str:
    lines = [
        f"*Request* `{req.request_id}`",
        f"*Duration* {req.duration_seconds // 60} min",
        f"*Approvals so far* {len(req.approvers)} of {req.min_approvals}"
        + (f" ({', '.join(slack_text(a) for a in req.approvers)})" if req.approvers else ""),
        f"*Expires* {rfc3339(req.expires_at)}",
    ]
    if req.fast_path_reason:
        lines.append(f"*Why not the fast track* {slack_text(req.fast_path_reason)}")
    if req.incident:
        title = slack_text(str(req.incident.get("title") or ""))
        lines.append(f"*Incident* {slack_text(str(req.incident.get('id') or ''))} {title}")
    return "\n".join(lines)


def _outcome(req: AccessRequest) -> str:
    said = _ENDED.get(req.status, slack_text(req.status))
    by = f" by {slack_text(req.decided_by)}" if req.decided_by else ""
    why = f": {slack_text(req.decision_reason)}" if req.decision_reason else ""
    return f"{said}{by if req.status != models.CANCELLED else ''}{why}"


def ended(req: AccessRequest) -> bool:
    """The sweep found the grant's time over and its message says so (announce.grant_ended)."""
    return any(m.get("ended") for m in req.slack or [])


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}


def _buttons(request_id: str) -> dict[str, Any]:
    approve = _button("Approve", APPROVE, request_id, "primary")
    return _actions(request_id, approve, _button("Deny", DENY, request_id, "danger"))


def _actions(request_id: str, *buttons: dict[str, Any]) -> dict[str, Any]:
    return {"type": "actions", "block_id": f"jitctl_decide_{request_id}", "elements": list(buttons)}


def _button(label: str, action: str, request_id: str, style: str | None = None) -> dict[str, Any]:
    text = {"type": "plain_text", "text": label}
    button = {"type": "button", "text": text, "action_id": action, "value": request_id}
    return {**button, "style": style} if style else button


def deny_modal(request_id: str) -> dict[str, Any]:
    """The modal that asks a denier why (CONTRACT: callback_id, private_metadata, action_id)."""
    return {
        "type": "modal",
        "callback_id": DENY_CALLBACK,
        "private_metadata": request_id,
        "title": {"type": "plain_text", "text": "Deny request"},
        "submit": {"type": "plain_text", "text": "Deny"},
        "blocks": [
            {
                "type": "input",
                "block_id": REASON_BLOCK,
                "label": {"type": "plain_text", "text": f"Why deny {request_id}?"},
                "element": {"type": "plain_text_input", "action_id": REASON_ACTION},
            }
        ],
    }
