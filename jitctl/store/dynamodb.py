"""The request store in one DynamoDB table: for teams whose requesters and approvers are on
different machines.

Item layout: ``request_id`` (partition key), the filterable fields as top-level attributes,
``version`` for optimistic concurrency, ``body`` (the whole record as JSON, so new model fields
need no migration), ``ttl`` (epoch seconds; DynamoDB deletes the item 90 days after creation)
and ``pending_pk`` = "PENDING" only while the request is pending. Two global indexes:

* ``pending-index`` (pending_pk, created_at): SPARSE, items without pending_pk are not in it,
  so listing pending requests reads only pending requests, however large the table grows.
* ``requester-index`` (requester, created_at): "my requests" without a Scan.
* ``status-index`` (status, created_at): plain "all requests", newest first, without a Scan:
  each status's partition read a few items at a time and merged, so what is read is about
  what is printed. A table made before it (until `jitctl init` adds it) is scanned.

boto3/botocore are imported inside functions: ``jitctl --help`` must not pay for them.
"""

from __future__ import annotations

import builtins
import json
import random
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from jitctl.errors import AwsUnavailable, ConfigError
from jitctl.models import PENDING, STATUSES, AccessRequest
from jitctl.store.base import (
    BaseStore,
    DuplicateRequest,
    Planner,
    StoreError,
    check_new,
    derive,
    not_found,
)
from jitctl.store.dynamodb_calls import Conflict, Expected, call
from jitctl.store.records import dumps, from_record, newest_first, to_record, ts

PENDING_INDEX = "pending-index"
REQUESTER_INDEX = "requester-index"
STATUS_INDEX = "status-index"
PENDING_PK = "PENDING"
TTL_ATTRIBUTE = "ttl"
RETENTION = timedelta(days=90)
MAX_ATTEMPTS = 8  # read-modify-write retries when another writer changed the item under us
ACTIVE_TIMEOUT = 600.0  # seconds init() waits for the table and its indexes

_INDEXES: dict[str, tuple[str, str]] = {
    PENDING_INDEX: ("pending_pk", "created_at"),
    REQUESTER_INDEX: ("requester", "created_at"),
    STATUS_INDEX: ("status", "created_at"),
}


