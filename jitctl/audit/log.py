"""The local audit log: JSON Lines with a SHA-256 hash chain (shared/CONTRACT.md, "Audit records").

Each record carries ``prev`` (the previous record's ``hash``, null in the first) and
``hash``: hex SHA-256 of the record without ``hash``, serialized as
``json.dumps(record, sort_keys=True, separators=(",", ":"))`` (ensure_ascii left at True)
in UTF-8. Editing, removing, reordering or inserting a record breaks the chain.

The chain shows tampering by someone who does not recompute every later hash; it is not a
signature. Appends take an exclusive lock so concurrent processes extend one chain.

Records also carry ``chain`` (a random id of this local log, fixed by its first record and
read back from the last record on each append) and ``seq`` (1-based position in that chain),
so a central copy (jitctl.audit.sink) can be checked record by record: ``verify_central``.
The first record of a chain also carries ``origin`` (``log_origin``: this host and path), so
the central copy can tell which chains are this log's even after the log was emptied.
Logs written before these fields existed still verify; their next record starts a chain.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from jitctl.audit.tail import Tail, move_aside, read_tail, torn_path
from jitctl.errors import AuditError, AuditTampered
from jitctl.filelock import (
    OPEN_FLAGS,
    ensure_dir,
    exclusive_lock,
    fsync_dir,
    require_regular,
    write_all,
)
from jitctl.jsonstrict import no_duplicate_keys
from jitctl.sanitize import clean
from jitctl.timeutil import Clock, rfc3339

EVENTS = (
    "requested",
    "auto_approved",
    "approved",
    "denied",
    "expired",
    "cancelled",
    "issued",
    "revoked",
    # failures are recorded too, so the log explains why nothing was issued
    "issue_failed",
    "oncall_check_failed",
    "notify_failed",
    "audit_sink_failed",
    "revoke_failed",
    "audit_torn_tail",  # an unfinished last line was moved aside (see AuditLog.append)
)
REQUIRED_FIELDS = ("ts", "event", "request_id", "actor", "person", "role", "prev", "hash")
_RESERVED = frozenset({"ts", "event", "prev", "hash", "chain", "seq", "origin"})
_SECRET_WORDS = ("secret", "password", "passwd", "token")  # session_token, token, ...
_EVENT_NAME = re.compile(r"[a-z][a-z0-9_]*")
_HASH = re.compile(r"[0-9a-f]{64}")
CHAIN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # safe in an S3 key and a DynamoDB key
_LOCK_TIMEOUT = 30.0  # seconds; a stuck writer should produce an error, not a hang
_VERIFY_HINT = "run `jitctl audit verify`"
_MAX_TORN_REPAIRS = 3  # per append; each repair removes one torn tail


def is_torn_tail(raw: bytes, complete: bool) -> bool:
    """Whether the log's last line is a torn tail: a write cut short (disk full, a crash).

    Every record is written as one ``os.write`` of the JSON line and its newline, so a line
    without its newline that is not a whole record with a hash never finished: ``append``
    raised, and no command reported it as recorded. A line that ends in a newline was written
    in full; if it is damaged, that is tampering (or another program's doing), not a tear.
    """
    if complete:
        return False
    record, _ = parse_line(raw)
    return not (isinstance(record, dict) and _HASH.fullmatch(str(record.get("hash"))))


def record_hash(record: dict[str, Any]) -> str:
    """The contract's formula, applied to ``record`` minus any ``hash`` key."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")
    ).hexdigest()


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    records: int  # records checked and found good (all of them when ok)
    first_bad_line: int | None = None  # 1-based
    problem: str | None = None
    torn_tail: bool = False  # the failure is an unfinished last line, not an edited record


