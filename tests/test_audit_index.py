"""The central copy answers `audit log --request/--person/--since` by index (DynamoDB's global
secondary indexes, S3's day keys), against moto's server: the same records in the same order
as reading everything, while reading only what it prints."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from jitctl.audit.central import verify_central
from jitctl.audit.index import DAY_INDEX, INDEXES, PERSON_INDEX, REQUEST_INDEX
from jitctl.audit.log import AuditLog
from jitctl.audit.s3 import S3Sink
from jitctl.audit.sink import DynamoSink, sort_key
from jitctl.audit.trail import AuditTrail
from jitctl.aws import AwsClients
from jitctl.doctor.audit import _indexes
from jitctl.doctor.report import WARN
from tests.conftest import FixedClock
from tests.test_audit import ACTOR

START = datetime(2026, 11, 21, 4, 0, tzinfo=UTC)
PEOPLE = ("alice@example.com", "bob@example.com", "carol@example.com")


def unique(kind: str) -> str:
    return f"jitctl-aindex-{kind}-{uuid.uuid4().hex[:10]}"


class Reads:
    """What AWS handed back to one sink's own client: a botocore after-call hook summing the
    items a Query/Scan read (ScannedCount), the keys a listing returned, the calls made."""

    def __init__(self, client: Any) -> None:
        self.items = 0
        self.keys = 0
        self.calls: Counter[str] = Counter()
        client.meta.events.register("after-call", self._seen)

    def _seen(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls[model.name] += 1
        if model.name in ("Query", "Scan"):
            self.items += parsed.get("ScannedCount", parsed.get("Count", 0))
        if model.name == "ListObjectsV2":
            self.keys += len(parsed.get("Contents", []))


@pytest.fixture
def clients(aws_env) -> AwsClients:
    return AwsClients()


def new_table(clients: AwsClients, **kw: Any) -> DynamoSink:
    """A table as `jitctl init` makes it, read as the broker reads its own (trusting the
    indexes: nobody else writes its table)."""
    sink = DynamoSink(unique("t"), clients.client, poll_interval=0.01, **kw)
    sink.init()
    sink.trust_index = True
    return sink


def old_table() -> DynamoSink:
    """A table as jitctl made it before the indexes: chain/seq and nothing else."""
    name = unique("old")
    boto3.client("dynamodb").create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[
            {"AttributeName": "chain", "KeyType": "HASH"},
            {"AttributeName": "seq", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "chain", "AttributeType": "S"},
            {"AttributeName": "seq", "AttributeType": "N"},
        ],
    )
    sink = DynamoSink(name, boto3.client, poll_interval=0.01)  # its own client: reads apart
    sink.trust_index = True
    return sink


def writers(tmp_path: Path, sinks: list[Any], count: int, start: datetime = START) -> list[Any]:
    """``count`` writers (each its own chain) whose clocks read the same times: records of
    different chains share a ts, so ties must come back in (chain, seq) order."""
    return [
        AuditTrail(tmp_path / f"audit-{i}.jsonl", FixedClock(start, tick=60), list(sinks))
        for i in range(count)
    ]


def write(logs: list[AuditLog], requests: int, per_request: int = 3) -> None:
    for n in range(requests):
        for step in range(per_request):
            logs[(n + step) % len(logs)].append(
                "requested" if step == 0 else "approved",
                request_id=f"r-{n:04d}",
                actor=ACTOR,
                person=PEOPLE[n % len(PEOPLE)],
                role="prod-readonly",
            )


FILTERS = [
    {"request_id": "r-0007"},
    {"person": "bob@example.com"},
    {"since": START + timedelta(minutes=12)},
    {"person": "carol@example.com", "since": START + timedelta(minutes=8)},
    {"request_id": "r-0011", "since": START + timedelta(minutes=5)},
    {"request_id": "r-0003", "since": START + timedelta(minutes=5)},
    {"request_id": "no-such-request"},
]


def ask(sink: Any, **filters: Any) -> list[dict[str, Any]]:
    kw = {"since": None, "request_id": None, "person": None} | filters
    return list(sink.records(now=START + timedelta(hours=3), **kw))


@pytest.fixture
def twins(tmp_path, clients) -> tuple[DynamoSink, DynamoSink]:
    """The same records in a new table (indexes, read 2 items a page) and an older one (scan)."""
    indexed, scanned = new_table(clients, page_limit=2), old_table()
    write(writers(tmp_path, [indexed, scanned], 3), requests=20)
    return indexed, scanned


@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: "+".join(sorted(f)))
def test_the_index_answers_exactly_what_a_scan_answers(twins, filters):
    indexed, scanned = twins
    reads = Reads(indexed.client)
    got, want = ask(indexed, **filters), ask(scanned, **filters)
    assert got == want
    assert want == sorted(want, key=sort_key)  # the scan's answer is the order to keep
    if filters.get("request_id") not in ("no-such-request", "r-0003"):
        assert got, "the filter was meant to match something"
    assert reads.calls["Scan"] == 0 and reads.calls["Query"] >= 1
    if len(got) > 2:  # more than one page of 2 items: LastEvaluatedKey was followed
        assert reads.calls["Query"] > 1


def test_ties_across_chains_come_back_in_chain_and_seq_order(twins):
    indexed, _ = twins
    got = ask(indexed, since=START)
    by_ts = Counter(r["ts"] for r in got)
    assert max(by_ts.values()) > 1, "the writers were meant to share times"
    assert got == sorted(got, key=sort_key)


def test_since_alone_across_midnight_answers_what_a_scan_answers(tmp_path, clients):
    """day-index: one Query per UTC day, the days in order, each sorted by ts."""
    indexed, scanned = new_table(clients, page_limit=3), old_table()
    late = START - timedelta(hours=4, minutes=10)  # 23:50 the day before
    write(writers(tmp_path, [indexed, scanned], 3, start=late), requests=20)
    reads = Reads(indexed.client)
    since = late + timedelta(minutes=5)
    got = ask(indexed, since=since)
    assert got == ask(scanned, since=since)
    assert {r["ts"][:10] for r in got} == {"2026-11-20", "2026-11-21"}
    assert reads.calls["Scan"] == 0 and reads.items == len(got) == 48


@pytest.mark.slow
def test_request_reads_only_its_own_records_among_thousands(tmp_path, clients):
    sink = new_table(clients)
    write(writers(tmp_path, [sink], 4), requests=700)  # 2100 records
    reads = Reads(sink.client)
    got = ask(sink, request_id="r-0421")
    assert [r["request_id"] for r in got] == ["r-0421"] * 3
    assert reads.items == 3  # the table holds 2100: DynamoDB handed back these three only
    person = ask(sink, person="alice@example.com", since=START + timedelta(hours=8))
    assert reads.items == 3 + len(person) and 0 < len(person) < 100


def test_an_index_attribute_never_makes_a_record_match(tmp_path, clients):
    """Someone who can write the table moves an item into another request's index entry: the
    query finds it, the record (what the hash covers) does not match, so it is not shown; and
    `audit verify --remote` reports the item, which no longer shows under its own request."""
    sink = new_table(clients)
    write(writers(tmp_path, [sink], 1), requests=3)
    item = boto3.client("dynamodb").query(
        TableName=sink.table,
        IndexName=REQUEST_INDEX,
        KeyConditionExpression="request_id = :r",
        ExpressionAttributeValues={":r": {"S": "r-0001"}},
    )["Items"][0]
    boto3.client("dynamodb").update_item(
        TableName=sink.table,
        Key={"chain": item["chain"], "seq": item["seq"]},
        UpdateExpression="SET request_id = :o",
        ExpressionAttributeValues={":o": {"S": "r-0002"}},
    )
    assert {r["request_id"] for r in ask(sink, request_id="r-0002")} == {"r-0002"}
    assert len(ask(sink, request_id="r-0001")) == 2  # hidden from the query...
    result = verify_central(sink.entries(), sink=sink.name)
    assert not result.ok and "index attributes (request_id)" in (result.problem or "")


def test_direct_mode_scans_though_the_indexes_are_there(tmp_path, clients):
    """In direct mode every requester writes the table: an index attribute rewritten by one of
    them must not hide her records (security.md), so the filters read the records themselves."""
    sink = new_table(clients)
    sink.trust_index = False  # as every run but the broker's
    write(writers(tmp_path, [sink], 2), requests=6)
    reads = Reads(sink.client)
    assert [r["request_id"] for r in ask(sink, request_id="r-0004")] == ["r-0004"] * 3
    assert reads.calls["Query"] == 0 and reads.items == 18


def test_the_broker_trusts_its_own_tables_indexes(tmp_path, monkeypatch):
    """The broker built for an environment reads its audit table through the indexes; the same
    environment's own runs (direct mode) do not."""
    from jitctl.broker.build import build_broker
    from jitctl.context import Environment

    config = tmp_path / "config.toml"
    config.write_text('[broker]\nserver_id = "jitctl-test"\n[audit]\ntable = "jitctl-audit"\n')
    monkeypatch.setenv("JITCTL_CONFIG", str(config))
    monkeypatch.setenv("JITCTL_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    direct = Environment()
    assert [s.trust_index for s in direct.audit.sinks] == [False]
    broker_env = Environment()
    build_broker(broker_env)
    assert [s.trust_index for s in broker_env.audit.sinks] == [True]


def test_an_older_table_scans_then_init_adds_the_indexes_its_items_fill(tmp_path, clients):
    sink = old_table()
    write(writers(tmp_path, [sink], 2), requests=6)
    assert _indexes(sink)[0] == WARN  # doctor: the filters read the whole table
    reads = Reads(sink.client)
    before = ask(sink, request_id="r-0004")
    assert reads.calls["Scan"] >= 1 and reads.items == 18
    sink.init()  # adds request-index and person-index, not day-index (older items lack `day`)
    assert {k: v for k, v in sink.indexes().items() if k} == {
        REQUEST_INDEX: "ACTIVE",
        PERSON_INDEX: "ACTIVE",
    }
    reads.items = 0
    assert ask(sink, request_id="r-0004") == before and reads.items == 3
    assert len(ask(sink, since=START)) == 18  # by scan: day-index is not there
    warning = _indexes(sink)
    assert warning[0] == WARN and DAY_INDEX in warning[1] and "--since alone" in warning[1]
    assert _indexes(new_table(clients)) == f"{', '.join(INDEXES)}: the broker's `audit log` filters query, not scan"


# ------------------------------------------------------------------ S3


@pytest.fixture
def bucket(clients) -> S3Sink:
    name = unique("b")
    boto3.client("s3").create_bucket(Bucket=name)
    sink = S3Sink(name, "audit/", clients.client)
    sink.init()
    return sink


def test_s3_since_lists_only_the_days_from_since_on(tmp_path, bucket):
    days = [START - timedelta(days=d) for d in (30, 10, 2, 1, 0)]
    for i, day in enumerate(days):  # one chain per day, two records each
        log = AuditTrail(tmp_path / f"a-{i}.jsonl", FixedClock(day, tick=1), [bucket])
        write([log], requests=2, per_request=1)
    everything = ask(bucket)
    reads = Reads(bucket.client)
    since = START - timedelta(days=1, hours=1)  # the last two days' records (from 03:00 on)
    got = ask(bucket, since=since)
    assert got == [r for r in everything if r["ts"] >= "2026-11-20T03"]
    assert len(got) == 4 and reads.keys == 4  # days 30, 10 and 2 back were never listed
    assert reads.calls["GetObject"] == 4


def test_s3_answers_in_order_day_by_day(tmp_path, bucket):
    write(writers(tmp_path, [bucket], 3, start=START - timedelta(hours=4, minutes=6)), requests=12)
    got = ask(bucket)
    assert len(got) == 36 and got == sorted(got, key=sort_key)
    assert {r["ts"][:10] for r in got} == {"2026-11-20", "2026-11-21"}
    assert ask(bucket, person="bob@example.com") == [
        r for r in got if r["person"] == "bob@example.com"
    ]


def test_equal_times_come_back_by_chain_then_seq():
    """DynamoDB returns items of equal sort key in no set order: in_order fixes it, one run at
    a time."""
    from jitctl.audit.index import in_order

    def item(ts: str, chain: str, seq: int) -> dict[str, Any]:
        return {"ts": {"S": ts}, "chain": {"S": chain}, "seq": {"N": str(seq)}}

    t1, t2 = "2026-11-21T04:00:00Z", "2026-11-21T04:00:01Z"
    given = [item(t1, "c-b", 1), item(t1, "c-a", 9), item(t1, "c-a", 3), item(t2, "c-0", 1)]
    got = [(i["chain"]["S"], int(i["seq"]["N"])) for i in in_order(given)]
    assert got == [("c-a", 3), ("c-a", 9), ("c-b", 1), ("c-0", 1)]
