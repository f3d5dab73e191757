"""A clock the team can agree on: the local clock, corrected by AWS's when they disagree.

Expiry, decisions, revocation cutoffs and audit timestamps compare times written on different
machines. A laptop whose clock runs an hour fast must not expire its colleagues' requests, and
one 30 days ahead must not keep a request pending for 30 days. Every command already asks STS
who the caller is; the ``Date`` header of that response is AWS's time. When the local clock is
off by more than ``SKEW_LIMIT`` from it, local time plus the measured offset is used instead,
and ``on_skew`` is told once (the CLI prints it; this module never writes to a terminal).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from jitctl.timeutil import Clock, SystemClock, format_duration

# Date has one-second resolution and the response took a moment to arrive: small differences
# are noise. Past this, the local clock is wrong enough to matter (requests live minutes).
SKEW_LIMIT = timedelta(seconds=90)


class TrustedClock:
    """``now()`` = the base clock, plus AWS's offset once that offset exceeds ``SKEW_LIMIT``.

    ``sync`` (optional) makes one AWS call whose response feeds ``observe``; it runs at most
    once, on the first ``now()`` before any observation. If it fails, the local clock is used:
    whatever needed AWS (every writer needs the caller's identity) fails on its own.
    """

    def __init__(
        self,
        base: Clock | None = None,
        *,
        sync: Callable[[], object] | None = None,
        on_skew: Callable[[str], None] | None = None,
    ) -> None:
        self.base: Clock = base or SystemClock()
        self.sync = sync
        self.on_skew = on_skew
        self.offset: timedelta | None = None  # server - local, at the last observation
        self._synced = False
        self._told = False

    def now(self) -> datetime:
        if self.offset is None and not self._synced and self.sync is not None:
            self._synced = True
            try:
                self.sync()
            except Exception:  # noqa: BLE001, S110 -- see the class docstring
                pass
        local = self.base.now()
        return local + self.offset if self.offset is not None and self.skewed else local

    @property
    def skewed(self) -> bool:
        return self.offset is not None and abs(self.offset) > SKEW_LIMIT

    def observe(self, server_time: datetime) -> None:
        """Record AWS's time as of this moment (called as the response arrives)."""
        self.offset = server_time - self.base.now()
        if self.skewed and not self._told and self.on_skew is not None:
            self._told = True
            self.on_skew(skew_message(self.offset))

    def after_call(self, http_response: Any = None, **_: Any) -> None:
        """botocore ``after-call`` handler: read the response's ``Date`` header, if any."""
        headers = getattr(http_response, "headers", None) or {}
        server_time = parse_http_date(headers.get("Date") or headers.get("date"))
        if server_time is not None:
            self.observe(server_time)


def parse_http_date(value: str | None) -> datetime | None:
    """An RFC 7231 date (``Sat, 28 Nov 2026 04:00:00 GMT``) as aware UTC, or None."""
    if not value:
        return None
    from email.utils import parsedate_to_datetime  # 17 ms: imported only once AWS answered

    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def http_date(value: datetime) -> str:
    """``value`` as an HTTP ``Date`` (what ``parse_http_date`` reads)."""
    from email.utils import format_datetime

    return format_datetime(value.astimezone(UTC), usegmt=True)


def skew_message(offset: timedelta) -> str:
    way = "behind" if offset > timedelta(0) else "ahead of"
    return (
        f"this machine's clock is {format_duration(abs(offset))} {way} AWS's; "
        "jitctl uses AWS's time for expiry, decisions and the audit log (fix the clock: NTP)"
    )
