"""How a request is kept: one JSON document, with fixed-width UTC timestamps.

Both backends store ``to_record(req)`` and read it back with ``from_record``.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

from jitctl.models import AccessRequest
from jitctl.timeutil import parse_rfc3339

# Stored timestamps keep microseconds with a fixed-width fraction, so the text sorts in time
# order (SQLite ORDER BY, the DynamoDB sort key) and a round trip returns the same datetime.
_TIME_FIELDS = (
    "created_at",
    "expires_at",
    "decided_at",
    "issued_at",
    "credentials_expire_at",
    "revoked_at",
    "delivery_failed_at",
    "reviewed_at",
    "claimed_at",
    "planned_end",
    "first_issued_at",
    "extended_until",
)


def ts(value: datetime) -> str:
    return aware(value).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def aware(value: datetime) -> datetime:
    # A naive datetime is a bug in the caller (which timezone?); refuse it instead of guessing.
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: pass an aware UTC datetime")
    return value


def to_record(req: AccessRequest) -> dict[str, Any]:
    """JSON-able dict of every field (the backends store it as one JSON document)."""
    data = dataclasses.asdict(req)
    for name in _TIME_FIELDS:
        if data[name] is not None:
            data[name] = ts(data[name])
    return data


def from_record(data: dict[str, Any]) -> AccessRequest:
    known = {f.name for f in dataclasses.fields(AccessRequest)}
    # Unknown keys (written by a newer jitctl) are ignored.
    values = {k: v for k, v in data.items() if k in known}
    for name in _TIME_FIELDS:
        if values.get(name) is not None:
            values[name] = parse_rfc3339(values[name])
    values["approvers"] = builtins.list(values.get("approvers") or [])
    values["approved_from"] = {
        str(k): str(v) for k, v in dict(values.get("approved_from") or {}).items()
    }
    values["reissued_after"] = builtins.list(values.get("reissued_after") or [])
    values["extensions"] = builtins.list(values.get("extensions") or [])
    return AccessRequest(**values)


def dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def newest_first(reqs: builtins.list[AccessRequest]) -> builtins.list[AccessRequest]:
    return sorted(reqs, key=lambda r: (r.created_at, r.request_id), reverse=True)
