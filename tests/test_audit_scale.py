"""A year of audit (issue 25 part 3): reading the log streams, filters skip what cannot match,
and the threads of one process append without waiting on the file lock's polling."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import tracemalloc
from pathlib import Path

import pytest

import jitctl.audit.log as audit_log
from jitctl.audit.log import AuditLog, read_records, verify
from jitctl.audit.stream import matching
from tests.conftest import FixedClock

ACTOR = "arn:aws:iam::123456789012:user/alice@example.com"


def contract_line(record: dict) -> str:
    """The record with its contract hash, as one line (escapes as json.dumps makes them)."""
    body = json.dumps(record, sort_keys=True, separators=(",", ":"))
    record = {**record, "hash": hashlib.sha256(body.encode()).hexdigest()}
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def write_records(path: Path, count: int, person: str = "alice@example.com") -> None:
    """``count`` chained records straight to the file (fast: no append per record)."""
    prev = None
    with open(path, "w", encoding="utf-8") as out:
        for seq in range(1, count + 1):
            record = {
                "ts": f"2026-11-21T04:{seq // 60 % 60:02d}:{seq % 60:02d}Z",
                "event": "requested",
                "request_id": f"req-{seq}",
                "actor": ACTOR,
                "person": person,
                "role": "prod-readonly",
                "reason": "x" * 200,
                "chain": "c0ffee",
                "seq": seq,
                "prev": prev,
            }
            line = contract_line(record)
            prev = json.loads(line)["hash"]
            out.write(line + "\n")


def add(log: AuditLog, request_id: str, **fields) -> dict:
    return log.append(
        "requested",
        request_id=request_id,
        actor=ACTOR,
        person=fields.pop("person", "alice@example.com"),
        role="prod-readonly",
        **fields,
    )


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.jsonl"


# --- filters: skip unparsed what cannot match, never miss what does -------------------------


def test_the_request_filter_finds_escaped_and_non_ascii_values(log_path: Path) -> None:
    """A line may spell a value with escapes (\\u0072 for r) and still be a good record; the
    raw-line filter must let it through. A value only quoted elsewhere (a reason) is not it."""
    log = AuditLog(log_path, FixedClock(tick=1))
    add(log, "req-1")
    add(log, "req-2", reason="follow-up of req-1")  # mentions it: not its record
    add(log, "réq-1", person="zoë@example.com")  # written as \u00e9 by ensure_ascii
    add(log, "req-1")
    # Hand-spelled: the same record, its request id escaped (still valid JSON, same hash).
    text = log_path.read_text().splitlines()
    text[3] = text[3].replace('"request_id":"req-1"', '"request_id":"\\u0072eq-1"')
    assert "\\u0072eq-1" in text[3]
    log_path.write_text("\n".join(text) + "\n")
    assert verify(log_path).ok  # the escape changes nothing the hash covers

    everything = read_records(log_path)
    for wanted in ("req-1", "réq-1", "req-2"):
        found = list(matching(log_path, request_id=wanted))
        assert found == [r for r in everything if r["request_id"] == wanted], wanted
    assert [r["seq"] for r in matching(log_path, request_id="req-1")] == [1, 4]
    assert [r["seq"] for r in matching(log_path, person="zoë@example.com")] == [3]


def test_lines_that_cannot_match_are_never_parsed(log_path: Path, monkeypatch) -> None:
    write_records(log_path, 500)
    parsed = []
    real = audit_log.parse_line

    def counting(raw: bytes):
        parsed.append(raw)
        return real(raw)

    monkeypatch.setattr(audit_log, "parse_line", counting)
    found = list(matching(log_path, request_id="req-250"))
    assert [r["request_id"] for r in found] == ["req-250"]
    # req-250 is a substring of no other id (req-2500 would be): one line parsed of 500.
    assert len(parsed) == 1, len(parsed)


def test_a_damaged_line_that_may_match_is_still_tampering(log_path: Path) -> None:
    from jitctl.errors import AuditTampered

    write_records(log_path, 3)
    with open(log_path, "ab") as out:
        out.write(b'{"request_id":"req-2", not json\n')
    with pytest.raises(AuditTampered, match="line 4"):
        list(matching(log_path, request_id="req-2"))


# --- memory flat in the log's size --------------------------------------------------------


def peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


class NullOut:
    """A stdout that keeps nothing (what a pipe to another program is, memory-wise)."""

    written = 0

    def write(self, text: str) -> int:
        self.written += len(text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


@pytest.mark.slow  # tracemalloc over 22,000 records, printed twice
def test_reading_and_printing_the_log_keeps_memory_flat(tmp_path: Path, monkeypatch) -> None:
    """The --json array and the table are written record by record: peak memory does not
    grow with the log (20,000 records hold ~8 MB as dicts; the whole output is ~20 MB)."""
    from jitctl.cli.audit_cmd import _HashCount, _table
    from jitctl.cli.output import emit_json_array

    small, large = tmp_path / "small.jsonl", tmp_path / "large.jsonl"
    write_records(small, 2_000)
    write_records(large, 20_000)
    out = NullOut()
    monkeypatch.setattr(sys, "stdout", out)

    def as_json(path: Path) -> None:
        emit_json_array(_HashCount().passing(matching(path)))

    def as_table(path: Path) -> None:
        _table(matching(path))

    for show in (as_json, as_table):
        peaks = [peak_bytes(lambda p=p, s=show: s(p)) for p in (small, large)]
        assert peaks[1] < 4 * 1024 * 1024, (show.__name__, peaks)
        assert peaks[1] < 2 * peaks[0], (show.__name__, peaks)  # 10x the log, not 10x memory
    assert out.written > 20_000 * 300  # everything was written


# --- the command: one JSON array, bad bytes, exit codes -------------------------------------


def jitctl(tmp_path: Path, log_path: Path, *args: str) -> subprocess.CompletedProcess:
    config = tmp_path / "config.toml"
    config.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "JITCTL_"))}
    env.update(JITCTL_CONFIG=str(config), JITCTL_AUDIT_LOG=str(log_path))
    return subprocess.run(
        [sys.executable, "-m", "jitctl", *args],
        env=env,
        capture_output=True,
        timeout=60,
        cwd=tmp_path,
    )


def test_log_json_is_one_array_of_every_record(tmp_path: Path, log_path: Path) -> None:
    write_records(log_path, 1234)  # more than one batch of the writer
    out = jitctl(tmp_path, log_path, "audit", "log", "--json")
    assert out.returncode == 0, out.stderr
    records = read_records(log_path)
    assert json.loads(out.stdout) == records
    assert out.stdout.decode() == json.dumps(records, indent=2, sort_keys=True) + "\n"
    empty = jitctl(tmp_path, log_path, "audit", "log", "--json", "--request", "nobody")
    assert empty.returncode == 0 and json.loads(empty.stdout) == []


def test_invalid_utf8_is_one_line_and_exit_6_and_one_json_document(
    tmp_path: Path, log_path: Path
) -> None:
    """A bad line found before anything was printed: the error's document. Found after
    records were printed: the array is closed (a prefix of the log), never left open."""
    bad = b'{"request_id":"req-9","reason":"\xff\xfe"}\n'
    write_records(log_path, 3)
    with open(log_path, "ab") as out:
        out.write(bad)
    shown = jitctl(tmp_path, log_path, "audit", "log", "--json")
    assert shown.returncode == 6, shown.stderr
    assert b"Traceback" not in shown.stderr and b"line 4: not UTF-8" in shown.stderr
    assert json.loads(shown.stdout)["error"]["exit_code"] == 6
    for args in (("audit", "log"), ("audit", "export", "--format", "csv"), ("audit", "verify")):
        out = jitctl(tmp_path, log_path, *args)
        assert out.returncode == 6 and b"Traceback" not in out.stderr, (args, out.stderr)

    write_records(log_path, 1500)
    with open(log_path, "ab") as out:
        out.write(bad)
    shown = jitctl(tmp_path, log_path, "audit", "log", "--json")
    assert shown.returncode == 6 and b"line 1501: not UTF-8" in shown.stderr
    seqs = [r["seq"] for r in json.loads(shown.stdout)]
    assert seqs and seqs == list(range(1, len(seqs) + 1)), seqs[-3:]


# --- appends: one writer per process, no polling --------------------------------------------


def test_threads_of_one_process_append_one_chain_without_polling(
    log_path: Path, monkeypatch
) -> None:
    """The broker's threads queue in the process, so none ever waits on the file lock (whose
    wait polls). With a poll interval of an hour and a 10 s lock timeout, a thread that had
    to poll would time out (AuditError) instead of appending."""
    import jitctl.filelock as jfl

    monkeypatch.setattr(jfl, "_POLL_SECONDS", 3600.0)
    monkeypatch.setattr(audit_log, "_LOCK_TIMEOUT", 10.0)
    threads, each = 8, 15
    barrier = threading.Barrier(threads)
    failures: list[BaseException] = []

    def appender(worker: int) -> None:
        log = AuditLog(log_path, FixedClock(tick=1))  # one per request, as in the broker
        barrier.wait()
        try:
            for i in range(each):
                add(log, f"w{worker}-{i}")
        except BaseException as exc:  # reported below, with the others
            failures.append(exc)

    workers = [threading.Thread(target=appender, args=(w,)) for w in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert not failures, failures
    result = verify(log_path)
    assert result.ok and result.records == threads * each, result
    ids = [r["request_id"] for r in read_records(log_path)]
    assert sorted(ids) == sorted(f"w{w}-{i}" for w in range(threads) for i in range(each))
