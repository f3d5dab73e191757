"""One audit record's form: its hash, its line, its place in a chain (shared/CONTRACT.md,
"Audit records"). Pure functions shared by the log's reader (``jitctl.audit.log``) and its
writer (``jitctl.audit.writer``)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from pathlib import Path
from typing import Any, TypeGuard

from jitctl.jsonstrict import no_duplicate_keys

HASH = re.compile(r"[0-9a-f]{64}")
CHAIN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # safe in an S3 key and a DynamoDB key


def is_torn_tail(raw: bytes, complete: bool) -> bool:
    """Whether the log's last line is a torn tail: a write cut short (disk full, a crash).

    Records are written whole lines at a time (one batch of them per ``os.write``, see
    ``jitctl.audit.writer``), so a line without its newline that is not a whole record with
    a hash never finished: ``append`` raised (or the process died before it returned), and no
    command reported it as recorded. A line that ends in a newline was written in full; if it
    is damaged, that is tampering (or another program's doing), not a tear.
    """
    if complete:
        return False
    record, _ = parse_line(raw)
    return not (isinstance(record, dict) and HASH.fullmatch(str(record.get("hash"))))


def record_hash(record: dict[str, Any]) -> str:
    """The contract's formula, applied to ``record`` minus any ``hash`` key."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")
    ).hexdigest()


def record_text(record: dict[str, Any]) -> str:
    """The record as the local log writes it and the central sinks store it: the hashing form
    plus "hash". ASCII-only, so odd strings (lone surrogates) still write."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def parse_line(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    if not raw.strip():
        return None, "empty line"
    try:
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicate_keys)
    except UnicodeDecodeError:
        return None, "not UTF-8"
    except ValueError as e:
        return None, f"not valid JSON ({e})"
    if not isinstance(value, dict):
        return None, "not a JSON object"
    return value, None


def is_seq(value: Any) -> TypeGuard[int]:
    return type(value) is int and value >= 1


def next_position(last: dict[str, Any] | None) -> tuple[str, int]:
    """(chain, seq) for the record after ``last``: a new chain for a new (or pre-chain) log."""
    if last is not None:
        chain, seq = last.get("chain"), last.get("seq")
        if isinstance(chain, str) and CHAIN_ID.fullmatch(chain) and is_seq(seq):
            return chain, seq + 1
    return secrets.token_hex(8), 1


def log_origin(path: Path) -> str:
    """Which local log a chain belongs to: this host and the log's absolute path (and, on
    Lambda, the instance's log stream: each instance has its own /tmp), hashed. The first
    record of each chain carries it, so `audit verify --remote` can tell that a chain in the
    central copy is this log's even when the local log no longer holds any of it (emptied)."""
    import socket

    stream = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
    where = [socket.gethostname(), str(path.resolve()), stream]
    return hashlib.sha256("\0".join(where).encode("utf-8", "surrogateescape")).hexdigest()[:16]
