"""Group commit of the local audit log (jitctl.audit.writer): the threads of one process that
append at once share one write and one fsync, the chain stays one contiguous chain with every
record exactly once (also with a second process writing), and a crash in the middle of a batch
leaves a log that `audit verify` reports as torn, which the next append repairs."""

from __future__ import annotations

import gc
import multiprocessing
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import jitctl.audit.writer as writer
from jitctl.audit.log import AuditLog, read_records, verify
from tests.conftest import FixedClock, clean_env

ACTOR = "arn:aws:iam::123456789012:user/alice@example.com"


def add(log: AuditLog, request_id: str) -> dict[str, Any]:
    return log.append("requested", request_id=request_id, actor=ACTOR, person=None, role=None)


def one_chain(path: Path, expected: set[str]) -> None:
    """``path`` verifies, holds one chain numbered 1..n, and each id in ``expected`` once."""
    result = verify(path)
    assert result.ok, result
    records = read_records(path)
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    assert len({r["chain"] for r in records}) == 1
    ids = [r["request_id"] for r in records]
    assert sorted(ids) == sorted(expected), "a record lost or doubled"


def run_threads(count: int, target: Any) -> None:
    failures: list[BaseException] = []

    def guarded(n: int) -> None:
        try:
            target(n)
        except BaseException as exc:  # reported below, with the others
            failures.append(exc)

    threads = [threading.Thread(target=guarded, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures, failures
    assert not any(t.is_alive() for t in threads)


def hold_first_write_until_queued(monkeypatch: Any, path: Path, queued: int) -> None:
    """The first batch's write waits until ``queued`` appends wait behind it (an event, not a
    sleep), so the next batch holds exactly those."""
    real, calls = writer.write_all, []

    def held(fd: int, data: bytes) -> None:
        calls.append(data)
        if len(calls) == 1:
            assert writer.writer_for(path).commits.wait_queued(queued, timeout=60)
        real(fd, data)

    monkeypatch.setattr(writer, "write_all", held)


def test_concurrent_appends_share_one_write_and_one_fsync(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, FixedClock(tick=1))
    add(log, "first")  # the file exists: no directory fsync below
    threads = 12
    hold_first_write_until_queued(monkeypatch, path, threads - 1)
    fsyncs: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd))[1])
    barrier = threading.Barrier(threads)

    def appender(n: int) -> None:
        barrier.wait(timeout=60)
        add(AuditLog(path, FixedClock(tick=1)), f"t{n}")  # one AuditLog per call, as the broker

    run_threads(threads, appender)
    # One batch of the first thread, then one of the eleven that queued behind it.
    assert len(fsyncs) == 2, fsyncs
    one_chain(path, {"first", *(f"t{n}" for n in range(threads))})


def test_each_caller_gets_its_own_record_back(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "audit.jsonl"
    add(AuditLog(path, FixedClock(tick=1)), "first")
    threads = 6
    hold_first_write_until_queued(monkeypatch, path, threads - 1)
    returned: dict[str, dict[str, Any]] = {}
    barrier = threading.Barrier(threads)

    def appender(n: int) -> None:
        barrier.wait(timeout=60)
        returned[f"t{n}"] = add(AuditLog(path, FixedClock(tick=1)), f"t{n}")

    run_threads(threads, appender)
    on_disk = {r["request_id"]: r for r in read_records(path)}
    for request_id, record in returned.items():
        assert record == on_disk[request_id]


def _process_appender(path: str, worker: int, barrier: Any, threads: int, each: int) -> None:
    def appender(n: int) -> None:
        log = AuditLog(Path(path), FixedClock(tick=1))
        barrier.wait(timeout=60)
        for i in range(each):
            add(log, f"p{worker}-t{n}-{i}")

    run_threads(threads, appender)


def test_threads_of_two_processes_keep_one_contiguous_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    ctx = multiprocessing.get_context("spawn")
    threads, each = 6, 15
    barrier = ctx.Barrier(2 * threads)  # every thread of both processes starts at once
    procs = [
        ctx.Process(target=_process_appender, args=(str(path), w, barrier, threads, each))
        for w in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=180)
    assert [p.exitcode for p in procs] == [0, 0]
    one_chain(path, {f"p{w}-t{n}-{i}" for w in range(2) for n in range(threads) for i in range(each)})


def _append_one(path: str, request_id: str) -> None:
    add(AuditLog(Path(path), FixedClock(tick=1)), request_id)


def test_a_record_another_process_wrote_since_is_chained_to(tmp_path: Path) -> None:
    """This process remembers its last record; another process's append in between must be
    read back, not skipped (the next record's prev is that one's hash)."""
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, FixedClock(tick=1))
    add(log, "mine-1")
    other = multiprocessing.get_context("spawn").Process(
        target=_append_one, args=(str(path), "theirs")
    )
    other.start()
    other.join(timeout=120)
    assert other.exitcode == 0
    add(log, "mine-2")
    one_chain(path, {"mine-1", "theirs", "mine-2"})


