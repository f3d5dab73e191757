"""What every audit record says about who did what to which request."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jitctl.context import Environment
    from jitctl.models import AccessRequest


def audit_fields(env: Environment, req: AccessRequest) -> dict[str, str | None]:
    caller = env.caller
    return {
        "request_id": req.request_id,
        "actor": caller.arn,
        "person": caller.person,
        "role": req.role,
    }
