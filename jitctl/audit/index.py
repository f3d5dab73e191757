"""The DynamoDB central copy's indexes: `audit log --request`, `--person` and `--since` read the
records they print, not the whole table.

Three global secondary indexes, each sorted by the record's ``ts`` (a string: RFC 3339 UTC
strings sort as their times do):

* ``request-index``: partition ``request_id``, so ``--request ID`` is one Query;
* ``person-index``: partition ``person``, ``--since`` a sort-key condition on ``ts``;
* ``day-index``: partition ``day`` (the UTC date of ``ts``), one Query per day from
  ``--since`` to tomorrow.

``ts`` in the item is the record's time as jitctl writes it (RFC 3339, UTC, ``Z``), so the
index's string order is time order and ``--since`` is an exact sort-key condition.

The key attributes are the item's copy of the record's fields, which anyone who can write the
table could set apart from the record the hash covers. So the index only narrows: every item
found is parsed and filtered again on the record itself (``sink.matches``), and `audit verify
--remote` reports an item whose copies disagree with its record (it would hide from a query).
Items that lack an attribute are simply absent from that index: request-index and
person-index cover the records of older jitctl versions too (their items carry both), the
``day`` attribute is new, so `jitctl init` creates day-index only with a new table.

Equal ``ts`` strings come back from an index in no set order; ``in_order`` sorts each such run
by (chain, seq), so a query prints exactly what a scan sorted by ``sink.sort_key`` prints.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from jitctl.timeutil import parse_rfc3339, rfc3339

REQUEST_INDEX, PERSON_INDEX, DAY_INDEX = "request-index", "person-index", "day-index"
INDEXES = {REQUEST_INDEX: "request_id", PERSON_INDEX: "person", DAY_INDEX: "day"}
SORT = "ts"
# DynamoDB's cap on an index key (a sort key: 1024 bytes); a longer value stays out of the index.
MAX_KEY_BYTES = 1024
# Days a since-only read looks past now: a little clock skew among the writers.
AHEAD = timedelta(days=1)


@dataclass(frozen=True)
class Query:
    """One Query: ``index`` where its partition attribute equals ``key``, ``ts >= since``."""

    index: str
    key: str
    since: str | None


def index_attributes(record: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The item attributes the indexes key on, copied from the record (DynamoDB refuses an
    empty or over-long index key, so such a value is left out: the record is still stored)."""
    ts = sort_ts(record.get("ts"))
    values = {
        "ts": ts,
        "request_id": record.get("request_id"),
        "person": record.get("person"),
        "day": ts[:10] if ts else None,
    }
    return {
        name: {"S": value}
        for name, value in values.items()
        if isinstance(value, str)
        and 0 < len(value.encode("utf-8", "surrogatepass")) <= MAX_KEY_BYTES
    }


def sort_ts(ts: object) -> str | None:
    """The ts the indexes sort by: RFC 3339 in UTC with a Z, as jitctl writes it, so that
    string order is time order and ``--since`` is an exact sort-key condition (a ts written
    with another offset is turned to UTC; one that is no time at all is kept as it is)."""
    if not isinstance(ts, str):
        return None
    try:
        return rfc3339(parse_rfc3339(ts))
    except ValueError:
        return ts


def index_spec(name: str) -> dict[str, Any]:
    return {
        "IndexName": name,
        "KeySchema": [
            {"AttributeName": INDEXES[name], "KeyType": "HASH"},
            {"AttributeName": SORT, "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "ALL"},  # the record and its signature, one read
    }


def attribute_definitions(names: Iterable[str]) -> list[dict[str, str]]:
    wanted = sorted({SORT, *(INDEXES[name] for name in names)})
    return [{"AttributeName": a, "AttributeType": "S"} for a in wanted]


def plan(
    *, since: datetime | None, request_id: str | None, person: str | None, now: datetime
) -> tuple[str, list[Query]] | None:
    """(the index to use, its queries), or None when nothing narrows: scan."""
    # Seconds only: a bound at or before since reads a superset, and `matches` decides.
    bound = rfc3339(since) if since is not None else None
    if request_id:
        return REQUEST_INDEX, [Query(REQUEST_INDEX, request_id, bound)]
    if person:
        return PERSON_INDEX, [Query(PERSON_INDEX, person, bound)]
    if since is None:
        return None
    day, last = since.astimezone(UTC), (now + AHEAD).astimezone(UTC)
    days = []
    while day.date() <= last.date():
        days.append(Query(DAY_INDEX, day.strftime("%Y-%m-%d"), bound))
        day += timedelta(days=1)
    return DAY_INDEX, days


def query_kwargs(query: Query, table: str, limit: int | None) -> dict[str, Any]:
    condition = "#k = :k" + (" AND #t >= :t" if query.since else "")
    values = {":k": {"S": query.key}} | ({":t": {"S": query.since}} if query.since else {})
    kwargs: dict[str, Any] = {
        "TableName": table,
        "IndexName": query.index,
        "KeyConditionExpression": condition,
        "ExpressionAttributeNames": {"#k": INDEXES[query.index]}
        | ({"#t": SORT} if query.since else {}),
        "ExpressionAttributeValues": values,
    }
    return kwargs | ({"Limit": limit} if limit else {})


def in_order(items: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Items already sorted by ts, each run of equal ts sorted by (chain, seq): memory holds
    one such run, never the whole answer."""
    run: list[dict[str, Any]] = []
    for item in items:
        if run and _ts(run[0]) != _ts(item):
            yield from sorted(run, key=_chain_seq)
            run = []
        run.append(item)
    yield from sorted(run, key=_chain_seq)


def _ts(item: dict[str, Any]) -> str:
    return str(item.get(SORT, {}).get("S", ""))


def _chain_seq(item: dict[str, Any]) -> tuple[str, int]:
    return str(item.get("chain", {}).get("S", "")), int(item.get("seq", {}).get("N", "0"))


def disagreement(item: dict[str, Any], record: dict[str, Any]) -> str | None:
    """Which of the item's index attributes differ from its record (None: all agree). A
    missing attribute is fine: older jitctl wrote no ``day``, and it only leaves an index."""
    ts = sort_ts(record.get("ts"))
    expected = {name: record.get(name) for name in ("request_id", "person")}
    expected |= {"ts": ts, "day": ts[:10] if ts else None}
    wrong = [name for name in expected if name in item and item[name].get("S") != expected[name]]
    if not wrong:
        return None
    return (
        f"its index attributes ({', '.join(wrong)}) differ from the record: it hides from queries"
    )
