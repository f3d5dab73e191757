"""The central audit trail: every record of every person's local log, copied to DynamoDB
and/or S3 so the team has one place to read and verify (issue 5).

* ``DynamoSink``: one item per record, keyed by ``chain`` (partition) and ``seq`` (sort), the
  record as the JSON string ``record`` plus ``ts``, ``event``, ``request_id``, ``person`` and
  ``day``, which the table's indexes key on (jitctl.audit.index). They only narrow what is
  read: anyone who can write the table can change them without touching the hash, so `audit
  log` filters on the record itself. On-demand billing; ``jitctl init`` creates the table.
* ``S3Sink``: one object per record at ``{prefix}YYYY/MM/DD/{chain}/{seq:010d}.json`` (the
  record's UTC date), server-side encryption requested on every PutObject, and with ``[audit]
  retention_days`` an Object Lock retention, so nobody can delete or shorten it (a new version
  can still be put over it; verification reads every version and reports that).

Both write conditionally, so jitctl never overwrites a record already there. With ``[audit]
kms_key`` each record is signed (jitctl.audit.signing) and the signature stored beside it:
DynamoDB attributes ``sig`` and ``key_id``, S3 metadata ``jitctl-sig`` and ``jitctl-key-id``.
How records are delivered to the sinks (and what a failure means) is
``jitctl.audit_trail.AuditTrail``.

boto3/botocore are imported inside functions: ``jitctl --help`` must not pay for them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from jitctl.audit.central import CentralEntry
from jitctl.audit.log import record_text
from jitctl.audit.signing import Signature, Signer
from jitctl.aws import DENIED, error_code
from jitctl.errors import AuditError, AuditTampered, AwsUnavailable, ConfigError, JitctlError
from jitctl.sanitize import clean
from jitctl.timeutil import parse_rfc3339

ClientFactory = Callable[[str], Any]
PROBE = "jitctl-doctor-probe"  # the key `jitctl doctor` tries (and fails) to write
ACTIVE_TIMEOUT = 600.0  # seconds init() waits for the table
_ERROR_MAX = 300  # characters of a sink error kept in the local log and in messages


class Sink:
    """A central copy of the audit records. Subclasses provide ``init()`` (create or check),
    ``put(record)`` (never overwrites: AuditError if it is there already), ``entries()``
    (every record with the key it is held under, for verify_central) and
    ``records(since=, request_id=, person=, now=)`` (matching records, one at a time, in
    ``sort_key`` order).
    ``name`` ("dynamodb:TABLE", "s3:BUCKET/PREFIX") is what ``audit_sink_failed`` names."""

    SERVICE = ""
    MISSING: tuple[str, ...] = ()  # error codes meaning "the table/bucket does not exist"
    HINT = ""
    name = ""
    signer: Signer | None = None  # set by open_sinks when [audit] kms_key is configured
    # Whether `audit log` may read through the table's indexes. Their keys are item attributes
    # any writer can set apart from the record: a rewritten one hides the item from a query.
    # Only the broker sets this (broker/build.py): there nobody but the broker's role writes
    # the table. In direct mode every requester does, so the filters scan (security.md).
    trust_index = False

    def __init__(self, client_factory: ClientFactory) -> None:
        self._client_factory = client_factory
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._client_factory(self.SERVICE)
        return self._client

    def _call(self, op: str, action: str, *, keep: tuple[str, ...] = (), **kwargs: Any) -> Any:
        """One API call; failures become one clear JitctlError, except the codes in ``keep``."""
        from jitctl.aws import translate_error, whereabouts

        try:
            return getattr(self.client, op)(**kwargs)
        except Exception as exc:
            code = error_code(exc)
            if code in keep:
                raise
            if code in self.MISSING:
                place = whereabouts(self.client, self._client_factory)
                raise ConfigError(
                    f"{action} ({self.name}): it does not exist {place}", self.HINT
                ) from exc
            raise translate_error(exc, f"{action} ({self.name})") from exc

    def signature(self, record: dict[str, Any]) -> Signature | None:
        """The record's signature when signing is configured (one KMS call for all sinks)."""
        return self.signer.sign(record) if self.signer is not None else None

    # What every sink provides (DynamoSink, S3Sink), declared once so callers type-check.
    def init(self) -> None:
        raise NotImplementedError

    def put(self, record: dict[str, Any]) -> None:
        raise NotImplementedError

    def writable(self) -> bool:
        raise NotImplementedError

    def entries(self) -> Iterator[CentralEntry]:
        raise NotImplementedError

    def records(
        self, *, since: datetime | None, request_id: str | None, person: str | None, now: datetime
    ) -> Iterator[dict[str, Any]]:
        raise NotImplementedError


# ------------------------------------------------------------------ DynamoDB


