"""The request store in one SQLite file: the default, for one host.

Several jitctl processes (a requester waiting, an approver approving) share the file, so
every transition runs in ``BEGIN IMMEDIATE``: it takes the write lock before reading, and a
second writer waits (busy_timeout) instead of deciding on a stale read. WAL mode lets
readers carry on while a writer holds that lock.
"""

from __future__ import annotations

import builtins
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from jitctl.errors import DISK_FULL, ConfigError, JitctlError, Unavailable
from jitctl.filelock import require_regular
from jitctl.models import PENDING, AccessRequest
from jitctl.store.base import (
    BaseStore,
    DuplicateRequest,
    Planner,
    StoreError,
    check_new,
    derive,
    not_found,
)
from jitctl.store.records import dumps, from_record, to_record, ts

BUSY_TIMEOUT_MS = 15_000  # longer than any transition takes; a waiter never sees "locked"
SCHEMA_VERSION = 1

# Filterable fields get columns; the whole record is also kept as JSON in ``body`` so new
# model fields need no migration.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY,
    status     TEXT NOT NULL,
    requester  TEXT NOT NULL,
    role       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    version    INTEGER NOT NULL,
    body       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_status_created ON requests (status, created_at);
CREATE INDEX IF NOT EXISTS requests_requester ON requests (requester, created_at);
CREATE INDEX IF NOT EXISTS requests_created ON requests (created_at, request_id);
"""
# Plain `list` walks this index newest first and stops at its limit (no scan, no sort). A file
# at SCHEMA_VERSION made before the index existed gets it on first use: the version is not
# raised for it, so an older jitctl still opens the file.
_NEWEST_INDEX = "requests_created"


class SqliteStore(BaseStore):
    def __init__(self, path: Path) -> None:
        require_regular(path, "the request store")  # before anything is recorded anywhere
        self.path = path
        self.last_items_read = 0  # rows returned by the last list(); parity with DynamoStore
        self._ready = False
        self._ready_lock = threading.Lock()

    # ------------------------------------------------------------ connections

    def _open(self) -> sqlite3.Connection:
        # One connection per operation: safe across threads, and nothing stays locked between calls.
        require_regular(self.path, "the request store")  # SQLite would make -wal files beside
        try:
            if not self.path.parent.exists():
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Create the file 0600 ourselves; sqlite would use 0644 (umask). WAL/SHM files
            # inherit the database file's mode.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        except sqlite3.Error as exc:
            raise _store_error(exc, f"cannot open the request store {self.path}") from exc
        except OSError as exc:
            if exc.errno in DISK_FULL:
                raise Unavailable(f"cannot open the request store {self.path}: {exc}") from exc
            raise ConfigError(
                f"cannot open the request store {self.path}: {exc}",
                "check [store] path in the config and its permissions",
            ) from exc
        # Rows are other people's writes: bytes that are not UTF-8 are shown escaped, not fatal.
        conn.text_factory = lambda raw: raw.decode("utf-8", "surrogateescape")
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            # FULL: a decision that was reported as recorded must survive a power cut.
            conn.execute("PRAGMA synchronous = FULL")  # the first read: "not a database" here
        except sqlite3.Error as exc:
            conn.close()
            raise _store_error(exc, f"cannot open the request store {self.path}") from exc
        return conn

    @contextmanager
    def _conn(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        self._ensure_schema()
        conn = self._open()
        try:
            if write:
                conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            if conn.in_transaction:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise _store_error(exc, f"request store {self.path}") from exc
        finally:
            conn.close()

    def _ensure_schema(self) -> None:
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:  # another thread made it while this one waited for the lock
                return  # type: ignore[unreachable]  # mypy keeps the narrowing across the lock
            conn = self._open()
            try:
                # The schema and user_version are written in one transaction: a file at this
                # version has its schema, and each command is spared a write and its fsync.
                current = conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
                if current and _has_index(conn, _NEWEST_INDEX):
                    self._ready = True
                    return
                # journal_mode is persistent in the file and cannot change inside a transaction.
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("BEGIN IMMEDIATE")
                (version,) = conn.execute("PRAGMA user_version").fetchone()
                if version > SCHEMA_VERSION:
                    conn.execute("ROLLBACK")
                    raise StoreError(
                        f"request store {self.path} was written by a newer jitctl "
                        f"(schema {version}); upgrade jitctl"
                    )
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise _store_error(exc, f"cannot set up the request store {self.path}") from exc
            finally:
                conn.close()
            self._ready = True

    # ------------------------------------------------------------ the interface

    def init(self) -> None:
        """Create the file and schema. Every statement is IF NOT EXISTS: harmless twice."""
        self._ready = False
        self._ensure_schema()

    def create(self, req: AccessRequest) -> None:
        check_new(req)
        with self._conn(write=True) as conn:
            try:
                conn.execute(
                    "INSERT INTO requests (status, requester, role, created_at, expires_at,"
                    " version, body, request_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (*_columns(req), req.request_id),
                )
            except sqlite3.IntegrityError as exc:
                raise DuplicateRequest(f"request {req.request_id} already exists") from exc

    def get(self, request_id: str, *, now: datetime | None = None) -> AccessRequest | None:
        with self._conn(write=False) as conn:
            row = conn.execute(
                "SELECT body FROM requests WHERE request_id = ?", (request_id,)
            ).fetchone()
        return None if row is None else derive(_load(row[0]), now)

    def list(
        self,
        *,
        pending_only: bool = False,
        requester: str | None = None,
        role: str | None = None,
        limit: int = 100,
        now: datetime | None = None,
    ) -> builtins.list[AccessRequest]:
        where: builtins.list[str] = []
        args: builtins.list[Any] = []
        if pending_only:
            where.append("status = ?")
            args.append(PENDING)
            if now is not None:  # lapsed ones are expired now: neither listed nor counted
                where.append("expires_at > ?")
                args.append(ts(now))
        if requester is not None:
            where.append("requester = ?")
            args.append(requester)
        if role is not None:
            where.append("role = ?")
            args.append(role)
        sql = "SELECT body FROM requests"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, request_id DESC LIMIT ?"
        args.append(max(0, limit))
        with self._conn(write=False) as conn:
            rows = conn.execute(sql, args).fetchall()
        self.last_items_read = len(rows)
        return [derive(_load(body), now) for (body,) in rows]

    def _transition(self, request_id: str, plan: Planner) -> AccessRequest:
        with self._conn(write=True) as conn:
            row = conn.execute(
                "SELECT body FROM requests WHERE request_id = ?", (request_id,)
            ).fetchone()
            if row is None:
                raise not_found(request_id)
            current = _load(row[0])
            step = plan(current)  # raising here rolls back: nothing was written
            if step.write is None:
                result = current
            else:
                result = step.write
                result.version = current.version + 1
                # A conditional write, as DynamoDB's: the write lock already keeps others out,
                # and the WHERE on version and status makes the claim hold even without it.
                cur = conn.execute(
                    "UPDATE requests SET status = ?, requester = ?, role = ?, created_at = ?,"
                    " expires_at = ?, version = ?, body = ? WHERE request_id = ?"
                    " AND version = ? AND status = ?",
                    (*_columns(result, step.extra), request_id, current.version, current.status),
                )
                if cur.rowcount != 1:
                    raise StoreError(f"request {request_id} changed while being updated")
        # Raised only after COMMIT: an expiry found on the way is recorded, then reported.
        if step.error is not None:
            raise step.error
        return result


def _store_error(exc: sqlite3.Error, doing: str) -> JitctlError:
    """SQLite's failure as the contract's exit code: a file that is not a (sound) database is
    the config's to fix (2); a full disk or an I/O error is the machine's (5); else a bug (1)."""
    primary = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF  # extended codes: low byte
    if primary in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
        return ConfigError(
            f"{doing}: the file is not a jitctl request store ({exc})",
            "point [store] path at the team's store, or move this file aside and run "
            "`jitctl init` to start a new one",
        )
    if primary in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR):
        return Unavailable(
            f"{doing}: {exc}", "free disk space (or fix the disk) and retry; nothing was changed"
        )
    return StoreError(f"{doing}: {exc}")


def _columns(req: AccessRequest, extra: dict[str, Any] | None = None) -> tuple[Any, ...]:
    """status, requester, role, created_at, expires_at, version, body."""
    record = to_record(req) | (extra or {})
    return (
        req.status,
        req.requester,
        req.role,
        record["created_at"],
        record["expires_at"],
        req.version,
        dumps(record),
    )


def _load(body: str) -> AccessRequest:
    return from_record(json.loads(body, strict=False))  # strict=False: raw control characters


def _has_index(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?", (name,))
    return row.fetchone() is not None
