"""Writing the local audit log: batches of records, in chain order, under the log's lock.

One ``LogWriter`` per log file per process (``writer_for``): its threads' appends meet in a
group commit (``jitctl.audit.commit``), and the leader writes each batch with one
``os.write`` and one ``fsync`` while it holds the log's lock (``exclusive_lock``: the
in-process lock, then the file lock other processes take too). A caller returns only once
its record is durable, so nothing is acknowledged that a crash could lose.

The writer remembers the last record it wrote (chain, seq, hash) and the file as it left it
(device, inode, size, mtime, ctime). While the file still looks exactly like that under the
lock, nobody else wrote it, so the tail is not read and parsed again; any other writer (a
process, an editor replacing the file, a torn-tail repair) changes one of them, and then the
tail is read afresh as before.

A crash mid-batch leaves whole records followed by at most one unfinished line: a torn tail
(``records.is_torn_tail``), which `audit verify` names and the next append moves aside.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jitctl.audit.commit import GroupCommit
from jitctl.audit.records import (
    HASH,
    is_torn_tail,
    log_origin,
    next_position,
    parse_line,
    record_hash,
    record_text,
)
from jitctl.audit.tail import Tail, move_aside, read_tail
from jitctl.errors import AuditError
from jitctl.filelock import OPEN_FLAGS, exclusive_lock, fsync_dir, write_all
from jitctl.timeutil import Clock, rfc3339

VERIFY_HINT = "run `jitctl audit verify`"
# (the record as written, {}) or, when a torn tail was moved aside instead, (None, what was
# moved: the audit_torn_tail fields for one caller of the batch, {} for the others).
Outcome = tuple[dict[str, Any] | None, dict[str, Any]]


@dataclass(frozen=True)
class Job:
    record: dict[str, Any]  # checked and cleaned; ts, chain, seq, prev, hash are set here
    clock: Clock  # the appending log's: stamps ts under the lock, in chain order
    timeout: float  # seconds to wait for the file lock


@dataclass(frozen=True)
class _Mark:
    """The file as this writer left it, and the last record in it."""

    stat: tuple[int, int, int, int, int]
    chain: str
    seq: int
    hash: str


def _stat_key(fd: int) -> tuple[int, int, int, int, int]:
    st = os.fstat(fd)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class LogWriter:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.commits: GroupCommit[Job, Outcome] = GroupCommit(self._flush)
        self._mark: _Mark | None = None  # touched only by the batch's leader

    def append(self, job: Job) -> Outcome:
        return self.commits.submit(job)

    def _flush(self, jobs: list[Job]) -> list[Outcome]:
        with exclusive_lock(self.path, timeout=max(job.timeout for job in jobs)):
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | OPEN_FLAGS, 0o600)
            try:
                return self._flush_locked(fd, jobs)
            finally:
                os.close(fd)

    def _flush_locked(self, fd: int, jobs: list[Job]) -> list[Outcome]:
        key = _stat_key(fd)
        size = key[2]
        mark, self._mark = self._mark, None  # forgotten unless this batch lands whole
        if mark is not None and mark.stat == key:
            last: dict[str, Any] | None = {"chain": mark.chain, "seq": mark.seq, "hash": mark.hash}
            prefix = ""
        else:
            tail = read_tail(fd, size)
            if tail is not None and is_torn_tail(tail.raw, tail.complete):
                moved = move_aside(fd, tail, self.path)
                return [(None, moved if n == 0 else {}) for n in range(len(jobs))]
            last = self._last_record(tail)
            # A whole last record without its newline (e.g. edited by hand): finish the line
            # rather than glue the new record onto it.
            prefix = "" if tail is None or tail.complete else "\n"
        placed = []
        for job in jobs:
            last = self._place(job, last)
            placed.append(last)
        data = (prefix + "".join(record_text(record) + "\n" for record in placed)).encode("utf-8")
        write_all(fd, data)  # a batch is one write: a crash leaves at most one torn line
        os.fsync(fd)
        if size == 0:
            fsync_dir(self.path.parent)  # make the new file's directory entry durable too
        last = placed[-1]
        self._mark = _Mark(_stat_key(fd), last["chain"], last["seq"], last["hash"])
        return [(record, {}) for record in placed]

    def _place(self, job: Job, last: dict[str, Any] | None) -> dict[str, Any]:
        """``job``'s record, stamped and chained after ``last``."""
        record = job.record
        chain, seq = next_position(last)
        record["ts"] = rfc3339(job.clock.now())
        record["chain"] = chain
        record["seq"] = seq
        if seq == 1:  # which log this chain is, for `audit verify --remote` (log_origin)
            record["origin"] = log_origin(self.path)
        record["prev"] = None if last is None else last["hash"]
        record["hash"] = record_hash(record)
        return record

    def _last_record(self, tail: Tail | None) -> dict[str, Any] | None:
        """The log's last record (None for an empty log); AuditError if the line is damaged."""
        if tail is None:
            return None
        record, _ = parse_line(tail.raw)
        stored = record.get("hash") if isinstance(record, dict) else None
        if not isinstance(stored, str) or not HASH.fullmatch(stored):
            raise AuditError(
                f"the audit log {self.path} has a damaged last line "
                "(not a JSON record with a hash); refusing to start a new chain",
                VERIFY_HINT,
            )
        assert isinstance(record, dict)
        return record


_WRITERS: dict[str, LogWriter] = {}
_WRITERS_GUARD = threading.Lock()


def writer_for(path: Path) -> LogWriter:
    """This process's one writer of the log at ``path`` (however many AuditLogs name it)."""
    with _WRITERS_GUARD:
        return _WRITERS.setdefault(os.path.abspath(path), LogWriter(path))


def _forget_writers() -> None:
    """A forked child starts with no batch in flight and nothing remembered (a copy may be
    mid-batch in the parent's other threads)."""
    global _WRITERS_GUARD
    _WRITERS_GUARD = threading.Lock()
    _WRITERS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_writers)
