"""The central audit trail: every record of every person's local log, copied to DynamoDB
and/or S3 so the team has one place to read and verify (issue 5).

* ``DynamoSink``: one item per record, keyed by ``chain`` (partition) and ``seq`` (sort), the
  record as the JSON string ``record`` plus ``ts``, ``event``, ``request_id`` and ``person``
  for people browsing the table. jitctl never reads those four: anyone who can write the table
  can change them without touching the hash, so `audit log` filters on the record itself.
  On-demand billing; ``jitctl init`` creates the table.
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
    ``records(since=, request_id=, person=, now=)`` (matching records, in no order).
    ``name`` ("dynamodb:TABLE", "s3:BUCKET/PREFIX") is what ``audit_sink_failed`` names."""

    SERVICE = ""
    MISSING: tuple[str, ...] = ()  # error codes meaning "the table/bucket does not exist"
    HINT = ""
    name = ""
    signer: Signer | None = None  # set by open_sinks when [audit] kms_key is configured

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
    ) -> list[dict[str, Any]]:
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
    ) -> None:
        super().__init__(client_factory)
        self.table = table
        self.name = f"dynamodb:{table}"
        self._sleep = sleep
        self._poll_interval = poll_interval

    def init(self) -> None:
        """Create the table (on demand), wait until ACTIVE. Harmless twice."""
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
                ],
                DeletionProtectionEnabled=True,  # an audit trail should outlive a stray delete
            )
        except Exception as exc:
            if error_code(exc) != "ResourceInUseException":  # "it exists": checked below
                raise
        deadline = time.monotonic() + ACTIVE_TIMEOUT
        while True:
            table = self._call("describe_table", "cannot describe", TableName=self.table)["Table"]
            keys = [(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]]
            if keys != [("chain", "HASH"), ("seq", "RANGE")]:
                raise ConfigError(
                    f"DynamoDB table {self.table} exists but is keyed on {keys}, not chain/seq",
                    "point [audit] table at a table jitctl created (not the request store's)",
                )
            if table["TableStatus"] == "ACTIVE":
                return
            if time.monotonic() > deadline:
                raise AwsUnavailable(
                    f"DynamoDB table {self.table} is not ACTIVE after {ACTIVE_TIMEOUT:.0f}s",
                    "run `jitctl init` again later",
                )
            self._sleep(self._poll_interval)

    def put(self, record: dict[str, Any]) -> None:
        item = {
            "chain": {"S": record["chain"]},
            "seq": {"N": str(record["seq"])},
            "record": {"S": record_text(record)},
            **{
                name: {"S": record[name]}
                for name in ("ts", "event", "request_id", "person")
                if isinstance(record.get(name), str)
            },
        }
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
        while True:
            resp = self._call("scan", "cannot read the audit trail", **kwargs)
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
            yield CentralEntry(
                chain,
                seq,
                item.get("record", {}).get("S", ""),
                f"{self.name} chain {chain} seq {seq}",
                sig=item.get("sig", {}).get("S"),
                key_id=item.get("key_id", {}).get("S"),
            )

    def records(
        self, *, since: datetime | None, request_id: str | None, person: str | None, now: datetime
    ) -> list[dict[str, Any]]:
        # Filtered here, on the record the hash covers, never on the item's top-level
        # attributes (a FilterExpression reads the whole table anyway: it saves no reads).
        out = []
        for item in self._scan():
            record = load_record(item.get("record", {}).get("S", ""), self.name)
            if matches(record, since=since, request_id=request_id, person=person):
                out.append(record)
        return out


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


def sort_key(record: dict[str, Any]) -> tuple[str, str, int]:
    seq = record.get("seq")
    return (str(record.get("ts")), str(record.get("chain")), seq if isinstance(seq, int) else 0)


def one_line(exc: BaseException) -> str:
    """An error as one short line for the local log: no newlines, no escapes, no secrets
    (AWS error messages name resources and codes, never credentials)."""
    text = str(exc) or type(exc).__name__
    text = clean(text).strip()
    return text if len(text) <= _ERROR_MAX else text[: _ERROR_MAX - 1] + "…"
