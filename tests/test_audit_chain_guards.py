"""The local audit log's chain positions (chain, seq) against records an editor writes with
correct hashes and prev links: only the positions are wrong, so only the position rule can
catch them. And what `verify` says when the log cannot be read at all.

`jitctl audit verify` runs jitctl.audit.log.verify; these call it on hand-written logs.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from jitctl.audit.log import AuditLog, read_records, record_hash, record_text, verify
from jitctl.errors import AuditError
from tests.conftest import FixedClock

CHAIN, OTHER = "c0ffee00c0ffee00", "beefbeefbeefbeef"


def write_log(path: Path, *positions: dict[str, Any]) -> None:
    """One record per entry of ``positions`` (its chain/seq keys, or none), each hashed and
    linked to the previous one as the writer would."""
    prev = None
    lines = []
    for n, position in enumerate(positions):
        record = {
            "ts": f"2026-11-21T04:00:0{n}Z",
            "event": "requested",
            "request_id": f"r-{n}",
            "actor": "arn:aws:iam::123456789012:user/alice@example.com",
            "person": "alice@example.com",
            "role": "prod-readonly",
            "prev": prev,
            **position,
        }
        record["hash"] = prev = record_hash(record)
        lines.append(record_text(record))
    path.write_text("".join(line + "\n" for line in lines))


def test_a_well_positioned_log_verifies(tmp_path):
    """The shapes below differ from these in their positions alone."""
    log = tmp_path / "audit.jsonl"
    write_log(log, {}, {"chain": CHAIN, "seq": 1}, {"chain": CHAIN, "seq": 2})
    assert verify(log).ok and verify(log).records == 3
    write_log(log, {"chain": CHAIN, "seq": 1}, {"chain": OTHER, "seq": 1})  # a new chain
    assert verify(log).ok


@pytest.mark.parametrize(
    "positions,problem",
    [
        (({"chain": CHAIN, "seq": 1}, {"chain": CHAIN, "seq": 3}), "seq 3 of chain"),
        (({"chain": CHAIN, "seq": 1}, {"chain": OTHER, "seq": 2}), "should be 1"),
        (({"chain": CHAIN},), "chain/seq malformed"),
        (({"seq": 1},), "chain/seq malformed"),
        (({"chain": "not a chain id!", "seq": 1},), "chain/seq malformed"),
        (({"chain": CHAIN, "seq": True},), "chain/seq malformed"),
        (({"chain": CHAIN, "seq": 0},), "chain/seq malformed"),
        (({"chain": CHAIN, "seq": 1.0},), "chain/seq malformed"),
    ],
)
def test_a_record_out_of_position_fails_verification(tmp_path, positions, problem):
    log = tmp_path / "audit.jsonl"
    write_log(log, *positions)
    result = verify(log)
    assert result.ok is False and problem in (result.problem or ""), result
    assert result.first_bad_line == len(positions)


def test_an_unreadable_log_is_an_audit_error_naming_why(tmp_path):
    log = tmp_path / "audit.jsonl"
    log.symlink_to(log)  # a link to itself: no file behind it, and no kind to refuse by name
    with pytest.raises(AuditError) as info:
        verify(log)
    assert info.value.message == f"cannot read the audit log {log}: Too many levels of symbolic links"


def test_appending_after_a_malformed_position_starts_a_new_chain(tmp_path):
    """The writer continues a chain only from a well-formed last record; after a malformed
    one (here seq "7", a string) it starts a new chain at 1 rather than guess."""
    log = tmp_path / "audit.jsonl"
    write_log(log, {"chain": CHAIN, "seq": "7"})
    clock = FixedClock(datetime(2026, 11, 21, 4, 1, tzinfo=UTC))
    AuditLog(log, clock).append(
        "requested",
        request_id="r-next",
        actor="arn:aws:iam::123456789012:user/alice@example.com",
        person="alice@example.com",
        role="prod-readonly",
    )
    last = read_records(log)[-1]
    assert last["seq"] == 1 and last["chain"] != CHAIN, json.dumps(last)


@pytest.mark.parametrize(
    "line,problem",
    [
        (b"\xff\xfe not text", "not UTF-8"),
        (b"[1, 2, 3]", "not a JSON object"),
        (b'{"ts": 1', "not valid JSON"),
        (b"   ", "empty line"),
    ],
)
def test_a_line_that_is_not_a_record_fails_verification(tmp_path, line, problem):
    log = tmp_path / "audit.jsonl"
    write_log(log, {"chain": CHAIN, "seq": 1})
    with log.open("ab") as out:
        out.write(line + b"\n")
    result = verify(log)
    assert result.ok is False and result.first_bad_line == 2
    assert problem in (result.problem or ""), result


def test_a_secret_nested_in_a_list_is_never_logged(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl", FixedClock())
    with pytest.raises(ValueError, match="looks like a secret"):
        log.append(
            "issued",
            request_id="r-1",
            actor="arn:aws:iam::123456789012:user/alice@example.com",
            person="alice@example.com",
            role="prod-readonly",
            sessions=[{"role": "x", "session_token": "IQoJb3JpZ2luX2VjE"}],
        )
    assert (
        not (tmp_path / "audit.jsonl").exists()
        or "IQoJ" not in (tmp_path / "audit.jsonl").read_text()
    )
