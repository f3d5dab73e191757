"""The request store, on both backends: SQLite in tmp_path, DynamoDB on moto's real server.

Every transition gets an explicit ``now`` (the clock is the test's), so expiry is exact.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from jitctl.config.settings import StoreSettings
from jitctl.errors import AwsUnavailable, ConfigError, Denied, ExitCode, UsageError
from jitctl.models import (
    APPROVED,
    CANCELLED,
    DENIED,
    EXPIRED,
    ISSUED,
    ON_CALL,
    PEER,
    PENDING,
    REVOKED,
    AccessRequest,
)
from jitctl.store import (
    DuplicateRequest,
    NotFound,
    RequestExpired,
    TransitionError,
    open_store,
)
from jitctl.store.dynamodb import PENDING_INDEX, DynamoStore
from jitctl.store.sqlite import SqliteStore

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 11, 21, 4, 0, tzinfo=UTC)
TTL = timedelta(minutes=30)
ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"


def make_req(
    request_id: str | None = None,
    *,
    requester: str = ALICE,
    role: str = "prod-readonly",
    created_at: datetime = T0,
    min_approvals: int = 1,
    status: str = PENDING,
    approval: str | None = None,
) -> AccessRequest:
    return AccessRequest(
        request_id=request_id or f"req-{uuid.uuid4().hex[:10]}",
        role=role,
        requester=requester,
        requester_arn=f"arn:aws:iam::123456789012:user/{requester}",
        reason="investigate INC-1",
        duration_seconds=3600,
        status=status,
        created_at=created_at,
        expires_at=created_at + TTL,
        min_approvals=min_approvals,
        approval=approval,
    )


def dynamo_client(endpoint: str, **config: Any) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(**config) if config else None,
    )


@pytest.fixture
def ddb(moto_server: str) -> Any:
    return dynamo_client(moto_server)


@pytest.fixture
def dynamo(ddb: Any) -> DynamoStore:
    table = f"jitctl-{uuid.uuid4().hex[:12]}"
    store = open_store(
        StoreSettings(backend="dynamodb", table=table),
        data_dir=Path("/nonexistent"),
        client_factory=lambda service: ddb,
    )
    assert isinstance(store, DynamoStore)
    store.init()
    return store


@pytest.fixture
def sqlite(tmp_path: Path) -> SqliteStore:
    store = open_store(StoreSettings(), data_dir=tmp_path / "data")
    assert isinstance(store, SqliteStore)
    store.init()
    return store


@pytest.fixture(params=["sqlite", "dynamo"], ids=["sqlite", "dynamodb"])
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    # getfixturevalue: the SQLite runs never start moto.
    yield request.getfixturevalue(request.param)


# ---------------------------------------------------------------- basics


def test_init_twice_is_harmless(store: Any) -> None:
    req = make_req()
    store.create(req)
    store.init()
    store.init()
    assert store.get(req.request_id) == req


def test_create_then_get_round_trips(store: Any) -> None:
    req = make_req(created_at=T0 + timedelta(microseconds=123456))
    store.create(req)
    assert store.get(req.request_id) == req
    assert store.get("req-nope") is None
    with pytest.raises(DuplicateRequest):
        store.create(make_req(req.request_id))


def test_create_refuses_a_request_that_skipped_ahead(store: Any) -> None:
    with pytest.raises(Exception, match="cannot create a request with status issued"):
        store.create(make_req(status=ISSUED))


def test_unknown_id_is_not_found(store: Any) -> None:
    with pytest.raises(NotFound) as exc:
        store.approve("req-nope", BOB, now=T0)
    assert exc.value.exit_code == ExitCode.USAGE


def test_list_is_newest_first(store: Any) -> None:
    minutes = [3, 0, 7, 1]
    reqs = [make_req(created_at=T0 + timedelta(minutes=m)) for m in minutes]
    for req in reqs:
        store.create(req)
    listed = store.list()
    assert [r.created_at for r in listed] == sorted((r.created_at for r in reqs), reverse=True)
    assert [r.created_at for r in store.list(limit=2)] == [
        T0 + timedelta(minutes=7),
        T0 + timedelta(minutes=3),
    ]


def test_list_pending_only(store: Any) -> None:
    reqs = [make_req(created_at=T0 + timedelta(minutes=i)) for i in range(4)]
    for req in reqs:
        store.create(req)
    store.approve(reqs[0].request_id, BOB, now=T0 + timedelta(minutes=5))
    store.deny(reqs[2].request_id, BOB, now=T0 + timedelta(minutes=5), reason="no")
    pending = store.list(pending_only=True)
    assert [r.request_id for r in pending] == [reqs[3].request_id, reqs[1].request_id]
    assert all(r.status == PENDING for r in pending)
    assert len(store.list(pending_only=True, limit=1)) == 1


def test_list_by_requester_and_role(store: Any) -> None:
    a1 = make_req(requester=ALICE, role="prod-readonly", created_at=T0)
    a2 = make_req(requester=ALICE, role="prod-admin", created_at=T0 + timedelta(minutes=1))
    c1 = make_req(requester=CAROL, role="prod-admin", created_at=T0 + timedelta(minutes=2))
    for req in (a1, a2, c1):
        store.create(req)
    store.approve(a2.request_id, BOB, now=T0 + timedelta(minutes=3))

    def ids(**kw: Any) -> list[str]:
        return [r.request_id for r in store.list(**kw)]

    assert ids(requester=ALICE) == [a2.request_id, a1.request_id]
    assert ids(role="prod-admin") == [c1.request_id, a2.request_id]
    assert ids(requester=ALICE, role="prod-admin") == [a2.request_id]
    assert ids(requester=ALICE, pending_only=True) == [a1.request_id]
    assert ids(role="prod-admin", pending_only=True) == [c1.request_id]
    assert ids(requester="nobody@example.com") == []


# ---------------------------------------------------------------- approvals


def test_approve_with_one_approval(store: Any) -> None:
    req = make_req()
    store.create(req)
    now = T0 + timedelta(minutes=2)
    done = store.approve(req.request_id, BOB, now=now, reason="looks fine")
    assert (done.status, done.approval, done.approvers) == (APPROVED, PEER, [BOB])
    assert (done.decided_at, done.decided_by, done.decision_reason) == (now, BOB, "looks fine")
    assert done.version == req.version + 1
    assert store.get(req.request_id) == done


def test_two_approvals_need_two_distinct_approvers(store: Any) -> None:
    req = make_req(min_approvals=2)
    store.create(req)
    first = store.approve(req.request_id, BOB, now=T0 + timedelta(minutes=1))
    assert (first.status, first.approvers) == (PENDING, [BOB])
    again = store.approve(req.request_id, "Bob@Example.com", now=T0 + timedelta(minutes=2))
    assert (again.status, again.approvers) == (PENDING, [BOB])  # the same person counts once
    done = store.approve(req.request_id, CAROL, now=T0 + timedelta(minutes=3))
    assert (done.status, done.approval, done.approvers) == (APPROVED, PEER, [BOB, CAROL])
    assert done.decided_by == CAROL
    assert store.list(pending_only=True) == []


def test_requester_cannot_approve_their_own_request(store: Any) -> None:
    req = make_req(requester=ALICE)
    store.create(req)
    for who in (ALICE, " Alice@Example.COM "):
        with pytest.raises(Denied) as exc:
            store.approve(req.request_id, who, now=T0 + timedelta(minutes=1))
        assert exc.value.exit_code == ExitCode.DENIED
    assert store.get(req.request_id).status == PENDING


def test_racing_approvers_in_threads_exactly_one_wins(store: Any) -> None:
    req = make_req()
    store.create(req)
    approvers = [f"approver{i}@example.com" for i in range(8)]
    barrier = threading.Barrier(len(approvers))
    results: dict[str, Any] = {}

    def approve(who: str) -> None:
        barrier.wait()
        try:
            results[who] = store.approve(req.request_id, who, now=T0 + timedelta(minutes=1))
        except Exception as exc:  # recorded, asserted below
            results[who] = exc

    threads = [threading.Thread(target=approve, args=(who,)) for who in approvers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    winners = [who for who, r in results.items() if isinstance(r, AccessRequest)]
    losers = [r for r in results.values() if not isinstance(r, AccessRequest)]
    assert len(winners) == 1, results
    assert len(losers) == 7 and all(isinstance(e, TransitionError) for e in losers), losers
    assert all("already approved" in str(e) for e in losers)
    final = store.get(req.request_id)
    assert (final.status, final.approvers, final.version) == (APPROVED, winners, 1)


_RACER = """
import sys
from datetime import datetime
from pathlib import Path
from jitctl.store import TransitionError
from jitctl.store.sqlite import SqliteStore
path, request_id, who, now = sys.argv[1:]
store = SqliteStore(Path(path))
print("ready", flush=True)
sys.stdin.readline()  # the start line: every racer has imported and opened the store
try:
    store.approve(request_id, who, now=datetime.fromisoformat(now))
    print("won")