class AuditLog:
    # The local log alone; AuditTrail adds central sinks (audit.sink.Sink: not named here, as
    # sink imports this module)
    sinks: Sequence[Any] = ()

    def __init__(self, path: Path, clock: Clock) -> None:
        self.path = path
        self.clock = clock

    def append(
        self,
        event: str,
        *,
        request_id: str | None,
        actor: str,
        person: str | None,
        role: str | None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Append one record and return it (with ``prev`` and ``hash``).

        Raises ValueError for a bad event name, a reserved or secret-looking field, or a
        value JSON cannot carry; AuditError if the record could not be made durable.
        """
        if not _EVENT_NAME.fullmatch(event):
            raise ValueError(f"invalid audit event name {event!r}")
        for name in fields:
            if name in _RESERVED:
                raise ValueError(f"audit field {name!r} is set by the log itself")
        fields = {name: cleaned(value) for name, value in fields.items()}
        _refuse_secrets(fields)
        record: dict[str, Any] = {
            "ts": "",
            "event": event,
            "request_id": request_id,
            "actor": actor,
            "person": person,
            "role": role,
            **fields,
        }
        try:
            # Fail before touching the file if a value is not plain JSON (or is NaN).
            json.dumps(record, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ValueError(f"audit record is not plain JSON: {e}") from None

        for _ in range(_MAX_TORN_REPAIRS):
            written, moved = self._append_once(record)
            if written is not None:
                return written
            # Through self.append, so the central sinks get this record like any other (their
            # chains must stay gap-free); the lock was released, so this does not deadlock.
            self.append(
                "audit_torn_tail", request_id=None, actor=actor, person=person, role=None, **moved
            )
        raise AuditError(
            f"the audit log {self.path} kept ending in an unfinished line", _VERIFY_HINT
        )

    def _append_once(self, record: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """(the record as written, {}), or (None, what was moved) when a torn tail had to be
        moved aside first: the caller records that, then tries again."""
        require_regular(self.path, "the audit log")  # exit 2, not an audit failure
        try:
            ensure_dir(self.path.parent)
            with exclusive_lock(self.path, timeout=_LOCK_TIMEOUT):
                return self._append_locked(record)
        except OSError as e:
            raise AuditError(
                f"cannot write the audit log {self.path}: {e.strerror or e}",
                "jitctl does nothing it cannot record; fix the path or permissions and retry",
            ) from None

    def _append_locked(
        self, record: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | OPEN_FLAGS, 0o600)
        try:
            size = os.fstat(fd).st_size
            tail = read_tail(fd, size)
            if tail is not None and is_torn_tail(tail.raw, tail.complete):
                return None, move_aside(fd, tail, self.path)
            last = self._last_record(tail)
            ends_with_newline = tail is None or tail.complete
            chain, seq = _next_position(last)
            record["ts"] = rfc3339(self.clock.now())
            record["chain"] = chain
            record["seq"] = seq
            if seq == 1:  # which log this chain is, for `audit verify --remote` (log_origin)
                record["origin"] = log_origin(self.path)
            record["prev"] = None if last is None else last["hash"]
            record["hash"] = record_hash(record)
            line = record_text(record) + "\n"
            # A whole last record without its newline (e.g. edited by hand): finish the line
            # rather than glue the new record onto it.
            data = (line if ends_with_newline else "\n" + line).encode("utf-8")
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if size == 0:
            fsync_dir(self.path.parent)  # make the new file's directory entry durable too
        return record, {}

    def _last_record(self, tail: Tail | None) -> dict[str, Any] | None:
        """The log's last record (None for an empty log); AuditError if the line is damaged."""
        if tail is None:
            return None
        record, _ = parse_line(tail.raw)
        stored = record.get("hash") if isinstance(record, dict) else None
        if not isinstance(stored, str) or not _HASH.fullmatch(stored):
            raise AuditError(
                f"the audit log {self.path} has a damaged last line "
                "(not a JSON record with a hash); refusing to start a new chain",
                _VERIFY_HINT,
            )
        assert isinstance(record, dict)
        return record


def _next_position(last: dict[str, Any] | None) -> tuple[str, int]:
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


def is_seq(value: Any) -> TypeGuard[int]:
    return type(value) is int and value >= 1


def verify(path: Path) -> VerifyResult:
    """Check every record and the chain. Missing or empty log: ok with 0 records.

    Raises AuditError if the log cannot be read at all.
    """
    good = 0
    previous_hash: str | None = None
    previous: dict[str, Any] | None = None
    try:
        for number, raw, complete in _lines(path):
            if is_torn_tail(raw, complete):
                return VerifyResult(False, good, number, _torn_problem(path, raw), torn_tail=True)
            record, problem = parse_line(raw)
            if record is None:
                return VerifyResult(False, good, number, problem)
            missing = [name for name in REQUIRED_FIELDS if name not in record]
            if missing:
                return VerifyResult(False, good, number, f"missing field {missing[0]!r}")
            if not isinstance(record["hash"], str) or record_hash(record) != record["hash"]:
                return VerifyResult(False, good, number, "hash mismatch: the record was edited")
            if good == 0 and record["prev"] is not None:
                return VerifyResult(
                    False,
                    good,
                    number,
                    "first record has a non-null prev: records before it were removed",
                )
            if good > 0 and record["prev"] != previous_hash:
                return VerifyResult(
                    False,
                    good,
                    number,
                    f"prev does not match line {number - 1}'s hash: "
                    "a record was removed, reordered or inserted",
                )
            position = _position_problem(record, previous)
            if position:
                return VerifyResult(False, good, number, position)
            previous_hash = record["hash"]
            previous = record
            good += 1
    except OSError as e:
        raise AuditError(f"cannot read the audit log {path}: {e.strerror or e}") from None
    return VerifyResult(True, good)


def _torn_problem(path: Path, raw: bytes) -> str:
    return (
        f"torn tail: the last line ({len(raw)} bytes, no newline, not a whole record) is a "
        "write that was cut short and never acknowledged; the records before it are intact. "
        f"The next jitctl command that writes the log moves it to {torn_path(path)} and "
        "records audit_torn_tail"
    )


def _position_problem(record: dict[str, Any], previous: dict[str, Any] | None) -> str | None:
    """chain/seq (when present) continue the previous record's chain, or start one at 1."""
    if "chain" not in record and "seq" not in record:
        return None  # written before records carried a position
    chain, seq = record.get("chain"), record.get("seq")
    if not isinstance(chain, str) or not CHAIN_ID.fullmatch(chain) or not is_seq(seq):
        return "chain/seq malformed"
    same_chain = previous is not None and previous.get("chain") == chain
    expected = previous["seq"] + 1 if same_chain and previous is not None else 1
    if seq != expected:
        return f"seq {seq} of chain {chain} should be {expected}"
    return None


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every record, in order (see ``iter_records``): for the callers that need them all."""
    return list(iter_records(path))


def iter_records(path: Path, keep: Callable[[bytes], bool] | None = None) -> Iterator[dict[str, Any]]:
    """The records of the log, in order, read one line at a time (memory flat in the log's
    size); with ``keep``, only lines it accepts are parsed (a cheap filter on the raw bytes).
    Missing log: none. A line that is not a record: AuditTampered. A torn tail is skipped: it
    was never a record (see ``is_torn_tail``)."""
    try:
        for number, raw, complete in _lines(path):
            if (keep is not None and not keep(raw)) or is_torn_tail(raw, complete):
                continue
            record, problem = parse_line(raw)
            if record is None:
                raise AuditTampered(f"audit log {path} line {number}: {problem}", _VERIFY_HINT)
            yield record
    except OSError as e:
        raise AuditError(f"cannot read the audit log {path}: {e.strerror or e}") from None


def record_text(record: dict[str, Any]) -> str:
    """The record as the local log writes it and the central sinks store it: the hashing form
    plus "hash". ASCII-only, so odd strings (lone surrogates) still write."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def _refuse_secrets(value: Any, where: str = "") -> None:
    """Cheap guard: no field (at any depth) may be named like a secret."""
    if isinstance(value, dict):
        for key, inner in value.items():
            lowered = str(key).lower()
            if any(word in lowered for word in _SECRET_WORDS):
                raise ValueError(f"audit field {where}{key!r} looks like a secret; not logged")
            _refuse_secrets(inner, f"{where}{key}.")
    elif isinstance(value, list | tuple):
        for inner in value:
            _refuse_secrets(inner, where)


def cleaned(value: Any) -> Any:
    """``value`` with every string in it passed through the one rule for other people's text
    (``sanitize.clean``, which also cleans reasons): whatever a caller sent (a delivery error,
    a reason, an incident id quoted in a refusal) is recorded without escape sequences or
    bidi controls, so `audit log --json` never carries them to a terminal or a spreadsheet."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        return {key: cleaned(inner) for key, inner in value.items()}
    if isinstance(value, list | tuple):
        return [cleaned(inner) for inner in value]
    return value


def _lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    """(1-based number, bytes without the newline, whether it had one) for each line; a
    final newline ends the last line rather than starting an empty one."""
    require_regular(path, "the audit log")  # a FIFO would block the reader for ever
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return
    with handle:
        for number, raw in enumerate(handle, start=1):
            complete = raw.endswith(b"\n")
            yield number, raw[:-1] if complete else raw, complete


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
