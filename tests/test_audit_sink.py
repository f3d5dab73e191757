"""The central audit sinks (DynamoDB, S3) against moto's server, and verify_central."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest

from jitctl.audit.central import verify_central
from jitctl.audit.log import AuditLog, read_records, record_hash, verify
from jitctl.audit.s3 import S3Sink
from jitctl.audit.sink import DynamoSink
from jitctl.audit.trail import AuditTrail, open_sinks
from jitctl.aws import AwsClients
from jitctl.config.settings import AuditSettings
from jitctl.errors import AuditError, ConfigError, ExitCode
from tests.conftest import FixedClock
from tests.test_audit import ACTOR

PERSON = "alice@example.com"


def unique(kind: str) -> str:
    return f"jitctl-audit-{kind}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def clients(aws_env) -> AwsClients:
    return AwsClients()


@pytest.fixture
def table(clients) -> DynamoSink:
    sink = DynamoSink(unique("t"), clients.client, poll_interval=0.01)
    sink.init()
    return sink


@pytest.fixture
def bucket(clients) -> S3Sink:
    name = unique("b")
    boto3.client("s3").create_bucket(Bucket=name)
    sink = S3Sink(name, "audit/", clients.client)
    sink.init()
    return sink


def add(log: AuditLog, n: int, event: str = "requested", **fields) -> dict:
    return log.append(
        event, request_id=f"r-{n}", actor=ACTOR, person=PERSON, role="prod-readonly", **fields
    )


def fill(log: AuditLog, count: int = 5) -> list[dict]:
    return [add(log, i, reason=f"INC-{i}") for i in range(count)]


def trail(tmp_path: Path, sinks, **kw) -> AuditTrail:
    return AuditTrail(tmp_path / "audit.jsonl", FixedClock(tick=1), list(sinks), **kw)


class Central:
    """Direct access to what a sink holds, for reading and tampering (no jitctl code)."""

    def __init__(self, sink) -> None:
        self.sink = sink
        self.ddb = boto3.client("dynamodb")
        self.s3 = boto3.client("s3")

    def _key(self, chain: str, seq: int) -> str:
        prefix = f"{self.sink.prefix}"
        for obj in self.s3.list_objects_v2(Bucket=self.sink.bucket, Prefix=prefix)["Contents"]:
            if obj["Key"].endswith(f"/{chain}/{seq:010d}.json"):
                return obj["Key"]
        raise KeyError((chain, seq))

    def text(self, chain: str, seq: int) -> str:
        if isinstance(self.sink, DynamoSink):
            key = {"chain": {"S": chain}, "seq": {"N": str(seq)}}
            item = self.ddb.get_item(TableName=self.sink.table, Key=key)["Item"]
            return item["record"]["S"]
        body = self.s3.get_object(Bucket=self.sink.bucket, Key=self._key(chain, seq))["Body"]
        return body.read().decode()

    def rewrite(self, chain: str, seq: int, text: str) -> None:
        if isinstance(self.sink, DynamoSink):
            self.ddb.update_item(
                TableName=self.sink.table,
                Key={"chain": {"S": chain}, "seq": {"N": str(seq)}},
                UpdateExpression="SET #r = :r",
                ExpressionAttributeNames={"#r": "record"},
                ExpressionAttributeValues={":r": {"S": text}},
            )
        else:
            key = self._key(chain, seq)
            self.s3.put_object(Bucket=self.sink.bucket, Key=key, Body=text.encode())

    def delete(self, chain: str, seq: int) -> None:
        if isinstance(self.sink, DynamoSink):
            key = {"chain": {"S": chain}, "seq": {"N": str(seq)}}
            self.ddb.delete_item(TableName=self.sink.table, Key=key)
        else:
            self.s3.delete_object(Bucket=self.sink.bucket, Key=self._key(chain, seq))


@pytest.fixture(params=["dynamodb", "s3"])
def sink(request):
    return request.getfixturevalue("table" if request.param == "dynamodb" else "bucket")


def test_records_reach_both_sinks_identical_to_the_local_log(tmp_path, table, bucket):
    log = trail(tmp_path, [table, bucket])
    written = fill(log, 3)
    local = read_records(log.path)
    assert local == written
    for sink in (table, bucket):
        central = Central(sink)
        for record in local:
            assert json.loads(central.text(record["chain"], record["seq"])) == record
    items = boto3.client("dynamodb").scan(TableName=table.table)["Items"]
    first = next(i for i in items if i["seq"]["N"] == "1")
    assert first["ts"]["S"] == local[0]["ts"] and first["event"]["S"] == "requested"
    assert first["request_id"]["S"] == "r-0" and first["person"]["S"] == PERSON
    s3 = boto3.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket.bucket)["Contents"]]
    day = local[0]["ts"][:10].replace("-", "/")
    assert sorted(keys) == [f"audit/{day}/{local[0]['chain']}/{n:010d}.json" for n in (1, 2, 3)]
    for key in keys:
        assert s3.head_object(Bucket=bucket.bucket, Key=key)["ServerSideEncryption"] == "AES256"


def test_chain_and_seq_are_assigned_and_continuous(tmp_path: Path):
    log = AuditLog(tmp_path / "a.jsonl", FixedClock(tick=1))
    records = fill(log, 4)
    chains = {r["chain"] for r in records}
    assert len(chains) == 1 and [r["seq"] for r in records] == [1, 2, 3, 4]
    # Read back from the last record by a fresh writer (another process, another day).
    again = add(AuditLog(log.path, FixedClock(tick=1)), 9)
    assert (again["chain"], again["seq"]) == (records[0]["chain"], 5)
    other = add(AuditLog(tmp_path / "b.jsonl", FixedClock(tick=1)), 0)
    assert other["seq"] == 1 and other["chain"] not in chains
    assert verify(log.path).ok


def test_old_log_without_chain_still_verifies_and_continues(tmp_path: Path):
    path = tmp_path / "old.jsonl"
    prev = None
    with path.open("w") as fh:
        for n in range(3):
            rec = {
                "ts": f"2025-01-01T00:00:0{n}Z",
                "event": "requested",
                "request_id": f"r-{n}",
                "actor": ACTOR,
                "person": PERSON,
                "role": "prod-readonly",
                "prev": prev,
            }
            rec["hash"] = prev = record_hash(rec)
            fh.write(json.dumps(rec, sort_keys=True, separators=(",", ":")) + "\n")
    assert verify(path).ok
    new = add(AuditLog(path, FixedClock(tick=1)), 3)
    assert new["seq"] == 1 and new["prev"] == prev
    assert verify(path).ok and verify(path).records == 4


def test_local_verify_catches_a_forged_seq(tmp_path: Path):
    log = AuditLog(tmp_path / "a.jsonl", FixedClock(tick=1))
    fill(log, 3)
    lines = log.path.read_text().splitlines()
    rec = json.loads(lines[2])
    rec["seq"] = 7
    rec["hash"] = record_hash(rec)  # a forger who recomputes the hash of the last record
    lines[2] = json.dumps(rec, sort_keys=True, separators=(",", ":"))
    log.path.write_text("\n".join(lines) + "\n")
    result = verify(log.path)
    assert not result.ok and result.first_bad_line == 3 and "should be 3" in result.problem


def test_conditional_write_refuses_an_overwrite(tmp_path, sink):
    log = trail(tmp_path, [sink])
    record = add(log, 1)
    forged = {**record, "reason": "rewritten"}
    with pytest.raises(AuditError, match="not overwritten"):
        sink.put(forged)
    assert json.loads(Central(sink).text(record["chain"], 1)) == record


def test_verify_remote_passes_on_an_intact_copy(tmp_path, sink):
    log = trail(tmp_path, [sink])
    fill(log, 4)
    other = trail(tmp_path / "bob", [sink])  # a second person's log: a second chain
    fill(other, 2)
    result = verify_central(sink.entries(), read_records(log.path), sink=sink.name)
    assert (result.ok, result.chains, result.records) == (True, 2, 6)


def _tampered(tmp_path, sink, tamper) -> tuple[str, object]:
    log = trail(tmp_path, [sink])
    records = fill(log, 5)
    chain = records[0]["chain"]
    tamper(Central(sink), chain, records)
    return chain, verify_central(sink.entries(), read_records(log.path), sink=sink.name)


def test_verify_remote_catches_an_edited_field(tmp_path, sink):
    def edit(central, chain, records):
        rec = {**records[2], "reason": "nothing to see"}
        central.rewrite(chain, 3, json.dumps(rec, sort_keys=True, separators=(",", ":")))

    chain, result = _tampered(tmp_path, sink, edit)
    assert (result.ok, result.chain, result.seq) == (False, chain, 3)
    assert "hash mismatch" in result.problem


def test_verify_remote_catches_an_edit_with_recomputed_hash(tmp_path, sink):
    def edit(central, chain, records):
        rec = {**records[4], "reason": "nothing to see"}  # the newest: no later prev to break
        rec["hash"] = record_hash(rec)
        central.rewrite(chain, 5, json.dumps(rec, sort_keys=True, separators=(",", ":")))

    chain, result = _tampered(tmp_path, sink, edit)
    assert (result.ok, result.chain, result.seq) == (False, chain, 5)
    assert "differs from the local log" in result.problem


def test_verify_remote_catches_a_removed_middle_record(tmp_path, sink):
    chain, result = _tampered(tmp_path, sink, lambda c, chain, _: c.delete(chain, 2))
    assert (result.ok, result.chain, result.seq) == (False, chain, 2)
    assert "missing" in result.problem and "removed" in result.problem


def test_verify_remote_catches_a_removed_newest_record(tmp_path, sink):
    chain, result = _tampered(tmp_path, sink, lambda c, chain, _: c.delete(chain, 5))
    assert (result.ok, result.chain, result.seq) == (False, chain, 5)
    assert "in the local log but missing from the central copy" in result.problem
    # Without the local log the shortened chain looks whole: that is why the comparison exists.
    assert verify_central(sink.entries()).ok


def test_verify_remote_catches_swapped_records(tmp_path, sink):
    def swap(central, chain, records):
        two, three = central.text(chain, 2), central.text(chain, 3)
        central.rewrite(chain, 2, three)
        central.rewrite(chain, 3, two)

    chain, result = _tampered(tmp_path, sink, swap)
    assert (result.ok, result.chain, result.seq) == (False, chain, 2)
    assert "moved or swapped" in result.problem


def test_swapped_records_with_rewritten_positions_break_the_prev_links(tmp_path, table):
    def swap(central, chain, records):
        for seq, rec in ((2, records[2]), (3, records[1])):
            moved = {**rec, "seq": seq}
            moved["hash"] = record_hash(moved)
            central.rewrite(chain, seq, json.dumps(moved, sort_keys=True, separators=(",", ":")))

    chain, result = _tampered(tmp_path, table, swap)
    assert (result.ok, result.chain, result.seq) == (False, chain, 2)
    assert "prev does not match seq 1" in result.problem


def test_failing_required_sink_raises_after_recording_the_failure(tmp_path, clients):
    missing = DynamoSink(unique("never-created"), clients.client)
    log = trail(tmp_path, [missing])
    with pytest.raises(AuditError) as info:
        add(log, 1)
    assert info.value.exit_code == ExitCode.UNAVAILABLE
    assert "central audit sink failed" in str(info.value) and "nothing is issued" in str(info.value)
    assert "required = false" in str(info.value)
    events = read_records(log.path)
    assert [r["event"] for r in events] == ["requested", "audit_sink_failed"]
    assert events[1]["sink"] == missing.name and "does not exist" in events[1]["error"]
    assert events[1]["failed_seq"] == 1
    assert "admin-secret" not in log.path.read_text()
    assert verify(log.path).ok


def test_optional_sink_failure_warns_and_carries_on(tmp_path, clients, bucket):
    missing = S3Sink(unique("no-such-bucket"), "audit/", clients.client)
    seen: list[str] = []
    log = trail(tmp_path, [missing, bucket], required=False, on_warning=seen.append)
    first, second = add(log, 1), add(log, 2)
    assert len(log.warnings) == 1 and seen == log.warnings and missing.name in seen[0]
    events = [r["event"] for r in read_records(log.path)]
    assert events == ["requested", "audit_sink_failed", "requested", "audit_sink_failed"]
    # The healthy sink got everything, the failure notes included.
    entries = list(bucket.entries())
    assert len(entries) == 4
    result = verify_central(entries, read_records(log.path), sink=bucket.name)
    assert result.ok, result
    # The failed sink's gap is explained, not passed off as a removal.
    assert first["seq"] == 1 and second["seq"] == 3
    gap = verify_central([], read_records(log.path), sink=missing.name)
    assert not gap.ok and gap.seq == 1 and "never delivered" in gap.problem


def test_init_is_harmless_twice_and_refuses_a_foreign_table(clients):
    sink = DynamoSink(unique("t"), clients.client, poll_interval=0.01)
    sink.init()
    sink.init()
    desc = boto3.client("dynamodb").describe_table(TableName=sink.table)["Table"]
    assert desc["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    foreign = unique("foreign")
    boto3.client("dynamodb").create_table(
        TableName=foreign,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "request_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "request_id", "AttributeType": "S"}],
    )
    with pytest.raises(ConfigError, match="keyed on"):
        DynamoSink(foreign, clients.client).init()


def test_missing_bucket_is_a_config_error_at_init(clients):
    with pytest.raises(ConfigError, match="does not exist"):
        S3Sink(unique("none"), "audit/", clients.client).init()


def test_open_sinks_follows_the_settings(tmp_path, clients):
    settings = AuditSettings(path=tmp_path / "a", table="t1", bucket="b1", prefix="p/")
    names = [s.name for s in open_sinks(settings, clients.client)]
    assert names == ["dynamodb:t1", "s3:b1/p/"]
    assert open_sinks(AuditSettings(path=tmp_path / "a"), clients.client) == []


def test_records_filters(tmp_path, sink):
    log = trail(tmp_path, [sink])
    fill(log, 3)
    now = datetime.now(UTC)
    got = list(sink.records(since=None, request_id="r-1", person=None, now=now))
    assert [r["request_id"] for r in got] == ["r-1"]
    assert len(list(sink.records(since=None, request_id=None, person=PERSON, now=now))) == 3
    assert list(sink.records(since=None, request_id=None, person="bob@example.com", now=now)) == []
    # FixedClock writes 2026-11-21T04:00:0xZ
    since = datetime(2026, 11, 21, 4, 0, 2, tzinfo=UTC)
    got = sink.records(since=since, request_id=None, person=None, now=since + timedelta(hours=1))
    assert [r["seq"] for r in got] == [2, 3]
