"""The PagerDuty REST API's documented envelope, shared by the simulator's parts: timestamps,
the error object ``{"error": {"message", "code"}}`` and classic pagination (``limit`` 25 by
default, at most 100, ``offset``, ``more``, ``total``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

DEFAULT_LIMIT = 25
MAX_LIMIT = 100
ERRORS = {  # status -> (message, PagerDuty error code)
    400: ("Invalid Input Provided", 2001),
    401: ("Authentication failed", 2006),
    403: ("Access Denied", 2010),
    404: ("Not Found", 2100),
    429: ("Rate Limit Exceeded", 2020),
}
Answer = tuple[int, dict[str, str], Any]  # status, extra headers, JSON body


def iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def error(status: int, message: str | None = None, code: int = 2000) -> Answer:
    message, code = (message, code) if message else ERRORS.get(status, ("Error", 2000))
    return status, {}, {"error": {"message": message, "code": code}}


def page(wrapper: str, items: list[Any], query: dict[str, list[str]]) -> Answer:
    try:
        limit = min(max(int(query.get("limit", [DEFAULT_LIMIT])[0]), 1), MAX_LIMIT)
        offset = max(int(query.get("offset", ["0"])[0]), 0)
    except ValueError:
        return error(400)
    total = len(items) if query.get("total", ["false"])[0] == "true" else None
    page = items[offset : offset + limit]
    more = offset + limit < len(items)
    return 200, {}, {wrapper: page, "limit": limit, "offset": offset, "more": more, "total": total}
