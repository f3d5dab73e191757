"""Durations ("90s", "15m", "2h", "1h30m"), RFC 3339 timestamps and the clock.

The clock is passed in (never read from a global) so tests hand in a fixed one.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Protocol

_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
# No duration jitctl takes (a session, a wait, a request's life, an audit window) is longer;
# bounding it here keeps "99999999999999999999h" a usage error instead of an OverflowError.
MAX_DURATION = timedelta(days=366)


def parse_duration(text: str) -> timedelta:
    """Parse "90s", "15m", "2h", "1h30m" (units in that order, at least one). Raises ValueError."""
    if not isinstance(text, str):
        raise ValueError(f'expected a duration string like "15m" or "1h30m", got {text!r}')
    s = text.strip()
    m = _DURATION.fullmatch(s)
    if not s or m is None or not any(m.groups()):
        raise ValueError(f'invalid duration {text!r}: use forms like "90s", "15m", "2h", "1h30m"')
    too_long = (
        f"invalid duration {text!r}: the longest is {format_duration(MAX_DURATION)} (366 days)"
    )
    # Length first: int() of a 5000-digit string is an error of its own.
    if any(g and len(g.lstrip("0")) > 9 for g in m.groups()):
        raise ValueError(too_long)
    hours, minutes, seconds = (int(g) if g else 0 for g in m.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ValueError(f"invalid duration {text!r}: must be longer than zero")
    if total > MAX_DURATION.total_seconds():
        raise ValueError(too_long)
    return timedelta(seconds=total)


def format_duration(value: timedelta) -> str:
    """The inverse of parse_duration, for messages: 5400s -> "1h30m"."""
    total = int(value.total_seconds())
    if total <= 0:
        return "0s"
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
        f"{seconds}s" if seconds else "",
    ]
    return "".join(parts)


def rfc3339(value: datetime) -> str:
    """UTC, second precision, 'Z' suffix: 2026-11-21T04:00:00Z."""
    return value.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> datetime:
    """Parse an ISO 8601 / RFC 3339 timestamp (as PagerDuty and our records write them) to aware UTC."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """The real clock, always timezone-aware UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)
