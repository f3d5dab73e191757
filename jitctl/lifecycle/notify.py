"""Telling approvers: a Slack-compatible webhook post when a request is created or decided.

A failed post is reported (and audited by the caller) but never blocks or loses the request.
Standard library only: a JSON POST needs nothing more.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

from jitctl.audit.fields import audit_fields
from jitctl.config.settings import NotifySettings
from jitctl.models import AccessRequest
from jitctl.sanitize import slack_text

if TYPE_CHECKING:
    from jitctl.context import Environment


def _mrkdwn_safe(text: str) -> str:
    """Slack mrkdwn control characters are escaped so a reason cannot ping @here or forge links."""
    return slack_text(text)


def message(
    event: str, req: AccessRequest, *, approvers: list[str] | None = None
) -> dict[str, str]:
    who = _mrkdwn_safe(req.requester)
    role = _mrkdwn_safe(req.role)
    reason = _mrkdwn_safe(req.reason)
    if event == "requested":
        can = f" Approvers: {', '.join(_mrkdwn_safe(a) for a in approvers)}." if approvers else ""
        more = f" more (extends grant {req.extends})" if req.extends else ""
        text = (
            f"{who} requests *{role}* for {req.duration_seconds // 60} min{more}: {reason}.{can}\n"
            f"Approve: `jitctl approve {req.request_id}`  Deny: `jitctl deny {req.request_id} --reason ...`"
        )
    elif event == "break_glass":
        told = ", ".join(_mrkdwn_safe(a) for a in approvers or [])
        text = (
            f":rotating_light: BREAK-GLASS: {who} took *{role}* for "
            f"{req.duration_seconds // 60} min without approval: {reason}.\n"
            f"Review it: `jitctl review {req.request_id} --reason ...`"
            + (f" (approvers: {told})" if told else "")
        )
    else:
        by = _mrkdwn_safe(req.decided_by or "")
        extra = f": {_mrkdwn_safe(req.decision_reason)}" if req.decision_reason else ""
        text = f"Request {req.request_id} ({who}, *{role}*) was {event} by {by}{extra}."
    return {"text": text}


def post(settings: NotifySettings, payload: dict[str, str]) -> str | None:
    """POST the payload; returns None on success, else a one-line reason (never raises)."""
    if not settings.webhook_url:
        return None
    body = json.dumps(payload).encode()
    try:  # Request() parses the URL: a bad one is a failed post like any other
        req = urllib.request.Request(
            settings.webhook_url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "jitctl"},
        )
        with urllib.request.urlopen(req, timeout=settings.timeout) as resp:  # noqa: S310 (configured URL)
            resp.read(1024)
        return None
    except urllib.error.HTTPError as exc:
        return f"webhook answered {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"webhook unreachable: {reason}"


def notify(
    env: Environment, event: str, req: AccessRequest, approvers: list[str] | None = None
) -> str | None:
    """Post to the webhook; a failure is audited and returned as a warning, never raised."""
    settings = env.config.notify
    if not settings.webhook_url:
        return None
    problem = post(settings, message(event, req, approvers=approvers))
    if problem:
        env.audit.append("notify_failed", **audit_fields(env, req), about=event, error=problem)
        return f"could not notify approvers ({problem}); send them the approve command yourself"
    return None
