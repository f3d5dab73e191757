"""The audit log's hash chain, as shared/CONTRACT.md ("Audit records") defines it."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jitctl.audit.log import AuditLog, read_records, torn_path, verify
from jitctl.errors import AuditError, AuditTampered
from tests.conftest import FixedClock

ACTOR = "arn:aws:iam::123456789012:user/alice@example.com"


def contract_hash(record: dict) -> str:
    """Straight from the contract's text, independent of jitctl.audit.log."""
    without = {k: v for k, v in record.items() if k != "hash"}
    text = json.dumps(without, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def add(log: AuditLog, event: str = "requested", n: int = 0, **fields) -> dict:
    return log.append(
        event,
        request_id=f"req-{n}",
        actor=ACTOR,
        person="alice@example.com",
        role="prod-readonly",
        **fields,
    )


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "audit.jsonl"


@pytest.fixture
def log(log_path: Path) -> AuditLog:
    return AuditLog(log_path, FixedClock(tick=1))


def filled(log: AuditLog, count: int = 5) -> list[dict]:
    events = ["requested", "approved", "issued", "revoked", "requested", "denied", "expired"]
    return [add(log, events[i % len(events)], i, reason=f"r{i}") for i in range(count)]


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def test_chain_verifies_and_matches_the_contract_formula(log: AuditLog, log_path: Path) -> None:
    written = filled(log)
    result = verify(log_path)
    assert (result.ok, result.records, result.first_bad_line, result.problem) == (
        True,
        5,
        None,
        None,
    )
    records = read_records(log_path)
    assert records == written
    assert records[0]["prev"] is None
    for before, record in zip(records, records[1:], strict=False):
        assert record["prev"] == before["hash"]
    for record in records:
        assert record["hash"] == contract_hash(record)
        for field in ("ts", "event", "request_id", "actor", "person", "role", "prev", "hash"):
            assert field in record
    assert records[0]["ts"] == "2026-11-21T04:00:01Z"
    assert records[0]["actor"] == ACTOR


def test_empty_or_missing_log_is_ok(log_path: Path) -> None:
    assert verify(log_path).ok and verify(log_path).records == 0
    log_path.parent.mkdir()
    log_path.write_text("")
    assert verify(log_path).ok and verify(log_path).records == 0
    assert read_records(log_path) == []


def test_file_is_0600_and_directory_0700_even_with_umask_zero(
    log: AuditLog, log_path: Path
) -> None:
    old = os.umask(0o000)
    try:
        add(log)
    finally:
        os.umask(old)
    assert stat.S_IMODE(log_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(log_path.parent.stat().st_mode) == 0o700


def test_editing_a_field_fails_naming_the_line(log: AuditLog, log_path: Path) -> None:
    filled(log)
    content = lines(log_path)
    content[2] = content[2].replace('"event":"issued"', '"event":"denied"')
    log_path.write_text("".join(content))
    result = verify(log_path)
    assert not result.ok
    assert result.first_bad_line == 3
    assert result.records == 2
    assert "hash mismatch" in result.problem


def test_editing_with_a_recomputed_hash_breaks_the_next_link(log: AuditLog, log_path: Path) -> None:
    filled(log)
    records = read_records(log_path)
    records[1]["person"] = "mallory@example.com"
    records[1]["hash"] = contract_hash(records[1])
    log_path.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = verify(log_path)
    assert not result.ok and result.first_bad_line == 3 and "prev" in result.problem


def test_removing_a_middle_record_fails(log: AuditLog, log_path: Path) -> None:
    filled(log)
    content = lines(log_path)
    del content[2]
    log_path.write_text("".join(content))
    result = verify(log_path)
    assert not result.ok and result.first_bad_line == 3
    assert "removed, reordered or inserted" in result.problem


def test_swapping_two_records_fails(log: AuditLog, log_path: Path) -> None:
    filled(log)
    content = lines(log_path)
    content[1], content[3] = content[3], content[1]
    log_path.write_text("".join(content))
    result = verify(log_path)
    assert not result.ok and result.first_bad_line == 2


def test_truncating_the_head_fails(log: AuditLog, log_path: Path) -> None:
    filled(log)
    log_path.write_text("".join(lines(log_path)[2:]))
    result = verify(log_path)
    assert not result.ok and result.first_bad_line == 1
    assert "first record" in result.problem


def test_forged_record_with_wrong_prev_fails(log: AuditLog, log_path: Path) -> None:
    written = filled(log)
    forged = dict(written[1], event="approved", request_id="req-forged")
    forged["hash"] = contract_hash(forged)  # internally consistent, but chained to line 2
    with log_path.open("a") as handle:
        handle.write(json.dumps(forged) + "\n")
    result = verify(log_path)
    assert not result.ok and result.first_bad_line == 6 and "prev" in result.problem


def test_missing_field_and_bad_json_are_named(log: AuditLog, log_path: Path) -> None:
    filled(log, 3)
    content = lines(log_path)
    record = json.loads(content[1])
    del record["role"]
    record["hash"] = contract_hash(record)
    log_path.write_text("".join([content[0], json.dumps(record) + "\n", content[2]]))
    result = verify(log_path)
    assert (result.first_bad_line, result.problem) == (2, "missing field 'role'")

    log_path.write_text(content[0] + "{not json\n" + content[2])
    result = verify(log_path)
    assert result.first_bad_line == 2 and "not valid JSON" in result.problem
    with pytest.raises(AuditTampered):
        read_records(log_path)


def test_duplicate_keys_are_refused(log: AuditLog, log_path: Path) -> None:
    add(log)
    line = log_path.read_text()
    log_path.write_text('{"event":"approved",' + line[1:])
    result = verify(log_path)
    assert not result.ok and "duplicate key" in result.problem


@pytest.mark.parametrize(
    "tail",
    # Each of these lines ends in a newline, so it was written in full: damage, not a tear
    # (a line cut short without its newline is a torn tail: see the tests below).
    [b'{"event":"issued"}\n', b"\n", b"garbage\n", b'{"event":"issued","request_id":"r"\n'],
)
def test_damaged_tail_refuses_further_appends(log: AuditLog, log_path: Path, tail: bytes) -> None:
    filled(log, 3)
    with log_path.open("ab") as handle:
        handle.write(tail)
    before = log_path.read_bytes()
    with pytest.raises(AuditError, match="jitctl audit verify"):
        add(log, "issued", 9)
    assert log_path.read_bytes() == before
    assert not verify(log_path).ok


def test_last_record_without_newline_is_completed_not_glued(log: AuditLog, log_path: Path) -> None:
    filled(log, 3)
    log_path.write_bytes(log_path.read_bytes().rstrip(b"\n"))
    add(log, "issued", 9)
    assert verify(log_path).ok and verify(log_path).records == 4


def test_tail_read_handles_records_longer_than_a_chunk(log: AuditLog, log_path: Path) -> None:
    add(log, reason="x" * 20000)
    add(log, reason="y" * 9000)
    add(log)
    assert verify(log_path).records == 3 and verify(log_path).ok


@pytest.mark.parametrize(
    "name",
    ["secret_access_key", "session_token", "token", "password", "my_secret", "SecretThing"],
)
def test_secret_looking_fields_are_refused(log: AuditLog, log_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="secret"):
        add(log, **{name: "value"})
    with pytest.raises(ValueError, match="secret"):
        add(log, details={"nested": {name: "value"}})
    assert not log_path.exists()


@pytest.mark.parametrize("fields", [{"ts": "x"}, {"prev": None}, {"hash": "0" * 64}])
def test_reserved_fields_are_refused(log: AuditLog, fields: dict) -> None:
    with pytest.raises(ValueError):
        add(log, **fields)


def test_values_must_be_plain_json(log: AuditLog, log_path: Path) -> None:
    with pytest.raises(ValueError):
        add(log, when=datetime.now(UTC))
    with pytest.raises(ValueError):
        add(log, ratio=float("nan"))
    assert not log_path.exists()


def test_unicode_reason_round_trips_and_verifies(log: AuditLog, log_path: Path) -> None:
    reason = "Störung in Zürich — 障害対応 🚨 \u2028 \udcff"
    written = add(log, reason=reason)
    add(log, "approved")
    # Recorded as the one rule for other people's text shows it: an undecodable byte escaped.
    assert read_records(log_path)[0]["reason"] == "Störung in Zürich — 障害対応 🚨 \u2028 \\xff"
    assert written["hash"] == contract_hash(read_records(log_path)[0])
    assert verify(log_path).ok


def test_unwritable_location_is_an_audit_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    log = AuditLog(blocker / "audit.jsonl", FixedClock(tick=1))
    with pytest.raises(AuditError) as info:
        add(log)
    assert "cannot write the audit log" in info.value.message
    assert "\n" not in str(info.value)


def _concurrent_appender(path: str, worker: int, barrier) -> None:
    log = AuditLog(Path(path), FixedClock(tick=1))
    barrier.wait(timeout=60)
    for i in range(20):
        log.append(
            "requested",
            request_id=f"w{worker}-{i}",
            actor=ACTOR,
            person=None,
            role=None,
            worker=worker,
        )


@pytest.mark.slow
def test_ten_processes_appending_keep_one_chain(log_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(10)
    procs = [
        ctx.Process(target=_concurrent_appender, args=(str(log_path), w, barrier))
        for w in range(10)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * 10
    result = verify(log_path)
    assert result.ok, result
    assert result.records == 200
    ids = {r["request_id"] for r in read_records(log_path)}
    assert ids == {f"w{w}-{i}" for w in range(10) for i in range(20)}


# --- a torn tail: a write cut short (disk full) ------------------------------------------------

# Runs AuditLog.append in a process whose file size limit (RLIMIT_FSIZE) lets the record's
# line through only in part, as on a full disk: the write is short, then fails (EFBIG).
_SHORT_WRITER = """
import resource, signal, sys
from datetime import UTC, datetime
from pathlib import Path
from jitctl.audit.log import AuditLog
from jitctl.errors import AuditError
class Clock:
    def now(self):
        return datetime(2026, 11, 21, 5, 0, tzinfo=UTC)
path = Path(sys.argv[1])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a plain EFBIG error instead of a kill
limit = path.stat().st_size + 60
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    AuditLog(path, Clock()).append("issued", request_id="req-torn", actor="a", person="p",
                                   role="prod-readonly", reason="cut short")
except AuditError as exc:
    print(exc)
    sys.exit(5)
"""


def cut_short(log_path: Path) -> bytes:
    """Append a record whose write is cut short, the real way; return the torn bytes."""
    import subprocess
    import sys

    size = log_path.stat().st_size
    out = subprocess.run(
        [sys.executable, "-c", _SHORT_WRITER, str(log_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 5, out.stderr
    assert "cannot write the audit log" in out.stdout  # the command failed: never acknowledged
    torn = log_path.read_bytes()[size:]
    assert 0 < len(torn) and not torn.endswith(b"\n")
    return torn


def test_verify_names_a_torn_tail(log: AuditLog, log_path: Path) -> None:
    filled(log, 3)
    cut_short(log_path)
    result = verify(log_path)
    assert not result.ok and result.torn_tail
    assert result.records == 3 and result.first_bad_line == 4
    assert "torn tail" in result.problem and "never acknowledged" in result.problem
    assert str(torn_path(log_path)) in result.problem
    assert [r["seq"] for r in read_records(log_path)] == [1, 2, 3]  # the records are readable


def test_next_append_moves_a_torn_tail_aside_and_records_it(log: AuditLog, log_path: Path) -> None:
    first = filled(log, 3)
    intact = log_path.read_bytes()
    torn = cut_short(log_path)

    written = add(log, "issued", 9)

    records = read_records(log_path)
    assert log_path.read_bytes().startswith(intact)  # cut back to the last whole line
    assert [r["event"] for r in records] == [
        *(r["event"] for r in first),
        "audit_torn_tail",
        "issued",
    ]
    note = records[3]
    assert note["prev"] == first[-1]["hash"] and written["prev"] == note["hash"]
    assert note["torn_offset"] == len(intact) and note["torn_bytes"] == len(torn)
    assert note["torn_sha256"] == hashlib.sha256(torn).hexdigest()
    kept = torn_path(log_path)
    assert note["kept_in"] == str(kept)
    assert kept.read_bytes()[note["kept_at"] : note["kept_at"] + len(torn)] == torn
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert verify(log_path).ok and verify(log_path).records == 5


def test_a_second_torn_tail_is_kept_after_the_first(log: AuditLog, log_path: Path) -> None:
    filled(log, 2)
    tears = []
    for n in range(2):
        tears.append(cut_short(log_path))
        add(log, "issued", n)
    notes = [r for r in read_records(log_path) if r["event"] == "audit_torn_tail"]
    kept = torn_path(log_path).read_bytes()
    assert [kept[r["kept_at"] : r["kept_at"] + r["torn_bytes"]] for r in notes] == tears
    assert verify(log_path).ok


def test_a_torn_tail_that_cannot_be_kept_leaves_the_log_alone(
    log: AuditLog, log_path: Path, tmp_path: Path
) -> None:
    filled(log, 2)
    cut_short(log_path)
    before = log_path.read_bytes()
    torn_path(log_path).symlink_to(tmp_path / "elsewhere")  # never followed
    with pytest.raises(AuditError):
        add(log, "issued", 9)
    assert log_path.read_bytes() == before
    assert not (tmp_path / "elsewhere").exists()


def test_a_damaged_line_in_the_middle_is_still_tampering(log: AuditLog, log_path: Path) -> None:
    filled(log, 4)
    lines = log_path.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1][: len(lines[1]) // 2] + b"\n"  # a cut-off record, but not the last line
    log_path.write_bytes(b"".join(lines))
    result = verify(log_path)
    assert not result.ok and not result.torn_tail
    assert result.first_bad_line == 2 and "not valid JSON" in result.problem
    with pytest.raises(AuditTampered):
        read_records(log_path)


def test_cli_a_torn_tail_blocks_nothing_and_verify_names_it(tmp_path, moto_server, pd_sim) -> None:
    from tests.harness import Team

    alice = "alice@example.com"
    team = Team(tmp_path, moto_server, pd_sim)
    # With a central copy too: the audit_torn_tail record must reach it, or its chain has a gap.
    table = f"jitctl-audit-{os.urandom(4).hex()}"
    team.config.write_text(team.config.read_text() + f'[audit]\ntable = "{table}"\n')
    assert team.run(alice, "init").returncode == 0
    team.on_call(alice)
    out = team.run(alice, "request", "prod-readonly", "--reason", "INC-1")
    assert out.returncode == 0, out.stderr
    path = team.audit_log(alice)
    good = len(path.read_bytes().splitlines())
    cut_short(path)

    out = team.run(alice, "audit", "verify")
    assert out.returncode == 6
    assert f"{path}:{good + 1}: torn tail" in out.stderr and "never acknowledged" in out.stderr

    out = team.run(alice, "request", "prod-readonly", "--reason", "INC-2", "--fresh")
    assert out.returncode == 0, out.stderr
    out = team.run(alice, "audit", "verify", "--remote")
    assert out.returncode == 0, out.stderr
    events = [r["event"] for r in team.audit_records(alice)]
    assert events[good] == "audit_torn_tail" and events[-1] == "issued"


def test_a_torn_first_record_leaves_a_log_that_starts_afresh(log: AuditLog, log_path: Path) -> None:
    log_path.parent.mkdir(parents=True)
    log_path.write_bytes(b'{"actor":"a","chain":"c1","event":"requ')
    assert verify(log_path).torn_tail and verify(log_path).first_bad_line == 1
    add(log, "issued", 1)
    records = read_records(log_path)
    assert [r["event"] for r in records] == ["audit_torn_tail", "issued"]
    assert records[0]["prev"] is None and records[0]["torn_offset"] == 0
    assert verify(log_path).ok


def test_every_string_in_a_record_is_cleaned_when_recorded(log: AuditLog, log_path: Path) -> None:
    """Caller text anywhere in a record (nested too, as PagerDuty evidence is) is stored as
    sanitize.clean leaves it: no escape sequence, no bidi control, no raw line break."""
    hostile = "\x1b[31mred\x1b[0m \u202eexe.txt\u2066 a\nb"
    add(log, error=hostile, evidence={"summary": hostile, "notes": [hostile]}, count=3)
    record = read_records(log_path)[0]
    assert record["error"] == "red exe.txt a b"
    assert record["evidence"] == {"summary": "red exe.txt a b", "notes": ["red exe.txt a b"]}
    assert record["count"] == 3
    assert verify(log_path).ok
