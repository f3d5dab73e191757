"""The store's bookkeeping transitions: what was done about a request outside its decision
(its PagerDuty page, its Slack messages, an Identity Center assignment, a grant's extended
end). Kept beside ``base``'s state machine, which applies them like any other planner."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jitctl.models import ISSUED, AccessRequest
from jitctl.store.refusals import refused as _not
from jitctl.store.step import Planner, Step
from jitctl.store.step import copy_request as _copy


def plan_page(page: dict[str, Any]) -> Planner:
    """Record the request's PagerDuty page (opened, resolved) whatever its status: the page
    is bookkeeping about who was woken, not a decision."""

    def plan(req: AccessRequest) -> Step:
        return Step(write=_copy(req, page=dict(page)))

    return plan


def plan_slack(messages: list[dict[str, Any]]) -> Planner:
    """Record where the request was announced in Slack: bookkeeping, like the page."""

    def plan(req: AccessRequest) -> Step:
        return Step(write=_copy(req, slack=[dict(m) for m in messages]))

    return plan


def plan_assignment(assignment: dict[str, Any]) -> Planner:
    """Record an identity_center grant's account assignment (before it is created, then each
    change of state) whatever the request's status: it is what AWS holds, not a decision."""

    def plan(req: AccessRequest) -> Step:
        return Step(write=_copy(req, assignment=dict(assignment)))

    return plan


def plan_extended(extension: str, until: datetime) -> Planner:
    """An issued grant now ends at ``until`` (an extension's new session; never earlier than
    it did). A grant no longer issued (revoked meanwhile) is refused: nothing is handed out."""

    def plan(req: AccessRequest) -> Step:
        if req.status != ISSUED:
            raise _not(req, ISSUED)
        known = extension in req.extensions  # issued again after a failed delivery: once
        extensions = req.extensions if known else [*req.extensions, extension]
        extended = max(req.extended_until or until, until)
        return Step(write=_copy(req, extended_until=extended, extensions=extensions))

    return plan
