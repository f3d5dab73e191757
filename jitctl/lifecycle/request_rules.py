"""What a request may ask for: its id, its reason, its duration, how long it and its approval
last, and the session STS will grant (the rules submit and issue apply; no I/O here)."""

from __future__ import annotations

import base64
import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from jitctl.errors import UsageError
from jitctl.sanitize import MAX_REASON, clean, require_text
from jitctl.timeutil import format_duration

if TYPE_CHECKING:
    from jitctl.policy.roles import Role

STS_MIN_SECONDS = 900
DEFAULT_DURATION = timedelta(hours=1)
DEFAULT_REQUEST_TTL = timedelta(minutes=30)  # for roles without an [approval] table


def new_request_id() -> str:
    """Short enough to read out over a call at 4am, random enough never to collide in practice."""
    return "r-" + base64.b32encode(secrets.token_bytes(5)).decode().lower()


# How to give the reason each command asks for, in that command's own words.
REQUEST_REASON = 'pass --reason "INC-123 what you are doing"'
DENY_REASON = 'pass --reason "why not" (the requester sees it)'
REVOKE_REASON = 'pass --reason "why access ends now" (it is audited)'


def check_reason(reason: str | None, hint: str = REQUEST_REASON) -> str:
    if reason is None or not reason.strip():
        raise UsageError("a reason is required", hint)
    if len(reason) > MAX_REASON:
        raise UsageError(
            f"the reason is {len(reason)} characters long; the limit is {MAX_REASON}", "shorten it"
        )
    return clean(require_text(reason, "the reason")).strip()


def check_duration(requested: timedelta | None, max_duration: timedelta, role: str) -> timedelta:
    """A duration over the role's max is refused, not silently cut."""
    if requested is None:
        return min(DEFAULT_DURATION, max_duration)
    if requested > max_duration:
        raise UsageError(
            f"--duration {format_duration(requested)} is longer than role {role!r} allows",
            f"ask for at most {format_duration(max_duration)}",
        )
    return requested


def session_seconds(
    duration: timedelta, shift_end: datetime | None, now: datetime
) -> tuple[int, str | None]:
    """DurationSeconds: the requested duration, cut to the on-call shift, never under STS's 900 s."""
    seconds = int(duration.total_seconds())
    note = None
    if shift_end is not None:
        left = int((shift_end - now).total_seconds())
        if left < seconds:
            seconds = left
            note = f"credentials end with your on-call shift, in {format_duration(timedelta(seconds=max(left, 0)))}"
    if seconds < STS_MIN_SECONDS:
        short = format_duration(timedelta(seconds=max(seconds, 0)))
        # name what made it short: the shift (cut above) or the --duration asked for
        why = f"your on-call shift ends in {short}" if note else f"you asked for {short}"
        note = f"{why}, but STS sessions last at least 15m: the credentials last 15m"
        seconds = STS_MIN_SECONDS
    return seconds, note


def request_ttl(role: Role) -> timedelta:
    """How long a request waits for a decision, and how long a decision stays redeemable."""
    return role.approval.request_ttl if role.approval else DEFAULT_REQUEST_TTL