except TransitionError as exc:
    print("lost:", exc)
"""


@pytest.mark.slow
def test_racing_approvers_in_processes_exactly_one_wins(sqlite: SqliteStore) -> None:
    req = make_req()
    sqlite.create(req)
    now = (T0 + timedelta(minutes=1)).isoformat()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _RACER,
                str(sqlite.path),
                req.request_id,
                f"p{i}@example.com",
                now,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(8)
    ]
    # Every process imports first and says so; then they are all released at once.
    assert all(p.stdout.readline() == "ready\n" for p in procs), [p.stderr.read() for p in procs]
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    outputs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    lines = [out.strip() for out, _ in outputs]
    assert lines.count("won") == 1, lines
    assert sum(line.startswith("lost:") and "already approved" in line for line in lines) == 7
    assert sqlite.get(req.request_id).version == 1


# ---------------------------------------------------------------- expiry


def test_approve_after_expiry_expires_the_request(store: Any) -> None:
    req = make_req()
    store.create(req)
    late = req.expires_at + timedelta(seconds=1)
    with pytest.raises(RequestExpired) as exc:
        store.approve(req.request_id, BOB, now=late)
    assert exc.value.exit_code == ExitCode.TIMEOUT
    got = store.get(req.request_id)
    assert (got.status, got.approvers, got.decided_at) == (EXPIRED, [], late)
    assert store.list(pending_only=True) == []
    with pytest.raises(RequestExpired, match="expired before a decision"):  # still exit 4
        store.approve(req.request_id, BOB, now=late)


def test_deny_and_cancel_after_expiry_also_expire(store: Any) -> None:
    a, b = make_req(), make_req()
    for req in (a, b):
        store.create(req)
    with pytest.raises(RequestExpired):
        store.deny(a.request_id, BOB, now=a.expires_at, reason="too late")
    with pytest.raises(RequestExpired):
        store.cancel(b.request_id, ALICE, now=b.expires_at + timedelta(hours=1))
    assert {store.get(r.request_id).status for r in (a, b)} == {EXPIRED}


def test_get_and_list_at_a_time_report_lapsed_requests_without_writing(store: Any) -> None:
    a, b, c = (make_req(created_at=T0 + timedelta(seconds=i)) for i in range(3))
    for req in (a, b, c):
        store.create(req)
    assert store.get(a.request_id, now=T0).status == PENDING
    assert store.get(a.request_id).status == PENDING  # no `now`: exactly what is stored
    late = c.expires_at  # all three have lapsed
    got = store.get(a.request_id, now=late)
    assert (got.status, got.decided_at) == (EXPIRED, a.expires_at)  # when it lapsed
    assert store.list(pending_only=True, now=late) == []
    assert [r.status for r in store.list(now=late)] == [EXPIRED] * 3
    # A reader (maybe with a clock an hour fast) changed nothing: all three are stored pending,
    # and a reader at the right time still sees them pending.
    assert [r.status for r in store.list()] == [PENDING] * 3
    assert [r.version for r in store.list()] == [a.version] * 3
    assert len(store.list(pending_only=True, now=T0)) == 3
    # A transition at the late time still refuses them, and records the expiry.
    with pytest.raises(RequestExpired):
        store.approve(a.request_id, BOB, now=late)
    assert store.get(a.request_id).status == EXPIRED


def test_expire_explicitly(store: Any) -> None:
    req = make_req()
    store.create(req)
    with pytest.raises(TransitionError, match="does not expire until"):
        store.expire(req.request_id, now=T0)
    done = store.expire(req.request_id, now=req.expires_at)
    assert done.status == EXPIRED
    assert store.expire(req.request_id, now=req.expires_at) == done  # twice: harmless
    approved = make_req()
    store.create(approved)
    store.approve(approved.request_id, BOB, now=T0)
    with pytest.raises(TransitionError, match="already approved"):
        store.expire(approved.request_id, now=approved.expires_at)


# ---------------------------------------------------------------- other transitions


def test_deny(store: Any) -> None:
    req = make_req()
    store.create(req)
    with pytest.raises(UsageError, match="needs a reason"):
        store.deny(req.request_id, BOB, now=T0, reason=" ")
    now = T0 + timedelta(minutes=1)
    done = store.deny(req.request_id, BOB, now=now, reason="not during the freeze")
    assert (done.status, done.decided_by, done.decided_at) == (DENIED, BOB, now)
    assert done.decision_reason == "not during the freeze"
    assert store.get(req.request_id) == done


def test_cancel(store: Any) -> None:
    req = make_req()
    store.create(req)
    done = store.cancel(req.request_id, ALICE, now=T0 + timedelta(minutes=1))
    assert (done.status, done.decided_by) == (CANCELLED, ALICE)
    assert store.get(req.request_id).status == CANCELLED


def test_illegal_transitions(store: Any) -> None:
    denied, issued, pending = make_req(), make_req(), make_req()
    for req in (denied, issued, pending):
        store.create(req)
    store.deny(denied.request_id, BOB, now=T0, reason="no")
    store.approve(issued.request_id, BOB, now=T0)
    store.mark_issued(issued.request_id, now=T0, credentials_expire_at=T0 + timedelta(hours=1))

    with pytest.raises(Denied) as exc:  # an approver denied it: exit 3, naming who and why
        store.approve(denied.request_id, CAROL, now=T0)
    assert str(exc.value) == f"request {denied.request_id} was already denied by {BOB}: no"
    assert exc.value.exit_code == ExitCode.DENIED
    with pytest.raises(TransitionError, match="is issued, not pending"):
        store.cancel(issued.request_id, ALICE, now=T0)
    with pytest.raises(TransitionError, match="is pending, not issued"):
        store.mark_revoked(pending.request_id, BOB, now=T0, reason="x")
    with pytest.raises(TransitionError, match="is pending, not approved"):
        store.mark_issued(
            pending.request_id, now=T0, credentials_expire_at=T0
        )  # never pending -> issued
    with pytest.raises(Denied, match="already denied"):
        store.deny(denied.request_id, CAROL, now=T0, reason="again")
    assert [store.get(r.request_id).status for r in (denied, issued, pending)] == [
        DENIED,
        ISSUED,
        PENDING,
    ]


def test_fast_path_issue_then_revoke_twice(store: Any) -> None:
    req = make_req(status=APPROVED, approval=ON_CALL)
    store.create(req)
    now, until = T0 + timedelta(seconds=5), T0 + timedelta(hours=1)
    issued = store.mark_issued(req.request_id, now=now, credentials_expire_at=until)
    assert (issued.status, issued.issued_at, issued.credentials_expire_at) == (ISSUED, now, until)
    assert issued.approval == ON_CALL
    with pytest.raises(TransitionError, match="is issued, not approved"):
        store.mark_issued(req.request_id, now=now, credentials_expire_at=until)
    revoked = store.mark_revoked(req.request_id, BOB, now=now, reason="incident over")
    assert revoked.status == REVOKED
    again = store.mark_revoked(req.request_id, CAROL, now=now + timedelta(minutes=1), reason="x")
    assert again == revoked  # unchanged, not rewritten
    assert store.get(req.request_id).version == revoked.version


# ---------------------------------------------------------------- SQLite specifics


def test_sqlite_file_is_private_and_in_wal_mode(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh" / "jitctl"
    store = open_store(StoreSettings(backend="sqlite"), data_dir=data_dir)
    assert isinstance(store, SqliteStore) and store.path == data_dir / "requests.db"
    store.create(make_req())  # works without init: the schema is created on first use
    assert stat.S_IMODE(os.stat(data_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    import sqlite3

    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(requests)")}
    assert {"requests_status_created", "requests_requester"} <= indexes


def test_sqlite_configured_path_wins(tmp_path: Path) -> None:
    store = open_store(StoreSettings(path=tmp_path / "x.db"), data_dir=tmp_path / "unused")
    assert isinstance(store, SqliteStore) and store.path == tmp_path / "x.db"


# ---------------------------------------------------------------- DynamoDB specifics


def test_dynamodb_table_indexes_and_ttl(dynamo: DynamoStore, ddb: Any) -> None:
    table = ddb.describe_table(TableName=dynamo.table)["Table"]
    assert table["TableStatus"] == "ACTIVE"
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    indexes = {ix["IndexName"]: ix for ix in table["GlobalSecondaryIndexes"]}
    assert [k["AttributeName"] for k in indexes[PENDING_INDEX]["KeySchema"]] == [
        "pending_pk",
        "created_at",
    ]
    assert all(ix["IndexStatus"] == "ACTIVE" for ix in indexes.values())
    ttl = ddb.describe_time_to_live(TableName=dynamo.table)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "ttl")


def test_dynamodb_pending_index_holds_only_pending(dynamo: DynamoStore, ddb: Any) -> None:
    reqs = [make_req(created_at=T0 + timedelta(minutes=i)) for i in range(5)]
    for req in reqs:
        dynamo.create(req)
    dynamo.approve(reqs[0].request_id, BOB, now=T0)
    dynamo.deny(reqs[1].request_id, BOB, now=T0, reason="no")
    dynamo.cancel(reqs[2].request_id, ALICE, now=T0)
    with pytest.raises(RequestExpired):
        dynamo.approve(reqs[3].request_id, BOB, now=T0 + timedelta(hours=1))
    resp = ddb.query(
        TableName=dynamo.table,
        IndexName=PENDING_INDEX,
        KeyConditionExpression="pending_pk = :p",
        ExpressionAttributeValues={":p": {"S": "PENDING"}},
    )
    assert [i["request_id"]["S"] for i in resp["Items"]] == [reqs[4].request_id]
    # A reader reports the lapsed request as expired but writes nothing: it stays in the index
    # (filtered out of pending listings) until a transition records the expiry.
    assert dynamo.list(pending_only=True, now=T0 + timedelta(hours=1)) == []
    assert dynamo.get(reqs[4].request_id).status == PENDING
    dynamo.expire(reqs[4].request_id, now=T0 + timedelta(hours=1))
    resp = ddb.query(
        TableName=dynamo.table,
        IndexName=PENDING_INDEX,
        KeyConditionExpression="pending_pk = :p",
        ExpressionAttributeValues={":p": {"S": "PENDING"}},
    )
    assert resp["Items"] == []
    item = ddb.get_item(TableName=dynamo.table, Key={"request_id": {"S": reqs[0].request_id}})[
        "Item"
    ]
    assert "pending_pk" not in item
    assert int(item["ttl"]["N"]) == int((T0 + timedelta(days=90)).timestamp())


def test_dynamodb_pending_listing_reads_only_pending_items(dynamo: DynamoStore) -> None:
    for i in range(200):
        decided = make_req(created_at=T0 + timedelta(seconds=i), status=APPROVED, approval=ON_CALL)
        dynamo.create(decided)
    denied = make_req(created_at=T0)
    dynamo.create(denied)
    dynamo.deny(denied.request_id, BOB, now=T0, reason="no")  # left pending via a transition
    pending = [make_req(created_at=T0 + timedelta(hours=1, seconds=i)) for i in range(3)]
    for req in pending:
        dynamo.create(req)
    listed = dynamo.list(pending_only=True)
    assert [r.request_id for r in listed] == [r.request_id for r in reversed(pending)]
    assert dynamo.last_items_read == 3


def test_dynamodb_missing_table_says_run_init(ddb: Any) -> None:
    store = DynamoStore(f"missing-{uuid.uuid4().hex[:8]}", lambda service: ddb)
    # Where it was looked for (this factory has no STS, so the account is unknown), and both
    # ways out: another region, or `jitctl init` here.
    missing = r"does not exist in us-east-1 \(account unknown\) \(if the team's table is in another"
    with pytest.raises(ConfigError, match=missing + r".*`jitctl init` creates it there") as exc:
        store.get("req-1")
    assert exc.value.exit_code == ExitCode.USAGE


def test_dynamodb_unreachable_is_aws_unavailable() -> None:
    client = dynamo_client("http://127.0.0.1:9", retries={"max_attempts": 1}, connect_timeout=1)
    store = DynamoStore("t", lambda service: client)
    with pytest.raises(AwsUnavailable, match="cannot reach DynamoDB") as exc:
        store.list(pending_only=True)
    assert exc.value.exit_code == ExitCode.UNAVAILABLE


def test_open_store_dynamodb_needs_a_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs table"):
        open_store(StoreSettings(backend="dynamodb"), data_dir=tmp_path)


def test_importing_the_store_does_not_import_boto() -> None:
    code = (
        "import sys, jitctl.store, jitctl.store.sqlite, jitctl.store.dynamodb;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore')];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_a_failed_delivery_may_be_issued_again_once(store: Any) -> None:
    req = make_req()
    store.create(req)
    store.approve(req.request_id, BOB, now=T0)
    until = T0 + timedelta(hours=1)
    with pytest.raises(TransitionError, match="is approved, not issued"):
        store.mark_delivery_failed(req.request_id, now=T0)  # nothing issued yet
    store.claim_issue(req.request_id, now=T0, planned_end=until)
    store.mark_issued(req.request_id, now=T0, credentials_expire_at=until, attempt=1)
    with pytest.raises(TransitionError, match="already issued"):
        store.claim_issue(req.request_id, now=T0, planned_end=until)
    failed = store.mark_delivery_failed(req.request_id, now=T0 + timedelta(seconds=1))
    assert (failed.status, failed.delivery_failed_at) == (ISSUED, T0 + timedelta(seconds=1))
    later = T0 + timedelta(minutes=2)
    second = store.claim_issue(req.request_id, now=later, planned_end=later + timedelta(hours=1))
    # the first issue's planned end stays: a re-issue never ends later
    assert (second.issue_attempt, second.planned_end) == (2, until)
    assert second.reissued_after == ["delivery_failed"]
    again = store.mark_issued(req.request_id, now=later, credentials_expire_at=until, attempt=2)
    assert (again.status, again.issued_at, again.delivery_failed_at) == (ISSUED, later, None)
    with pytest.raises(TransitionError):  # the retry cleared the mark: a second one loses
        store.claim_issue(req.request_id, now=later, planned_end=until)
    with pytest.raises(Denied, match="already issued again once"):  # and cannot be made again
        store.mark_delivery_failed(req.request_id, now=later)


def test_approve_counts_to_the_policys_min_approvals_not_the_stored_one(store: Any) -> None:
    req = make_req(min_approvals=1)  # as its requester rewrote it
    store.create(req)
    first = store.approve(req.request_id, BOB, now=T0, min_approvals=2)
    assert (first.status, first.approvers, first.min_approvals) == (PENDING, [BOB], 2)
    done = store.approve(req.request_id, CAROL, now=T0, min_approvals=2)
    assert (done.status, done.approvers, done.min_approvals) == (APPROVED, [BOB, CAROL], 2)


def test_the_incident_and_the_page_are_kept_and_the_page_updated(store: Any) -> None:
    req = make_req()
    req.incident = {"id": "PINC1", "number": 7, "title": "db", "service": "PSVC1"}
    store.create(req)
    assert store.get(req.request_id).incident == req.incident
    page = {"service": "PSVCAPPROVE", "id": "PINC2", "status": "open"}
    assert store.set_page(req.request_id, page).page == page
    store.deny(req.request_id, BOB, now=T0, reason="no")
    resolved = store.set_page(req.request_id, page | {"status": "resolved"})  # after the end
    assert resolved.status == DENIED and store.get(req.request_id).page["status"] == "resolved"
    assert store.list(limit=10)[0].incident["number"] == 7