class DynamoSink(Sink):
    SERVICE = "dynamodb"
    MISSING = ("ResourceNotFoundException",)
    HINT = (
        "if the audit table is in another region, set [audit] region; else `jitctl init` makes it"
    )

    def __init__(
        self,
        table: str,
        client_factory: ClientFactory,
        *,
        sleep: Callable[[float], None] = time.sleep,
        poll_interval: float = 2.0,
        page_limit: int | None = None,
    ) -> None:
        super().__init__(client_factory)
        self.table = table
        self.name = f"dynamodb:{table}"
        self._sleep = sleep
        self._poll_interval = poll_interval
        self.page_limit = page_limit  # items per Query/Scan page (None: DynamoDB's 1 MB)

    def init(self) -> None:
        """Create the table (on demand) with its indexes, wait until ACTIVE; on a table an
        older jitctl made, add request-index and person-index. Harmless twice."""
        from jitctl.audit.index import INDEXES, attribute_definitions, index_spec

        try:
            self._call(
                "create_table",
                "cannot create the audit table",
                keep=("ResourceInUseException",),
                TableName=self.table,
                BillingMode="PAY_PER_REQUEST",
                KeySchema=[
                    {"AttributeName": "chain", "KeyType": "HASH"},
                    {"AttributeName": "seq", "KeyType": "RANGE"},
                ],
                AttributeDefinitions=[
                    {"AttributeName": "chain", "AttributeType": "S"},
                    {"AttributeName": "seq", "AttributeType": "N"},
                    *attribute_definitions(INDEXES),
                ],
                GlobalSecondaryIndexes=[index_spec(name) for name in INDEXES],
                DeletionProtectionEnabled=True,  # an audit trail should outlive a stray delete
            )
        except Exception as exc:
            if error_code(exc) != "ResourceInUseException":  # "it exists": checked below
                raise
            self._add_indexes()
        self._wait_active()

    def _add_indexes(self) -> None:
        """The indexes whose key every item already carries (one per UpdateTable, on an ACTIVE
        table); not day-index, which the items of an older jitctl lack (they would hide)."""
        from jitctl.audit.index import (
            PERSON_INDEX,
            REQUEST_INDEX,
            attribute_definitions,
            index_spec,
        )

        for name in (REQUEST_INDEX, PERSON_INDEX):
            if name not in self._wait_active():
                self._call(
                    "update_table",
                    "cannot add an index to the audit table",
                    TableName=self.table,
                    AttributeDefinitions=attribute_definitions([name]),
                    GlobalSecondaryIndexUpdates=[{"Create": index_spec(name)}],
                )

    def _wait_active(self) -> dict[str, str]:
        """The table's indexes (name -> status) once the table and every index is ACTIVE."""
        deadline = time.monotonic() + ACTIVE_TIMEOUT
        while True:
            indexes = self.indexes()
            if all(status == "ACTIVE" for status in indexes.values()):
                return indexes
            if time.monotonic() > deadline:
                raise AwsUnavailable(
                    f"DynamoDB table {self.table} is not ACTIVE after {ACTIVE_TIMEOUT:.0f}s",
                    "run `jitctl init` again later",
                )
            self._sleep(self._poll_interval)

    def indexes(self) -> dict[str, str]:
        """Index name -> status, "" for the table itself (checked to be jitctl's audit table)."""
        table = self._call("describe_table", "cannot describe", TableName=self.table)["Table"]
        keys = [(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]]
        if keys != [("chain", "HASH"), ("seq", "RANGE")]:
            raise ConfigError(
                f"DynamoDB table {self.table} exists but is keyed on {keys}, not chain/seq",
                "point [audit] table at a table jitctl created (not the request store's)",
            )
        found = table.get("GlobalSecondaryIndexes", [])
        return {"": table["TableStatus"], **{ix["IndexName"]: ix["IndexStatus"] for ix in found}}

    def put(self, record: dict[str, Any]) -> None:
        from jitctl.audit.index import index_attributes

        item = {
            "chain": {"S": record["chain"]},
            "seq": {"N": str(record["seq"])},
            "record": {"S": record_text(record)},
            **index_attributes(record),
        }
        if isinstance(record.get("event"), str):
            item["event"] = {"S": record["event"]}
        signature = self.signature(record)
        if signature is not None:
            item["sig"], item["key_id"] = {"S": signature.sig}, {"S": signature.key_id}
        try:
            self._call(
                "put_item",
                "cannot write the audit record",
                keep=("ConditionalCheckFailedException",),
                TableName=self.table,
                Item=item,
                ConditionExpression="attribute_not_exists(#c)",
                ExpressionAttributeNames={"#c": "chain"},
            )
        except Exception as exc:
            if isinstance(exc, JitctlError):
                raise
            raise AuditError(
                f"DynamoDB table {self.table} already holds chain {record['chain']} seq "
                f"{record['seq']}; not overwritten"
            ) from exc

    def _scan(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        # Consistent: a record written a moment ago must be seen by verify --remote.
        kwargs = {"TableName": self.table, "ConsistentRead": True, **kwargs}
        limit = {"Limit": self.page_limit} if self.page_limit else {}
        yield from self._pages("scan", kwargs | limit)

    def _pages(self, op: str, kwargs: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every item of a Scan or Query, page by page (LastEvaluatedKey)."""
        while True:
            resp = self._call(op, "cannot read the audit trail", **kwargs)
            yield from resp.get("Items", [])
            if "LastEvaluatedKey" not in resp:
                return
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def writable(self) -> bool:
        """Whether the caller may put records here, found without writing one: a PutItem whose
        condition can never hold fails on its condition when allowed, on IAM when not."""
        try:
            self._call(
                "put_item",
                "cannot probe the audit table",
                keep=("ConditionalCheckFailedException", *DENIED),
                TableName=self.table,
                Item={"chain": {"S": PROBE}, "seq": {"N": "0"}},
                ConditionExpression="attribute_exists(#c) AND attribute_not_exists(#c)",
                ExpressionAttributeNames={"#c": "chain"},
            )
        except Exception as exc:
            if error_code(exc) in DENIED:
                return False
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
        return True

    def entries(self) -> Iterator[CentralEntry]:
        for item in self._scan():
            chain, seq = item["chain"]["S"], int(item["seq"]["N"])
            where = f"{self.name} chain {chain} seq {seq}"
            text = item.get("record", {}).get("S", "")
            problem = _index_problem(item, text)
            yield CentralEntry(
                chain,
                seq,
                text,
                where,
                sig=item.get("sig", {}).get("S"),
                key_id=item.get("key_id", {}).get("S"),
                index_problem=f"{where}: {problem}" if problem else None,
            )

    def records(
        self, *, since: datetime | None, request_id: str | None, person: str | None, now: datetime
    ) -> Iterator[dict[str, Any]]:
        """Through an index when one narrows the read (jitctl.audit.index), else a scan. Either
        way filtered on the record the hash covers, never on the item's attributes."""
        items = self._narrowed(since=since, request_id=request_id, person=person, now=now)
        found = (self._record(item) for item in (items if items is not None else self._scan()))
        kept = (r for r in found if matches(r, since=since, request_id=request_id, person=person))
        # An index answers in order; a scan in none: what it kept, sorted.
        return kept if items is not None else iter(sorted(kept, key=sort_key))

    def _record(self, item: dict[str, Any]) -> dict[str, Any]:
        return load_record(item.get("record", {}).get("S", ""), self.name)

    def _narrowed(
        self, *, since: datetime | None, request_id: str | None, person: str | None, now: datetime
    ) -> Iterator[dict[str, Any]] | None:
        """The items an index finds, in order; None when no trusted, ACTIVE index narrows."""
        from jitctl.audit.index import in_order, plan, query_kwargs

        chosen = plan(since=since, request_id=request_id, person=person, now=now)
        if chosen is None or not self.trust_index or self.indexes().get(chosen[0]) != "ACTIVE":
            return None  # nothing to narrow by, or a table made before the index (it scans)
        pages = (
            self._pages("query", query_kwargs(q, self.table, self.page_limit)) for q in chosen[1]
        )
        return in_order(item for page in pages for item in page)


# ------------------------------------------------------------------ helpers


def load_record(text: str, where: str) -> dict[str, Any]:
    try:
        record = json.loads(text)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        raise AuditTampered(f"{where}: not a JSON record", "run `jitctl audit verify --remote`")
    return record


def matches(
    record: dict[str, Any],
    *,
    since: datetime | None = None,
    request_id: str | None = None,
    person: str | None = None,
) -> bool:
    """The `audit log` filters, for records already read."""
    if request_id is not None and record.get("request_id") != request_id:
        return False
    if person is not None and record.get("person") != person:
        return False
    if since is not None:
        try:
            return parse_rfc3339(str(record.get("ts"))) >= since
        except ValueError:
            return False
    return True


def _index_problem(item: dict[str, Any], text: str) -> str | None:
    """An item whose index attributes disagree with its record (verify reports it)."""
    from jitctl.audit.index import disagreement

    try:
        record = load_record(text, "")
    except AuditTampered:
        return None  # verify_central reports the record itself
    return disagreement(item, record)


def sort_key(record: dict[str, Any]) -> tuple[str, str, int]:
    seq = record.get("seq")
    return (str(record.get("ts")), str(record.get("chain")), seq if isinstance(seq, int) else 0)


def one_line(exc: BaseException) -> str:
    """An error as one short line for the local log: no newlines, no escapes, no secrets
    (AWS error messages name resources and codes, never credentials)."""
    text = str(exc) or type(exc).__name__
    text = clean(text).strip()
    return text if len(text) <= _ERROR_MAX else text[: _ERROR_MAX - 1] + "…"