def test_a_log_replaced_meanwhile_starts_a_new_chain(tmp_path: Path) -> None:
    """A log moved away (rotated) and a fresh one in its place: the remembered record is not
    the new file's, so the next record starts a chain there with prev null."""
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, FixedClock(tick=1))
    add(log, "old-1")
    path.rename(tmp_path / "audit.jsonl.1")
    path.write_bytes(b"")
    record = add(log, "new-1")
    assert record["prev"] is None and record["seq"] == 1
    one_chain(path, {"new-1"})


# A child that appends one record, then has eight threads append at once: the first write is
# held until seven wait behind it, and the second (a batch of seven) is cut short in the middle
# of its third line by the process dying (os._exit: no cleanup, as a crash or a kill -9).
_CRASHER = """
import os, sys, threading
from pathlib import Path
import jitctl.audit.writer as writer
from jitctl.audit.log import AuditLog
from tests.conftest import FixedClock, clean_env

path = Path(sys.argv[1])
def add(rid):
    AuditLog(path, FixedClock(tick=1)).append(
        "requested", request_id=rid, actor="a", person=None, role=None)
add("before")
real, calls = writer.write_all, []
def crashing(fd, data):
    calls.append(data)
    if len(calls) == 1:
        assert writer.writer_for(path).commits.wait_queued(7, timeout=60)
        return real(fd, data)
    lines = data.split(b"\\n")
    assert len(lines) == 8, len(lines)  # seven records and the empty string after the last
    cut = len(lines[0]) + len(lines[1]) + 2 + len(lines[2]) // 2
    real(fd, data[:cut])
    os.fsync(fd)
    os._exit(7)
writer.write_all = crashing
barrier = threading.Barrier(8)
def worker(n):
    barrier.wait(timeout=60)
    add(f"t{n}")
threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
for t in threads: t.start()
for t in threads: t.join(timeout=60)
sys.exit(3)  # not reached: the second batch ends the process
"""


def test_a_crash_mid_batch_leaves_a_torn_tail_that_the_next_append_repairs(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.jsonl"
    out = subprocess.run(
        [sys.executable, "-c", _CRASHER, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert out.returncode == 7, out.stderr
    result = verify(path)
    # "before", the first batch's one record, two whole records of the cut batch; then a tear.
    assert not result.ok and result.torn_tail, result
    assert result.records == 4 and result.first_bad_line == 5, result
    acknowledged_never = read_records(path)  # whole lines before the tear: a valid prefix
    assert [r["seq"] for r in acknowledged_never] == [1, 2, 3, 4]
    shown = subprocess.run(
        [sys.executable, "-m", "jitctl", "audit", "verify"],
        env=clean_env(HOME=str(tmp_path / "home"), JITCTL_AUDIT_LOG=str(path)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 6 and f"{path}:5: torn tail" in shown.stderr, shown.stderr

    record = add(AuditLog(path, FixedClock(tick=1)), "after")
    records = read_records(path)
    assert [r["event"] for r in records[-2:]] == ["audit_torn_tail", "requested"]
    assert records[-1] == record and verify(path).ok


def test_only_a_chains_first_record_names_its_log(tmp_path: Path) -> None:
    """`origin` (which log a chain is, for `audit verify --remote`) is on seq 1 and only there."""
    from jitctl.audit.records import log_origin

    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, clock=FixedClock())
    for n in range(3):
        add(log, f"r-{n}")
    records = read_records(path)
    assert records[0]["origin"] == log_origin(path)
    assert ["origin" in r for r in records] == [True, False, False]


def test_appending_leaves_no_file_open(tmp_path: Path) -> None:
    """A long-running broker appends for ever: each batch closes the log it opened."""
    fds = Path("/proc/self/fd")
    log = AuditLog(tmp_path / "audit.jsonl", clock=FixedClock())
    add(log, "r-first")  # the writer and its lock file exist from here on
    gc.collect()  # files earlier tests left to the collector close now, not while counting
    before = len(list(fds.iterdir()))
    for n in range(20):
        add(log, f"r-{n}")
    assert len(list(fds.iterdir())) == before
