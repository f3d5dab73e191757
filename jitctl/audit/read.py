"""Reading the audit trail for people: `jitctl audit log` and `export`, here or in the broker."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jitctl.audit.sink import Sink
    from jitctl.context import Environment


PAGE = 1000  # records per page of the broker's GET /v1/audit (the client's MAX_RESPONSE bounds it)
# An AccessService's audit_records(since=, request_id=, person=, local=).
Reader = Callable[..., Iterable[dict[str, Any]]]


def audit_page(read: Reader, query: Mapping[str, str], limit: int | None) -> dict[str, Any]:
    """The broker's answer to ``GET /v1/audit?query``: ``records`` (with a ``limit``, at most
    that many after the cursor ``after``, and ``next`` when more follow)."""
    after = cursor(query.get("after"))
    since = after[0] if after else query.get("since")  # the cursor's record matched since
    records = read(
        since=since, request_id=query.get("request"), person=query.get("person"), local=False
    )
    if limit is None:
        return {"records": list(records)}
    found, more = page_after(iter(records), after, limit)
    return {"records": found, **({"next": more} if more else {})}


def page_after(
    records: Iterator[dict[str, Any]], after: tuple[str, str, int] | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of ``records`` (in sort_key order): at most ``limit`` of those after the
    cursor ``after``, and the cursor of the page's last record when more follow (else None).
    The broker reads no further than one record past the page."""
    import json

    from jitctl.audit.sink import sort_key

    found: list[dict[str, Any]] = []
    for record in records:
        if after is not None and sort_key(record) <= after:
            continue  # this page's query starts at the cursor's second: skip up to the cursor
        if len(found) == limit:
            return found, json.dumps(list(sort_key(found[-1])))
        found.append(record)
    return found, None


def cursor(text: str | None) -> tuple[str, str, int] | None:
    """The ``after`` a client sends back: its own data, only ever a place to resume from."""
    import json

    from jitctl.errors import UsageError

    if not text:
        return None
    try:
        ts, chain, seq = json.loads(text)
    except (ValueError, TypeError):
        ts = None
    if not (isinstance(ts, str) and isinstance(chain, str) and type(seq) is int):
        raise UsageError("the audit page cursor `after` is not one this broker gave out")
    return ts, chain, seq


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
