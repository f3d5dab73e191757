"""Nonces the broker has seen: each proof is accepted once.

A proof is valid for a window around its signature date (``max_skew`` either way), so a nonce
must be remembered until that window has closed for every proof that could carry it; after
that, the date check refuses the proof anyway and the nonce can be forgotten. ``claim`` is one
atomic "insert if absent or expired": two brokers racing on the same nonce cannot both win.

boto3/botocore are imported inside functions: ``jitctl --help`` must not pay for them.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from jitctl.errors import ConfigError, Unavailable
from jitctl.filelock import ensure_dir, exclusive_lock

BUSY_TIMEOUT_S = 15.0
TTL_ATTRIBUTE = "expires"  # epoch seconds; DynamoDB's TTL deletes the item some time after
ACTIVE_TIMEOUT_S = 300

_SCHEMA = """
CREATE TABLE IF NOT EXISTS nonces (nonce TEXT PRIMARY KEY, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS nonces_expires ON nonces (expires);
"""
# One statement, so it is atomic across threads and processes: a new nonce inserts; a known
# nonce whose window has closed is taken over; a live one changes nothing (rowcount 0).
_CLAIM = """
INSERT INTO nonces (nonce, expires) VALUES (?, ?)
ON CONFLICT (nonce) DO UPDATE SET expires = excluded.expires WHERE nonces.expires <= ?
"""


class NonceStore(Protocol):
    def claim(self, nonce: str, *, expires_at: datetime) -> bool:
        """True if ``nonce`` is new (now remembered until ``expires_at``), False for a replay.

        A store judges "expired" by its own clock, which must be the broker's: the clock that
        gives verify_proof its ``now`` (pass the same fake clock to both in tests)."""
        ...

    def init(self) -> None:
        """Make the store ready (`jitctl init`); harmless twice."""
        ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SqliteNonces:
    """Nonces in a SQLite file, for `jitctl broker serve` (one host, any number of workers)."""

    def __init__(self, path: Path | str, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self.path = Path(path)
        self._clock = clock
        self._ready = False
        self._lock = threading.Lock()

    def claim(self, nonce: str, *, expires_at: datetime) -> bool:
        now = self._clock().timestamp()
        try:
            conn = self._open()
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("DELETE FROM nonces WHERE expires <= ?", (now,))  # keep it small
                claimed = conn.execute(_CLAIM, (nonce, expires_at.timestamp(), now)).rowcount
                conn.execute("COMMIT")
            finally:
                conn.close()
        except sqlite3.Error as exc:
            # Fail closed: without the store no proof can be shown to be fresh.
            raise Unavailable(f"the nonce store {self.path} cannot be written: {exc}") from exc
        return claimed == 1

    def init(self) -> None:
        if not self._ready:
            self._set_up()

    def _open(self) -> sqlite3.Connection:
        # A connection per claim: safe across threads; nothing stays locked between calls.
        if not self._ready:
            self._set_up()
        return sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)

    def _set_up(self) -> None:
        # Two processes switching a new file to WAL at once get "database is locked" (SQLite
        # does not wait for that lock), so the first set-up is serialised across processes.
        try:
            ensure_dir(self.path.parent)
            with self._lock, exclusive_lock(self.path):
                if self._ready:
                    return
                os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))  # not sqlite's 0644
                conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
                try:
                    conn.execute("PRAGMA journal_mode=WAL")  # a commit is one append
                    conn.executescript(_SCHEMA)
                finally:
                    conn.close()
                self._ready = True
        except OSError as exc:
            raise ConfigError(
                f"cannot create the nonce store {self.path}: {exc}",
                "check the broker's data directory and its permissions",
            ) from exc


class DynamoNonces:
    """Nonces in a DynamoDB table (key ``nonce``, TTL on ``expires``), for the Lambda broker."""

    def __init__(
        self,
        table: str,
        client_factory: Callable[[str], Any],
        *,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.table = table
        self._client_factory = client_factory
        self._client: Any = None
        self._clock = clock

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._client_factory("dynamodb")
        return self._client

    def claim(self, nonce: str, *, expires_at: datetime) -> bool:
        # TTL deletion lags by up to days, so an expired item still present is taken over.
        try:
            self._call(
                "put_item",
                TableName=self.table,
                Item={
                    "nonce": {"S": nonce},
                    TTL_ATTRIBUTE: {"N": str(math.ceil(expires_at.timestamp()))},
                },
                ConditionExpression="attribute_not_exists(#n) OR #e <= :now",
                ExpressionAttributeNames={"#n": "nonce", "#e": TTL_ATTRIBUTE},
                ExpressionAttributeValues={
                    ":now": {"N": str(math.floor(self._clock().timestamp()))}
                },
            )
        except _Taken:
            return False
        return True

    def init(self) -> None:
        """Create the table, wait until it is ACTIVE, enable TTL on ``expires``. Harmless twice."""
        try:
            self._call(
                "create_table",
                TableName=self.table,
                BillingMode="PAY_PER_REQUEST",
                KeySchema=[{"AttributeName": "nonce", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "nonce", "AttributeType": "S"}],
            )
        except _InUse:
            pass  # made by an earlier init
        self._wait_active()
        self._enable_ttl()

    def _wait_active(self) -> None:
        from jitctl.aws import translate_error

        try:
            self.client.get_waiter("table_exists").wait(
                TableName=self.table,
                WaiterConfig={"Delay": 2, "MaxAttempts": ACTIVE_TIMEOUT_S // 2},
            )
        except Exception as exc:  # WaiterError, or the errors of its DescribeTable calls
            raise translate_error(exc, f"waiting for DynamoDB nonce table {self.table}") from exc

    def _enable_ttl(self) -> None:
        ttl = self._call("describe_time_to_live", TableName=self.table)
        ttl = ttl.get("TimeToLiveDescription", {})
        if ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
            if ttl.get("AttributeName") != TTL_ATTRIBUTE:
                raise ConfigError(
                    f"DynamoDB table {self.table} has TTL on {ttl.get('AttributeName')!r}, "
                    f"not {TTL_ATTRIBUTE!r}",
                    "point the broker's nonce table at a table jitctl created",
                )
            return
        self._call(
            "update_time_to_live",
            TableName=self.table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
        )

    def _call(self, op: str, **kwargs: Any) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        from jitctl.aws import translate_error

        try:
            answer: dict[str, Any] = getattr(self.client, op)(**kwargs)
            return answer
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ConditionalCheckFailedException":
                raise _Taken() from exc
            if code == "ResourceInUseException" and op == "create_table":
                raise _InUse() from exc
            if code == "ResourceNotFoundException":
                raise ConfigError(
                    f"DynamoDB nonce table {self.table} does not exist", "run `jitctl init`"
                ) from exc
            raise translate_error(exc, f"DynamoDB {op} on nonce table {self.table}") from exc
        except Exception as exc:
            raise translate_error(exc, f"DynamoDB {op} on nonce table {self.table}") from exc


class _Taken(Exception):
    """The nonce is held by an earlier, still-live proof."""


class _InUse(Exception):
    """create_table found the table already there."""