class DynamoStore(BaseStore):
    def __init__(
        self,
        table: str,
        client_factory: Callable[[str], Any],
        *,
        sleep: Callable[[float], None] = time.sleep,
        poll_interval: float = 2.0,
    ) -> None:
        self.table = table
        self._client_factory = client_factory
        self._client: Any = None
        self._sleep = sleep
        self._poll_interval = poll_interval
        # Items DynamoDB read (ScannedCount) in the last list(): a benchmark checks that
        # list(pending_only=True) reads the pending requests and nothing else.
        self.last_items_read = 0

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._client_factory("dynamodb")
        return self._client

    def _call(self, op: str, *, allow: tuple[str, ...] = (), **kwargs: Any) -> dict[str, Any]:
        """Every DynamoDB call goes through here: dynamodb_calls translates its failures."""
        return call(lambda: self.client, self.table, op, allow=allow, where=self.where, **kwargs)

    def where(self) -> str:
        """ "in REGION (account ID)": where this table is looked for."""
        from jitctl.aws import whereabouts

        return whereabouts(self.client, self._client_factory)

    # ------------------------------------------------------------ init

    def init(self) -> None:
        """Create the table and its indexes, wait until ACTIVE, enable TTL. Harmless twice."""
        attributes = {"request_id", *(a for pair in _INDEXES.values() for a in pair)}
        try:
            self._call(
                "create_table",
                allow=("ResourceInUseException",),
                TableName=self.table,
                BillingMode="PAY_PER_REQUEST",  # on demand: requests are rare and bursty
                KeySchema=[{"AttributeName": "request_id", "KeyType": "HASH"}],
                AttributeDefinitions=[
                    {"AttributeName": name, "AttributeType": "S"} for name in sorted(attributes)
                ],
                GlobalSecondaryIndexes=[_index_spec(name) for name in _INDEXES],
            )
        except Expected:
            self._add_missing_indexes()  # it exists already, maybe made by an older jitctl
        self._wait_active()
        self._enable_ttl()

    def _add_missing_indexes(self) -> None:
        table = self._wait_active()
        keys = [k["AttributeName"] for k in table["KeySchema"]]
        if keys != ["request_id"]:
            raise ConfigError(
                f"DynamoDB table {self.table} exists but is keyed on {keys}, not request_id",
                "point [store] table at a table jitctl created",
            )
        have = {ix["IndexName"] for ix in table.get("GlobalSecondaryIndexes", [])}
        # DynamoDB creates one index per UpdateTable call, and only on an ACTIVE table.
        for name in _INDEXES:
            if name not in have:
                self._call(
                    "update_table",
                    TableName=self.table,
                    AttributeDefinitions=[
                        {"AttributeName": a, "AttributeType": "S"} for a in _INDEXES[name]
                    ],
                    GlobalSecondaryIndexUpdates=[{"Create": _index_spec(name)}],
                )
                self._wait_active()

    def _wait_active(self) -> dict[str, Any]:
        deadline = time.monotonic() + ACTIVE_TIMEOUT
        while True:
            table: dict[str, Any] = self._call("describe_table", TableName=self.table)["Table"]
            statuses = [table["TableStatus"]]
            statuses += [ix.get("IndexStatus") for ix in table.get("GlobalSecondaryIndexes", [])]
            if all(s == "ACTIVE" for s in statuses):
                return table
            if time.monotonic() > deadline:
                raise AwsUnavailable(
                    f"DynamoDB table {self.table} is not ACTIVE after {ACTIVE_TIMEOUT:.0f}s",
                    "run `jitctl init` again later",
                )
            self._sleep(self._poll_interval)

    def _enable_ttl(self) -> None:
        desc = self._call("describe_time_to_live", TableName=self.table)
        ttl = desc.get("TimeToLiveDescription", {})
        if ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
            if ttl.get("AttributeName") != TTL_ATTRIBUTE:
                raise ConfigError(
                    f"DynamoDB table {self.table} has TTL on {ttl.get('AttributeName')!r}, "
                    f"not {TTL_ATTRIBUTE!r}"
                )
            return
        try:
            self._call(
                "update_time_to_live",
                allow=("ValidationException",),
                TableName=self.table,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
            )
        except Expected as exc:
            # Another `jitctl init` enabled it between our describe and our update.
            if "already enabled" not in exc.message.lower():
                raise StoreError(f"cannot enable TTL on {self.table}: {exc}") from exc

    # ------------------------------------------------------------ reads and writes

    def create(self, req: AccessRequest) -> None:
        check_new(req)
        try:
            self._call(
                "put_item",
                TableName=self.table,
                Item=_item(req),
                ConditionExpression="attribute_not_exists(request_id)",
            )
        except Conflict:
            raise DuplicateRequest(f"request {req.request_id} already exists") from None

    def get(self, request_id: str, *, now: datetime | None = None) -> AccessRequest | None:
        item = self._read(request_id)
        return None if item is None else derive(_load(item), now)

    def _read(self, request_id: str) -> dict[str, Any] | None:
        # Consistent read: a transition must never plan on a stale copy of the item.
        resp = self._call(
            "get_item",
            TableName=self.table,
            Key={"request_id": {"S": request_id}},
            ConsistentRead=True,
        )
        return resp.get("Item")

    def list(
        self,
        *,
        pending_only: bool = False,
        requester: str | None = None,
        role: str | None = None,
        limit: int = 100,
        now: datetime | None = None,
    ) -> builtins.list[AccessRequest]:
        self.last_items_read = 0
        if limit <= 0:
            return []
        filters: dict[str, str] = {}
        if role is not None:
            filters["role"] = role
        if pending_only:
            # Query the sparse index: only pending items are in it. Global indexes are
            # eventually consistent, so a request created a moment ago may show up a moment late.
            if requester is not None:
                filters["requester"] = requester
            kwargs = _key_query(PENDING_INDEX, "pending_pk", PENDING_PK)
        elif requester is not None:
            kwargs = _key_query(REQUESTER_INDEX, "requester", requester)
        else:
            return [derive(r, now) for r in self._newest(filters, limit)]
        out: builtins.list[AccessRequest] = []
        for item in self._pages("query", filters, limit, kwargs):
            req = derive(_load(item), now)
            if pending_only and req.status != PENDING:
                # Lapsed at `now`: reported expired, never written by a reader, so it stays in
                # the pending index until a transition (e.g. the requester's wait) records it.
                continue
            out.append(req)
            if len(out) >= limit:
                break
        return out

    def _newest(self, filters: dict[str, str], limit: int) -> builtins.list[AccessRequest]:
        """The newest ``limit`` requests: every status's partition of the status index, newest
        first, read a page of a few items at a time and merged (heapq.merge pulls lazily)."""
        import heapq
        from itertools import islice

        page = limit // len(STATUSES) + 1
        # No such index: ValidationException from DynamoDB, ResourceNotFoundException from
        # moto. A missing table fails the Scan below with its own clear error.
        missing = ("ValidationException", "ResourceNotFoundException")
        streams = [
            map(_load, self._pages("query", filters, page, _status_query(s), allow=missing))
            for s in STATUSES
        ]
        merged = heapq.merge(*streams, key=lambda r: (r.created_at, r.request_id), reverse=True)
        try:
            return builtins.list(islice(merged, limit))
        except Expected:
            pass
        # A table made before the status index: Scan it all and sort here (TTL keeps it to
        # ~90 days); `jitctl init` adds the index.
        self.last_items_read = 0
        items = self._pages("scan", filters, None, {"TableName": self.table})
        return newest_first([_load(i) for i in items])[:limit]

    def _pages(
        self,
        op: str,
        filters: dict[str, str],
        limit: int | None,
        kwargs: dict[str, Any],
        allow: tuple[str, ...] = (),
    ) -> Iterator[dict[str, Any]]:
        """Items of a Query/Scan, page by page, counting what DynamoDB read."""
        kwargs = {**kwargs, "TableName": self.table}
        if filters:
            names = {f"#f{i}": k for i, k in enumerate(filters)}
            kwargs["FilterExpression"] = " AND ".join(f"#f{i} = :f{i}" for i in range(len(filters)))
            kwargs.setdefault("ExpressionAttributeNames", {}).update(names)
            kwargs.setdefault("ExpressionAttributeValues", {}).update(
                {f":f{i}": {"S": v} for i, v in enumerate(filters.values())}
            )
        elif limit is not None:
            kwargs["Limit"] = limit  # no filter: each item read is an item returned
        while True:
            resp = self._call(op, allow=allow, **kwargs)
            self.last_items_read += int(resp.get("ScannedCount", resp.get("Count", 0)))
            yield from resp.get("Items", [])
            if "LastEvaluatedKey" not in resp:
                return
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def _transition(self, request_id: str, plan: Planner) -> AccessRequest:
        for attempt in range(MAX_ATTEMPTS):
            item = self._read(request_id)
            if item is None:
                raise not_found(request_id)
            current = _load(item)
            # Re-planned on every attempt: if the winner moved the request on, the plan raises
            # (e.g. "already approved") instead of retrying a transition that is now illegal.
            step = plan(current)
            if step.write is None:
                result = current
            else:
                result = step.write
                result.version = current.version + 1
                try:
                    self._call(
                        "put_item",
                        TableName=self.table,
                        Item=_item(result, step.extra),
                        # The full item is replaced: leaving pending drops pending_pk, and with
                        # it the item's entry in the sparse pending index.
                        ConditionExpression="#v = :v AND #s = :s",
                        ExpressionAttributeNames={"#v": "version", "#s": "status"},
                        ExpressionAttributeValues={
                            ":v": {"N": str(current.version)},
                            ":s": {"S": current.status},
                        },
                    )
                except Conflict:
                    # Jittered backoff so racing writers do not collide again in lockstep.
                    self._sleep(random.uniform(0, 0.05 * (attempt + 1)))  # noqa: S311
                    continue
            if step.error is not None:
                raise step.error
            return result
        raise StoreError(f"request {request_id} kept changing while being updated; try again")


