"""The local audit log: JSON Lines with a SHA-256 hash chain (shared/CONTRACT.md, "Audit records").

Each record carries ``prev`` (the previous record's ``hash``, null in the first) and
``hash``: hex SHA-256 of the record without ``hash``, serialized as
``json.dumps(record, sort_keys=True, separators=(",", ":"))`` (ensure_ascii left at True)
in UTF-8. Editing, removing, reordering or inserting a record breaks the chain.

The chain shows tampering by someone who does not recompute every later hash; it is not a
signature. Appends take an exclusive lock so concurrent processes extend one chain; the
threads of one process that append at once share one write and one fsync under it (group
commit, ``jitctl.audit.writer``), each returning only once its own record is durable.

Records also carry ``chain`` (a random id of this local log, fixed by its first record and
read back from the last record, unless this process wrote it and nobody wrote since) and ``seq`` (1-based position in that chain),
so a central copy (jitctl.audit.sink) can be checked record by record: ``verify_central``.
The first record of a chain also carries ``origin`` (``log_origin``: this host and path), so
the central copy can tell which chains are this log's even after the log was emptied.
Logs written before these fields existed still verify; their next record starts a chain.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jitctl.audit.records import CHAIN_ID as CHAIN_ID
from jitctl.audit.records import is_seq as is_seq
from jitctl.audit.records import is_torn_tail as is_torn_tail
from jitctl.audit.records import log_origin as log_origin
from jitctl.audit.records import parse_line as parse_line
from jitctl.audit.records import record_hash as record_hash
from jitctl.audit.records import record_text as record_text
from jitctl.audit.tail import torn_path as torn_path
from jitctl.audit.writer import VERIFY_HINT as _VERIFY_HINT
from jitctl.audit.writer import Job, writer_for
from jitctl.errors import AuditError, AuditTampered
from jitctl.filelock import ensure_dir, require_regular
from jitctl.sanitize import clean
from jitctl.timeutil import Clock

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
_LOCK_TIMEOUT = 30.0  # seconds; a stuck writer should produce an error, not a hang
_MAX_TORN_REPAIRS = 3  # per append; each repair removes one torn tail


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
            if moved:  # one caller of the batch that found the tear records it; all retry
                # Through self.append, so the central sinks get this record like any other
                # (their chains must stay gap-free); no lock is held here, so no deadlock.
                self.append(
                    "audit_torn_tail", request_id=None, actor=actor, person=person, role=None,
                    **moved,
                )  # fmt: skip
        raise AuditError(
            f"the audit log {self.path} kept ending in an unfinished line", _VERIFY_HINT
        )

    def _append_once(self, record: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """(the record as written, {}), or (None, what was moved) when a torn tail had to be
        moved aside first: the caller records that, then tries again."""
        require_regular(self.path, "the audit log")  # exit 2, not an audit failure
        try:
            ensure_dir(self.path.parent)
            return writer_for(self.path).append(Job(record, self.clock, _LOCK_TIMEOUT))
        except OSError as e:
            raise AuditError(
                f"cannot write the audit log {self.path}: {e.strerror or e}",
                "jitctl does nothing it cannot record; fix the path or permissions and retry",
            ) from None


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
