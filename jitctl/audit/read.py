"""Reading the audit trail for people: `jitctl audit log` and `export`, here or in the broker."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jitctl.audit.sink import Sink
    from jitctl.context import Environment


def since_time(text: str | None, now: datetime) -> datetime | None:
    """'2h' (newer than now minus 2h) or an RFC 3339 timestamp."""
    if text is None:
        return None
    from jitctl.errors import UsageError
    from jitctl.timeutil import parse_duration, parse_rfc3339

    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        return parse_rfc3339(text)
    except ValueError:
        raise UsageError(
            f"--since {text!r} is neither a duration nor a timestamp",
            "use e.g. --since 2h or --since 2026-11-21T04:00:00Z",
        ) from None


def read_audit(
    env: Environment,
    *,
    since: str | None,
    request_id: str | None = None,
    person: str | None = None,
    local: bool = False,
) -> Iterator[dict[str, Any]]:
    """Matching records, oldest first, one at a time: from the central copy when configured,
    else the local log (read line by line: memory flat however long it is)."""
    from jitctl.audit.stream import matching

    now = env.clock.now()
    after = since_time(since, now)
    person = person.lower() if person else None
    sinks: list[Sink] = list(env.audit.sinks) if env.config.audit.central and not local else []
    if sinks:  # the table when there is one (its indexes narrow the read), else the bucket
        return sinks[0].records(since=after, request_id=request_id, person=person, now=now)
    return matching(env.config.audit_path, since=after, request_id=request_id, person=person)
