"""The S3 central audit sink: one object per record, optionally under Object Lock retention.

Objects live at ``{prefix}YYYY/MM/DD/{chain}/{seq:010d}.json`` (the record's UTC date), written
with ``If-None-Match: *`` (jitctl never overwrites) and server-side encryption. With ``[audit]
retention_days`` each object also gets an Object Lock retention (``retention_mode``,
COMPLIANCE by default), so for that long nobody can delete it or shorten its retention, the
account's root user included in COMPLIANCE mode. Object Lock keeps versions, it does not
stop a new version being put over a key: so verification lists every version and reports a
record with more than one (overwritten) or hidden by a delete marker; the original stays
readable. With ``[audit] kms_key`` the signature is object metadata (``jitctl-sig``,
``jitctl-key-id``), set in the same PutObject as the record.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from itertools import groupby
from typing import Any

from jitctl.audit.central import CentralEntry
from jitctl.audit.log import record_text
from jitctl.audit.sink import PROBE, ClientFactory, Sink, load_record, matches, sort_key
from jitctl.aws import DENIED, error_code
from jitctl.errors import AuditError, AuditTampered, ConfigError, JitctlError
from jitctl.timeutil import parse_rfc3339

_KEY = re.compile(r"(\d{4}/\d{2}/\d{2})/([A-Za-z0-9_-]{1,64})/(\d{10})\.json")
SIG, KEY_ID = "jitctl-sig", "jitctl-key-id"  # object metadata (x-amz-meta-...)
_NO_LOCK = "ObjectLockConfigurationNotFoundError"


class S3Sink(Sink):
    SERVICE = "s3"
    MISSING = ("NoSuchBucket", "404", "NotFound")
    HINT = "create the bucket (with Object Lock, see retention_days) or fix [audit] bucket"

    def __init__(
        self,
        bucket: str,
        prefix: str,
        client_factory: ClientFactory,
        *,
        retention: tuple[str, int | None] = ("COMPLIANCE", None),
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.name = f"s3:{bucket}/{prefix}"
        self.retention_mode, self.retention_days = retention
        super().__init__(client_factory)

    def key(self, record: dict[str, Any]) -> str:
        day = parse_rfc3339(record["ts"]).strftime("%Y/%m/%d")
        return f"{self.prefix}{day}/{record['chain']}/{record['seq']:010d}.json"

    def init(self) -> None:
        """jitctl does not create the bucket (its policy and retention are yours): check it,
        and that it has Object Lock when ``retention_days`` asks for retention."""
        self._call("head_bucket", "cannot use the audit bucket", Bucket=self.bucket)
        if self.retention_days and not self.object_lock()[0]:
            raise ConfigError(
                f"S3 bucket {self.bucket} has no Object Lock, but [audit] retention_days is set",
                "enable Object Lock on the bucket (`aws s3api put-object-lock-configuration`, "
                "versioning on) or remove retention_days",
            )

    def object_lock(self) -> tuple[bool, str | None, int | None]:
        """(Object Lock enabled, default retention mode, default retention days)."""
        try:
            resp = self._call(
                "get_object_lock_configuration",
                "cannot read the audit bucket's Object Lock configuration",
                keep=(_NO_LOCK,),
                Bucket=self.bucket,
            )
        except Exception as exc:
            if error_code(exc) == _NO_LOCK:
                return False, None, None
            raise
        config = resp.get("ObjectLockConfiguration", {})
        rule = config.get("Rule", {}).get("DefaultRetention", {})
        days = rule.get("Days") or (rule["Years"] * 365 if rule.get("Years") else None)
        return config.get("ObjectLockEnabled") == "Enabled", rule.get("Mode"), days

    def put(self, record: dict[str, Any]) -> None:
        key = self.key(record)
        extra: dict[str, Any] = {}
        signature = self.signature(record)
        if signature is not None:
            extra["Metadata"] = {SIG: signature.sig, KEY_ID: signature.key_id}
        if self.retention_days:
            extra["ObjectLockMode"] = self.retention_mode
            until = parse_rfc3339(record["ts"]) + timedelta(days=self.retention_days)
            extra["ObjectLockRetainUntilDate"] = until
        try:
            self._call(
                "put_object",
                "cannot write the audit record",
                keep=("PreconditionFailed", "ConditionalRequestConflict"),
                Bucket=self.bucket,
                Key=key,
                Body=record_text(record).encode("utf-8"),
                ContentType="application/json",
                ServerSideEncryption="AES256",
                IfNoneMatch="*",  # never overwrite a record already there
                **extra,
            )
        except Exception as exc:
            if isinstance(exc, JitctlError):
                raise
            raise AuditError(
                f"S3 bucket {self.bucket} already holds {key}; not overwritten"
            ) from exc

    def writable(self) -> bool:
        """Whether the caller may put records here, found without writing one: a PutObject
        that only replaces an object with an ETag none has fails on that when allowed (404 or
        412), on IAM when not (403)."""
        try:
            self._call(
                "put_object",
                "cannot probe the audit bucket",
                keep=("NoSuchKey", "404", "PreconditionFailed", "412", *DENIED),
                Bucket=self.bucket,
                Key=f"{self.prefix}{PROBE}",
                Body=b"",
                IfMatch='"00000000000000000000000000000000"',
            )
        except Exception as exc:
            if error_code(exc) in DENIED:
                return False
            if error_code(exc) not in ("NoSuchKey", "404", "PreconditionFailed", "412"):
                raise
        return True

    def _keys(self, start_after: str | None = None) -> Iterator[str]:
        """Every key under the prefix, in key order; with ``start_after``, only those after it
        (one listing from there on, however many days it spans)."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix}
        if start_after is not None:
            kwargs["StartAfter"] = start_after
        while True:
            resp = self._call("list_objects_v2", "cannot list the audit trail", **kwargs)
            for obj in resp.get("Contents", []):
                yield obj["Key"]
            if not resp.get("IsTruncated"):
                return
            kwargs["ContinuationToken"] = resp["NextContinuationToken"]

    def _versions(self) -> dict[str, tuple[list[str], int]]:
        """key -> (its version ids, oldest first; how many delete markers it has)."""
        found: dict[str, tuple[list[str], int]] = {}
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix}
        while True:
            resp = self._call("list_object_versions", "cannot list the audit trail", **kwargs)
            for version in resp.get("Versions", []):
                ids, markers = found.setdefault(version["Key"], ([], 0))
                ids.insert(0, str(version.get("VersionId")))  # S3 lists newest first
            for marker in resp.get("DeleteMarkers", []):
                ids, markers = found.get(marker["Key"], ([], 0))
                found[marker["Key"]] = (ids, markers + 1)
            if not resp.get("IsTruncated"):
                return found
            kwargs["KeyMarker"] = resp["NextKeyMarker"]
            kwargs["VersionIdMarker"] = resp.get("NextVersionIdMarker", "")

    def _read(self, key: str) -> tuple[str, dict[str, str]]:
        resp = self._call("get_object", "cannot read the audit trail", Bucket=self.bucket, Key=key)
        text = resp["Body"].read().decode("utf-8", "surrogateescape")
        return text, resp.get("Metadata") or {}

    def entries(self) -> Iterator[CentralEntry]:
        for key, (versions, markers) in sorted(self._versions().items()):
            where = f"s3://{self.bucket}/{key}"
            m = _KEY.fullmatch(key[len(self.prefix) :])
            if m is None:
                raise AuditTampered(f"{where}: not an audit record's key", "remove stray objects")
            chain, seq = m.group(2), int(m.group(3))
            problem = _version_problem(versions, markers)
            if problem:
                yield CentralEntry(chain, seq, "", where, problem=f"{where}: {problem}")
                continue
            text, meta = self._read(key)
            problem = _day_problem(m.group(1), text)
            yield CentralEntry(
                chain,
                seq,
                text,
                where,
                sig=meta.get(SIG),
                key_id=meta.get(KEY_ID),
                problem=f"{where}: {problem}" if problem else None,
            )

    def records(
        self, *, since: datetime | None, request_id: str | None, person: str | None, now: datetime
    ) -> Iterator[dict[str, Any]]:
        """S3 has no index by request or person: every record from ``since`` on is read (one
        GET each) and filtered on the record. ``since`` skips the days before it: keys are by
        day, so one listing starts after the day before (a record moved to another day's key
        is reported by `audit verify --remote`). Read a day at a time, sorted per day."""
        start = None
        if since is not None:  # "~" sorts after every chain name: the listing starts at since's day
            start = f"{self.prefix}{since - timedelta(days=1):%Y/%m/%d}/~"
        for _day, keys in groupby(self._keys(start), key=self._day):
            found = [load_record(self._read(k)[0], f"s3://{self.bucket}/{k}") for k in keys]
            for record in sorted(found, key=sort_key):
                if matches(record, since=since, request_id=request_id, person=person):
                    yield record

    def _day(self, key: str) -> str:
        """The day part of a record's key ("2026/11/21"); a stray key is a day of its own."""
        return key[len(self.prefix) : len(self.prefix) + 10]


def _version_problem(versions: list[str], markers: int) -> str | None:
    if len(versions) > 1:
        return (
            f"overwritten: {len(versions)} versions of this record (the first, version "
            f"{versions[0]}, is the original)"
        )
    if markers:
        return "deleted: a delete marker hides it (a retained version may still hold it)"
    return None


def _day_problem(day: str, text: str) -> str | None:
    """A record stored under another day than its own ts (it would hide from --since)."""
    record = _load_quietly(text)
    try:
        own = parse_rfc3339(str(record.get("ts"))).strftime("%Y/%m/%d") if record else None
    except ValueError:
        return None  # verify_central reports the record itself
    if own is not None and own != day:
        return f"stored under {day} but dated {own}: moved"
    return None


def _load_quietly(text: str) -> dict[str, Any] | None:
    try:
        return load_record(text, "")
    except AuditTampered:
        return None
