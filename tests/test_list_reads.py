"""Plain `jitctl list` reads what it prints (issue 25 part 3), like `list --pending` does."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from jitctl.store.dynamodb import DynamoStore
from jitctl.store.sqlite import SqliteStore
from tests.test_store import T0, dynamo_client, make_req


def filled(path: Path, count: int) -> SqliteStore:
    """``count`` requests, one a minute, through the store's own create()."""
    store = SqliteStore(path)
    for i in range(count):
        store.create(make_req(f"req-{i:05d}", created_at=T0 + timedelta(minutes=i)))
    return store


def steps_of_list(store: SqliteStore, monkeypatch) -> tuple[list[str], int]:
    """(ids listed, SQLite VM steps spent by the list's connection): the steps grow with
    the rows a query visits, so a scan and sort of the whole table shows, a walk of an
    index that stops at the limit does not."""
    steps = [0]
    real_open = SqliteStore._open

    def counting(self: SqliteStore) -> sqlite3.Connection:
        conn = real_open(self)
        conn.set_progress_handler(lambda: steps.__setitem__(0, steps[0] + 1) or 0, 1)
        return conn

    monkeypatch.setattr(SqliteStore, "_open", counting)
    listed = store.list(limit=10)
    monkeypatch.setattr(SqliteStore, "_open", real_open)
    return [r.request_id for r in listed], steps[0]


def test_plain_list_visits_the_rows_it_prints_not_the_table(tmp_path: Path, monkeypatch):
    small = filled(tmp_path / "small.db", 100)
    large = filled(tmp_path / "large.db", 1500)
    small.list(limit=1)  # the schema is settled before anything is counted
    large.list(limit=1)
    ids_small, steps_small = steps_of_list(small, monkeypatch)
    ids_large, steps_large = steps_of_list(large, monkeypatch)
    assert ids_large == [f"req-{i:05d}" for i in range(1499, 1489, -1)]  # newest first
    assert ids_small == [f"req-{i:05d}" for i in range(99, 89, -1)]
    # 15x the rows; a scan and sort would take ~15x the steps.
    assert steps_large < 1.5 * steps_small, (steps_small, steps_large)


def test_a_store_made_before_the_index_gets_it(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    store = filled(path, 3)
    with sqlite3.connect(path) as conn:
        conn.execute("DROP INDEX requests_created")
    again = SqliteStore(path)
    assert [r.request_id for r in again.list(limit=2)] == ["req-00002", "req-00001"]
    with sqlite3.connect(path) as conn:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT body FROM requests "
            "ORDER BY created_at DESC, request_id DESC LIMIT 10"
        ).fetchall()
    assert "requests_created" in str(plan) and "TEMP B-TREE" not in str(plan), plan
    assert store.list(limit=1)


@pytest.fixture
def dynamo(moto_server: str) -> DynamoStore:
    client = dynamo_client(moto_server)
    store = DynamoStore(f"jitctl-{uuid.uuid4().hex[:12]}", lambda service: client)
    store.init()
    return store


def test_plain_list_on_dynamodb_reads_about_what_it_prints(dynamo: DynamoStore) -> None:
    """Through the status index: 300 requests in four statuses, 10 listed, about 10 read
    (the first page of each status's partition), never the table."""
    now = T0 + timedelta(minutes=10)
    for i in range(300):
        req = make_req(f"req-{i:05d}", created_at=T0 + timedelta(seconds=i))
        dynamo.create(req)
        if i % 4 == 1:
            dynamo.deny(req.request_id, "bob@example.com", now=now, reason="no")
        elif i % 4 == 2:
            dynamo.cancel(req.request_id, req.requester, now=now)
    listed = dynamo.list(limit=10, now=now)
    assert [r.request_id for r in listed] == [f"req-{i:05d}" for i in range(299, 289, -1)]
    assert dynamo.last_items_read <= 10 + 2 * 7, dynamo.last_items_read  # 7 statuses' pages
    everything = dynamo.list(limit=1000, now=now)
    assert len(everything) == 300 and len({r.request_id for r in everything}) == 300


def test_a_table_made_before_the_status_index_is_still_listed(moto_server: str, monkeypatch):
    import jitctl.store.dynamodb as store_dynamodb

    older = {k: v for k, v in store_dynamodb._INDEXES.items() if k != "status-index"}
    monkeypatch.setattr(store_dynamodb, "_INDEXES", older)  # an older jitctl's init()
    client = dynamo_client(moto_server)
    store = DynamoStore(f"jitctl-{uuid.uuid4().hex[:12]}", lambda service: client)
    store.init()
    monkeypatch.undo()
    for i in range(3):
        store.create(make_req(f"req-{i:05d}", created_at=T0 + timedelta(seconds=i)))
    listed = store.list(limit=2, now=T0)
    assert [r.request_id for r in listed] == ["req-00002", "req-00001"]
    store.init()  # adds the index
    table = client.describe_table(TableName=store.table)["Table"]
    assert "status-index" in {ix["IndexName"] for ix in table["GlobalSecondaryIndexes"]}
