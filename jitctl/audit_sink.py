"""The central audit trail: every record of every person's local log, copied to DynamoDB
and/or S3 so the team has one place to read and verify (issue 5).

* ``DynamoSink``: one item per record, keyed by ``chain`` (partition) and ``seq`` (sort), the
  record as the JSON string ``record`` plus ``ts``, ``event``, ``request_id`` and ``person``
  for filtering. On-demand billing; ``jitctl init`` creates the table.
* ``S3Sink``: one object per record at ``{prefix}YYYY/MM/DD/{chain}/{seq:010d}.json`` (the
  record's UTC date), server-side encryption requested on every PutObject.

Both write conditionally, so a record already there is never overwritten. How records are
delivered to them (and what a failure means) is ``jitctl.audit_trail.AuditTrail``.

boto3/botocore are imported inside functions: ``jitctl --help`` must not pay for them.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from jitctl.audit_central import CentralEntry
from jitctl.errors import AuditError, AuditTampered, AwsUnavailable, ConfigError, JitctlError
from jitctl.sanitize import clean
from jitctl.timeutil import parse_rfc3339, rfc3339

ClientFactory = Callable[[str], Any]
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
        from jitctl.aws import translate_error

        try:
            return getattr(self.client, op)(**kwargs)
        except Exception as exc:
            code = _error_code(exc)
            if code in keep:
                raise
            if code in self.MISSING:
                raise ConfigError(f"{action} ({self.name}): it does not exist", self.HINT) from exc
            raise translate_error(exc, f"{action} ({self.name})") from exc


def open_sinks(settings: Any, client_factory: ClientFactory) -> list[Sink]:
    """The sinks ``[audit]`` configures (an AuditSettings), in a fixed order: table, bucket."""
    sinks: list[Sink] = []
    if settings.table:
        sinks.append(DynamoSink(settings.table, client_factory))
    if settings.bucket:
        sinks.append(S3Sink(settings.bucket, settings.prefix, client_factory))
    return sinks


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


# ------------------------------------------------------------------ DynamoDB


class DynamoSink(Sink):
    SERVICE = "dynamodb"
    MISSING = ("ResourceNotFoundException",)
    HINT = "run `jitctl init` to create the audit table"

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
            if _error_code(exc) != "ResourceInUseException":  # "it exists": checked below
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
            "record": {"S": _text(record)},
            **{
                name: {"S": record[name]}
                for name in ("ts", "event", "request_id", "person")
                if isinstance(record.get(name), str)
            },
        }
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

    def entries(self) -> Iterator[CentralEntry]:
        for item in self._scan():
            chain, seq = item["chain"]["S"], int(item["seq"]["N"])
            text = item.get("record", {}).get("S", "")
            yield CentralEntry(chain, seq, text, f"{self.name} chain {chain} seq {seq}")

    def records(
        self, *, since: datetime | None, request_id: str | None, person: str | None, now: datetime
    ) -> list[dict[str, Any]]:
        wanted = {
            "ts": rfc3339(since) if since else None,
            "request_id": request_id,
            "person": person,
        }
        used = {k: v for k, v in wanted.items() if v is not None}
        kwargs: dict[str, Any] = {}
        if used:
            kwargs = {
                "FilterExpression": " AND ".join(
                    f"#{k} {'>=' if k == 'ts' else '='} :{k}" for k in used
                ),
                "ExpressionAttributeNames": {f"#{k}": k for k in used},
                "ExpressionAttributeValues": {f":{k}": {"S": v} for k, v in used.items()},
            }
        items = self._scan(**kwargs)
        return [_load(item.get("record", {}).get("S", ""), f"{self.name}") for item in items]


# ------------------------------------------------------------------ S3

_KEY = re.compile(r"(\d{4}/\d{2}/\d{2})/([A-Za-z0-9_-]{1,64})/(\d{10})\.json")


class S3Sink(Sink):
    SERVICE = "s3"
    MISSING = ("NoSuchBucket", "404", "NotFound")
    HINT = "create the bucket (versioning or Object Lock recommended) or fix [audit] bucket"

    def __init__(self, bucket: str, prefix: str, client_factory: ClientFactory) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.name = f"s3:{bucket}/{prefix}"
        super().__init__(client_factory)

    def key(self, record: dict[str, Any]) -> str:
        day = parse_rfc3339(record["ts"]).strftime("%Y/%m/%d")
        return f"{self.prefix}{day}/{record['chain']}/{record['seq']:010d}.json"

    def init(self) -> None:
        """jitctl does not create the bucket (its policy and retention are yours): check it."""
        self._call("head_bucket", "cannot use the audit bucket", Bucket=self.bucket)

    def put(self, record: dict[str, Any]) -> None:
        key = self.key(record)
        try:
            self._call(
                "put_object",
                "cannot write the audit record",
                keep=("PreconditionFailed", "ConditionalRequestConflict"),
                Bucket=self.bucket,
                Key=key,
                Body=_text(record).encode("utf-8"),
                ContentType="application/json",
                ServerSideEncryption="AES256",
                IfNoneMatch="*",  # never overwrite a record already there
            )
        except Exception as exc:
            if isinstance(exc, JitctlError):
                raise
            raise AuditError(
                f"S3 bucket {self.bucket} already holds {key}; not overwritten"
            ) from exc

    def _keys(self, prefixes: list[str]) -> Iterator[str]:
        for prefix in prefixes:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
            while True:
                resp = self._call("list_objects_v2", "cannot list the audit trail", **kwargs)
                for obj in resp.get("Contents", []):
                    yield obj["Key"]
                if not resp.get("IsTruncated"):
                    break
                kwargs["ContinuationToken"] = resp["NextContinuationToken"]

    def _read(self, key: str) -> str:
        body = self._call("get_object", "cannot read the audit trail", Bucket=self.bucket, Key=key)
        return body["Body"].read().decode("utf-8", "surrogateescape")  # type: ignore[no-any-return]

    def entries(self) -> Iterator[CentralEntry]:
        for key in self._keys([self.prefix]):
            where = f"s3://{self.bucket}/{key}"
            m = _KEY.fullmatch(key[len(self.prefix) :])
            if m is None:
                raise AuditTampered(f"{where}: not an audit record's key", "remove stray objects")
            yield CentralEntry(m.group(2), int(m.group(3)), self._read(key), where)

    def records(
        self, *, since: datetime | None, request_id: str | None, person: str | None, now: datetime
    ) -> list[dict[str, Any]]:
        prefixes = [self.prefix]
        if since is not None:
            # One listing per UTC day from `since` to tomorrow (a little clock skew is fine).
            day, last = since.date(), (now + timedelta(days=1)).date()
            prefixes = []
            while day <= last:
                prefixes.append(f"{self.prefix}{day:%Y/%m/%d}/")
                day += timedelta(days=1)
        out = []
        for key in self._keys(prefixes):
            record = _load(self._read(key), f"s3://{self.bucket}/{key}")
            if matches(record, since=since, request_id=request_id, person=person):
                out.append(record)
        return out


# ------------------------------------------------------------------ helpers


def _text(record: dict[str, Any]) -> str:
    """The record exactly as the local log writes it (its hashing form plus hash)."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def _load(text: str, where: str) -> dict[str, Any]:
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


def stderr_warning(text: str) -> None:
    """How the CLI learns of a sink failure it carries on after (``required = false``)."""
    sys.stderr.write(f"jitctl: warning: {clean(text)}\n")
    sys.stderr.flush()


def one_line(exc: BaseException) -> str:
    """An error as one short line for the local log: no newlines, no escapes, no secrets
    (AWS error messages name resources and codes, never credentials)."""
    text = str(exc) or type(exc).__name__
    text = clean(text).strip()
    return text if len(text) <= _ERROR_MAX else text[: _ERROR_MAX - 1] + "…"
