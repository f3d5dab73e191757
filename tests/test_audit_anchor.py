"""What a local audit log can and cannot prove about its newest records.

A hash chain shows an edited, reordered or removed record in the middle, but the writer can
drop the newest records (or empty the log) and what is left still verifies. Without a central
copy `audit verify` says so plainly (text, and `anchored`/`anchor`/`anchor_note` in --json);
with one, `audit verify --remote` fails when the local log lacks records the central copy holds
of its chains, including a log emptied or deleted (its chains are known by `origin`)."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.harness import Team
from tests.test_cli_audit import _audit_config, _aws, approved_and_issued
from tests.test_cli_request import on_call

ALICE, BOB = "alice@example.com", "bob@example.com"
KEPT_FIELDS = ("path", "ok", "records", "first_bad_line", "problem", "failure")


def _issue(team: Team) -> None:
    on_call(team, ALICE)
    out = team.run(ALICE, "request", "prod-readonly", "--reason", "INC-4 anchor")
    assert out.returncode == 0, out.stderr


def _drop_newest(team: Team, user: str, count: int) -> None:
    log = team.audit_log(user)
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:-count]))


# ---------------------------------------------------------------- no central copy


@pytest.mark.parametrize("tamper", ["drop-newest", "empty"])
def test_without_a_central_copy_verify_says_the_tail_is_unanchored(team: Team, tamper: str):
    _issue(team)
    if tamper == "drop-newest":
        _drop_newest(team, ALICE, 2)
    else:
        team.audit_log(ALICE).write_text("")
    out = team.run(ALICE, "audit", "verify")
    # What is left verifies (nothing can tell otherwise here), and verify says exactly that.
    assert out.returncode == 0, out.stderr
    assert "not anchored" in out.stdout and "central copy" in out.stdout  # the answer: stdout
    doc = json.loads(team.run(ALICE, "audit", "verify", "--json").stdout)
    assert all(name in doc for name in KEPT_FIELDS)  # the contract's fields stay
    assert doc["anchored"] is False and doc["anchor"] is None
    assert "not anchored" in doc["anchor_note"]


# ---------------------------------------------------------------- with a central copy


@pytest.fixture
def central(team: Team) -> Team:
    """The team with a central audit table (`jitctl init` creates it)."""
    team.audit_table = f"jitctl-anchor-{uuid.uuid4().hex[:8]}"
    _audit_config(team, table=team.audit_table, bucket=None)
    assert team.run(ALICE, "init").returncode == 0
    approved_and_issued(team)
    return team


def test_an_intact_log_is_anchored_at_its_head(central: Team):
    out = central.run(ALICE, "audit", "verify", "--remote", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    head = central.audit_records(ALICE)[-1]
    assert doc["anchored"] is True and doc["anchor_note"] is None
    assert doc["anchor"] == {
        "sink": f"dynamodb:{central.audit_table}",
        "chain": head["chain"],
        "seq": head["seq"],
        "hash": head["hash"],
    }
    plain = central.run(ALICE, "audit", "verify")  # without --remote: unchecked, and said so
    assert plain.returncode == 0 and "audit verify --remote" in plain.stdout


def test_newest_records_removed_from_the_local_log_fail_against_the_central_copy(central: Team):
    chain, end = central.audit_records(ALICE)[-1]["chain"], central.audit_records(ALICE)[-1]["seq"]
    _drop_newest(central, ALICE, 2)
    assert central.run(ALICE, "audit", "verify").returncode == 0  # alone, it cannot tell
    out = central.run(ALICE, "audit", "verify", "--remote", "--json")
    assert out.returncode == 6, out.stderr
    assert f"up to seq {end}, the local log only up to seq {end - 2}" in out.stderr
    doc = json.loads(out.stdout)
    assert doc["ok"] is False and doc["anchored"] is False
    assert doc["remote"][0]["chain"] == chain and doc["remote"][0]["seq"] == end - 1
    # Bob's log and chain are untouched: his check passes (no false alarm from Alice's chain).
    assert central.run(BOB, "audit", "verify", "--remote").returncode == 0


@pytest.mark.parametrize("how", ["emptied", "deleted"])
def test_an_emptied_or_deleted_local_log_fails_against_the_central_copy(central: Team, how: str):
    log = central.audit_log(ALICE)
    if how == "emptied":
        log.write_text("")
    else:
        log.unlink()
    out = central.run(ALICE, "audit", "verify", "--remote")
    assert out.returncode == 6, out.stderr
    assert "the local log holds none of them: it was emptied or replaced" in out.stderr


def test_a_new_chain_after_emptying_does_not_hide_the_old_one(central: Team):
    """Emptying the log and writing on (a new chain starts) still leaves the old chain,
    written by this log, missing from it."""
    central.audit_log(ALICE).write_text("")
    _issue(central)
    out = central.run(ALICE, "audit", "verify", "--remote")
    assert out.returncode == 6, out.stderr
    assert "emptied or replaced" in out.stderr


def test_the_central_copy_is_read_not_written_by_verify(central: Team):
    items = _aws(central, "dynamodb").scan(TableName=central.audit_table)["Count"]
    assert central.run(ALICE, "audit", "verify", "--remote").returncode == 0
    assert _aws(central, "dynamodb").scan(TableName=central.audit_table)["Count"] == items
