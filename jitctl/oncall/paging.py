"""Paging approvers: while a request waits, a PagerDuty incident on the role's
``[approval] page_service`` makes an approver's phone ring; it is resolved when the request is
decided, cancelled or expires.

The page's incident key is the request id, so a request is paged once whoever retries. What
was paged is kept on the request (``page``: service, incident id, status), so ``jitctl sweep``
can resolve pages of requests that ended without anyone deciding them (expired by TTL).
A paging failure is audited (``page_failed``) and returned as a warning; it never blocks the
request or its decision.

``page(env, request, title)`` is the one call that opens a page (on the role's
``page_service`` unless told another); other flows that must wake someone (break-glass) call
it with their own title.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jitctl import models
from jitctl.audit.fields import audit_fields
from jitctl.lifecycle.interrupts import held
from jitctl.models import AccessRequest
from jitctl.oncall.client import LookupFailed
from jitctl.sanitize import clean

if TYPE_CHECKING:
    from jitctl.context import Environment

OPEN, RESOLVED = "open", "resolved"
ENDED: tuple[str, ...] = (
    models.APPROVED,
    models.DENIED,
    models.CANCELLED,
    models.EXPIRED,
    models.ISSUED,
)
ENDED += (models.REVOKED,)


def title_for(req: AccessRequest) -> str:
    """Who wants which role and why, escaped: the reason is the requester's own text and
    lands on phones and in PagerDuty's UI."""
    reason = clean(req.reason)[:200]
    return (
        f"jitctl: {clean(req.requester)} requests {clean(req.role)} ({reason}) [{req.request_id}]"
    )


def on_pending(env: Environment, req: AccessRequest) -> str | None:
    """Page the role's ``page_service`` for a new pending request, if it has one."""
    return page(env, req, title_for(req))


def page(
    env: Environment, req: AccessRequest, title: str, service: str | None = None
) -> str | None:
    """Open (once: incident key = request id) a page on ``service`` (default: the role's
    ``page_service``; none: nothing to do) for ``req`` and keep it on the request. Returns a
    warning when it failed (audited), else None."""
    from jitctl.oncall import incident_track
    from jitctl.oncall import incidents as pd

    if service is None:
        role = env.policy.role(req.role)
        service = role.approval.page_service if role.approval else None
    if not service:
        return None
    with held():  # a Ctrl-C waits until the page is kept on the request: its cancel resolves it
        try:
            inc_id = pd.open_page(
                env.pagerduty, service, title, req.request_id, incident_track.sender(env)
            )
        except LookupFailed as exc:
            return _failed(env, req, "open", service, exc.reason)
        req.page = env.store.set_page(
            req.request_id, {"service": service, "id": inc_id, "status": OPEN}
        ).page
    env.audit.append("paged", **audit_fields(env, req), service=service, incident=inc_id)
    return None


def needs_resolving(req: AccessRequest) -> bool:
    """An open page whose request is no longer waiting for a decision (a break-glass page
    waits for the grant's review instead)."""
    if req.approval == models.BREAK_GLASS and models.review_state(req) == models.UNREVIEWED:
        return False
    page = req.page or {}
    return bool(page) and page.get("status") == OPEN and req.status in ENDED


def on_ended(env: Environment, req: AccessRequest) -> str | None:
    """Resolve the request's page now that it was decided, cancelled or expired. Returns a
    warning when that failed (audited; ``jitctl sweep`` tries again), else None."""
    from jitctl.oncall import incident_track
    from jitctl.oncall import incidents as pd

    if not needs_resolving(req):
        return None
    assert req.page is not None
    service, inc_id = str(req.page.get("service")), str(req.page.get("id"))
    try:
        pd.resolve_page(env.pagerduty, inc_id, incident_track.sender(env))
    except LookupFailed as exc:
        return _failed(env, req, "resolve", service, exc.reason)
    req.page = env.store.set_page(req.request_id, dict(req.page) | {"status": RESOLVED}).page
    env.audit.append(
        "page_resolved", **audit_fields(env, req), incident=inc_id, request_status=req.status
    )
    return None


def _failed(env: Environment, req: AccessRequest, what: str, service: str, why: str) -> str:
    env.audit.append(
        "page_failed", **audit_fields(env, req), action=what, service=service, error=why
    )
    return f"could not {what} the PagerDuty page on {service}: {why}"
