"""Role chaining: an AssumeRole made with role credentials lasts at most one hour.

A broker on Lambda (or ECS, or EC2) runs on its execution role's credentials, and a person
signed in through IAM Identity Center holds a role session too: every AssumeRole they make is
role chaining, which AWS caps at 1 hour whatever the target role's MaxSessionDuration ("The
requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role
chaining"). An IAM user's keys have no such cap. Whose credentials make the call comes from
sts:GetCallerIdentity (``Environment.identity``): an ``assumed-role`` ARN is a role session.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from jitctl.timeutil import format_duration

CHAIN_MAX = timedelta(hours=1)
CHAIN_HINT = (
    "the credentials that assume the role are themselves a role session (a broker on Lambda, "
    "ECS or EC2, or an SSO login), so AWS allows at most 1h (role chaining); raising the "
    "role's MaxSessionDuration cannot help: ask for 1h or less, or lower max_duration to 1h"
)


def is_role_session(arn: str) -> bool:
    """arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION (any partition)."""
    parts = arn.split(":", 5)
    return len(parts) == 6 and parts[2] == "sts" and parts[5].startswith("assumed-role/")


def cap(seconds: int, issuer_arn: str) -> tuple[int, str | None]:
    """DurationSeconds STS will grant ``issuer_arn``, and the note to the requester when that
    is less than asked."""
    limit = int(CHAIN_MAX.total_seconds())
    if seconds <= limit or not is_role_session(issuer_arn):
        return seconds, None
    asked = format_duration(timedelta(seconds=seconds))
    return limit, (
        f"credentials last 1h, not {asked}: they are issued with role credentials "
        f"({_role_of(issuer_arn)}), and AWS caps a role assumed with those at 1h (role chaining)"
    )


def _role_of(arn: str) -> str:
    return arn.split(":", 5)[5].split("/")[1] if arn.count("/") >= 2 else arn


def too_long(roles: Iterable[Any]) -> list[tuple[str, timedelta]]:
    """(name, max_duration) of each policy role that allows more than role chaining can issue
    (an identity_center role is no STS session: not capped)."""
    return sorted(
        (role.name, role.max_duration)
        for role in roles
        if role.max_duration > CHAIN_MAX and role.kind != "identity_center"
    )


def warning(roles: Iterable[Any], issuer: str) -> str | None:
    """One line naming the roles whose max_duration ``issuer`` (who assumes the roles, e.g.
    "the broker's role X") cannot issue; None when there are none."""
    long = too_long(roles)
    if not long:
        return None
    listed = ", ".join(f"{name} ({format_duration(d)})" for name, d in long)
    return (
        f"{issuer} holds role credentials, so AWS caps what it issues at 1h (role chaining); "
        f"max_duration over 1h cannot be granted and is cut to 1h: {listed}"
    )
