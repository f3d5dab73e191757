"""Plain `list` against `list --pending` at 100,000 stored requests (SQLite store).

    python -m benchmarks.lists [REQUESTS]      # exits 1 when plain list is over 1.2x

The store is filled in one transaction with rows of exactly the store's shape (its own
``_columns``), 1% of them pending; then the store's own ``list`` is timed both ways (median of
many calls, in one process, alternating), 100 rows each, as `jitctl list` asks.
"""

from __future__ import annotations

import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

CALLS = 41
BUDGET = 1.2


def filled(path: Path, count: int, now: datetime) -> object:
    from jitctl.models import AccessRequest
    from jitctl.store import sqlite as store_sqlite

    store = store_sqlite.SqliteStore(path)
    store.init()
    rows = []
    for i in range(count):
        created = now - timedelta(seconds=count - i)
        req = AccessRequest(
            request_id=f"r-{i:08d}",
            role="prod-readonly",
            requester=f"person{i % 500}@example.com",
            requester_arn="arn:aws:iam::123456789012:user/someone",
            reason="bench",
            duration_seconds=3600,
            status="pending" if i % 100 == 0 else "denied",
            created_at=created,
            expires_at=now + timedelta(hours=1),
        )
        rows.append((*store_sqlite._columns(req), req.request_id))
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO requests (status, requester, role, created_at, expires_at,"
            " version, body, request_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    return store


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as tmp:
        store = filled(Path(tmp) / "store.db", count, now)
        plain_calls, pending_calls = [], []
        store.list(limit=100, now=now)  # warm: schema checked, pages cached
        for _ in range(CALLS):
            plain_calls.append(timed(lambda: store.list(limit=100, now=now)))
            pending_calls.append(timed(lambda: store.list(pending_only=True, limit=100, now=now)))
    plain, pending = statistics.median(plain_calls), statistics.median(pending_calls)
    ratio = plain / pending
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {count:,} requests, median of {CALLS}")
    print(
        f"| plain `list` / `list --pending` (SQLite, 100 rows) | {ratio:.2f}x "
        f"({plain * 1000:.1f} ms / {pending * 1000:.1f} ms) | ≤ {BUDGET}x |"
    )
    return 0 if ratio <= BUDGET else 1


if __name__ == "__main__":
    sys.exit(main())