def _index_spec(name: str) -> dict[str, Any]:
    pk, sk = _INDEXES[name]
    return {
        "IndexName": name,
        "KeySchema": [
            {"AttributeName": pk, "KeyType": "HASH"},
            {"AttributeName": sk, "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "ALL"},  # list() needs whole records, no second read
    }


def _status_query(status: str) -> dict[str, Any]:
    return _key_query(STATUS_INDEX, "status", status)


def _key_query(index: str, key: str, value: str) -> dict[str, Any]:
    return {
        "IndexName": index,
        "KeyConditionExpression": "#k = :k",
        "ExpressionAttributeNames": {"#k": key},
        "ExpressionAttributeValues": {":k": {"S": value}},
        "ScanIndexForward": False,  # newest first
    }


def _item(req: AccessRequest, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    record = to_record(req) | (extra or {})
    item: dict[str, Any] = {
        "request_id": {"S": req.request_id},
        "status": {"S": req.status},
        "requester": {"S": req.requester},
        "role": {"S": req.role},
        "created_at": {"S": ts(req.created_at)},
        "expires_at": {"S": ts(req.expires_at)},
        "version": {"N": str(req.version)},
        TTL_ATTRIBUTE: {"N": str(int((req.created_at + RETENTION).timestamp()))},
        "body": {"S": dumps(record)},
    }
    if req.status == PENDING:
        item["pending_pk"] = {"S": PENDING_PK}
    return item


def _load(item: dict[str, Any]) -> AccessRequest:
    req = from_record(json.loads(item["body"]["S"]))
    req.version = int(item["version"]["N"])  # the attribute the conditions check is the truth
    return req
