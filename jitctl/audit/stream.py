"""Reading the local audit log record by record, so memory stays flat however long it is.

`audit log`, `audit export` and the broker's `GET /audit` read through ``matching``: one
line at a time, parsed only when it can match. The filters that name a value (``--request``,
``--person``) first look for that value in the raw line (``may_hold``): a JSON string without a
backslash is exactly its UTF-8 bytes, so a line whose record holds the value either contains
those bytes or contains a backslash (an escape, e.g. ensure_ascii's ``\\u00e9``). Lines with
neither cannot match and are skipped unparsed; every other line gets the exact check on the
parsed record (``sink.matches``). No false negatives, whatever wrote the line.

A skipped line is not checked for being a record at all: `audit verify` is the tamper check.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from jitctl.audit.log import iter_records
from jitctl.audit.sink import matches


def needles(request_id: str | None, person: str | None) -> tuple[bytes, ...]:
    """The raw bytes a matching line must contain (unless it holds an escape)."""
    return tuple(v.encode("utf-8", "surrogatepass") for v in (request_id, person) if v)


def may_hold(raw: bytes, wanted: tuple[bytes, ...]) -> bool:
    """Whether the line ``raw`` can hold a record with every value in ``wanted``."""
    if not wanted or b"\\" in raw:
        return True
    return all(value in raw for value in wanted)


def matching(
    path: Path,
    *,
    since: datetime | None = None,
    request_id: str | None = None,
    person: str | None = None,
) -> Iterator[dict[str, Any]]:
    """The records of the log at ``path`` that match the filters, oldest first, one at a
    time; lines that cannot match are never parsed."""
    wanted = needles(request_id, person)
    keep = (lambda raw: may_hold(raw, wanted)) if wanted else None
    for record in iter_records(path, keep):
        if matches(record, since=since, request_id=request_id, person=person):
            yield record
