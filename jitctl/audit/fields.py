"""What every audit record says about who did what to which request."""

from __future__ import annotations

from typing import TYPE_CHECKING, NotRequired, TypedDict

if TYPE_CHECKING:
    from jitctl.context import Environment
    from jitctl.models import AccessRequest


class Who(TypedDict):
    """The fields ``AuditLog.append`` takes by name, so ``**audit_fields(...)`` type-checks."""

    request_id: str | None
    actor: str
    person: str | None
    role: str | None
    capped: NotRequired[str]  # issuing: why the role-chaining cap shortened the session
    actor_kind: NotRequired[str]  # "sweep": housekeeping acted, not the person named


def audit_fields(env: Environment, req: AccessRequest) -> Who:
    caller = env.caller
    return {
        "request_id": req.request_id,
        "actor": caller.arn,
        "person": caller.person,
        "role": req.role,
    }
