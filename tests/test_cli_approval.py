"""Peer approval end to end: two people, two AWS identities, the installed CLI, both store backends."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.conftest import notify_to
from tests.harness import POLICY, Team
from tests.test_interrupts import sigint_once_announced

ALICE, BOB, CAROL, DAVE = (
    "alice@example.com",
    "bob@example.com",
    "carol@example.com",
    "dave@example.com",
)


@pytest.fixture(params=["sqlite", "dynamodb"])
def team(request, team) -> Team:
    """The shared team, once with the SQLite store and once with a DynamoDB table."""
    t = team
    if request.param == "dynamodb":
        t.use_store(f'[store]\nbackend = "dynamodb"\ntable = "jitctl-{uuid.uuid4().hex[:8]}"\n')
        out = t.run(ALICE, "init")
        assert out.returncode == 0, out.stderr
        assert t.run(ALICE, "init").returncode == 0  # twice is harmless
    return t


def pending(
    team: Team, user: str = ALICE, role: str = "prod-readonly", reason: str = "INC-7 disk full"
) -> str:
    out = team.run(user, "request", role, "--reason", reason, "--no-wait")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def status(team: Team, user: str, request_id: str) -> dict:
    out = team.run(user, "status", request_id, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_waiting_requester_gets_credentials_after_a_peer_approves(team):
    waiter = team.popen(ALICE, "request", "prod-readonly", "--reason", "INC-8", "--json")
    deadline = time.monotonic() + 30
    rows = []
    while time.monotonic() < deadline and not rows:
        rows = json.loads(team.run(BOB, "list", "--pending", "--json").stdout)
        time.sleep(0.2)
    (row,) = rows
    assert row["status"] == "pending" and row["requester"] == ALICE
    out = team.run(BOB, "approve", row["request_id"], "--reason", "go ahead")
    assert out.returncode == 0, out.stderr
    stdout, stderr = waiter.communicate(timeout=30)
    assert waiter.returncode == 0, stderr
    doc = json.loads(stdout)
    assert doc["status"] == "issued" and doc["approval"] == "peer" and doc["approvers"] == [BOB]
    assert team.consumer_arn(ALICE, "jit-prod-readonly").endswith(
        "assumed-role/prod-readonly/alice@example.com"
    )
    assert [r["event"] for r in team.audit_records(BOB)] == ["approved"]
    assert [r["event"] for r in team.audit_records(ALICE)] == [
        "requested",
        "pending",
        "approved",
        "issued",
    ]
    for user in (ALICE, BOB):
        assert team.run(user, "audit", "verify").returncode == 0


def test_denial_reaches_the_requester_with_the_reason(team):
    waiter = team.popen(ALICE, "request", "prod-readonly", "--reason", "INC-9")
    request_id = _first_pending(team)
    out = team.run(CAROL, "deny", request_id, "--reason", "use the runbook first")
    assert out.returncode == 0, out.stderr
    _, stderr = waiter.communicate(timeout=30)
    assert waiter.returncode == 3
    assert "denied by carol@example.com: use the runbook first" in stderr
    assert status(team, ALICE, request_id)["status"] == "denied"


def test_self_approval_through_a_second_principal_is_refused(team):
    policy = POLICY.replace(
        '"arn:aws:iam::123456789012:user/ci-bot" = "ci-bot@example.com"',
        '"arn:aws:iam::123456789012:user/ci-bot" = "ci-bot@example.com"\n'
        '"arn:aws:iam::123456789012:user/bob-admin" = "BOB@example.com"',
    )
    (team.policy_dir / "team.toml").write_text(policy)
    request_id = pending(team, user=BOB)
    out = team.run("bob-admin", "approve", request_id)
    assert out.returncode == 3
    assert "someone else must decide" in out.stderr
    assert status(team, BOB, request_id)["status"] == "pending"


def test_only_approvers_may_decide(team):
    request_id = pending(team)
    for verb in (["approve", request_id], ["deny", request_id, "--reason", "no"]):
        out = team.run(DAVE, *verb)
        assert out.returncode == 3
        assert "may not decide" in out.stderr and "bob@example.com" in out.stderr
    assert status(team, ALICE, request_id)["status"] == "pending"


def test_two_approvals_need_two_distinct_people(team):
    request_id = pending(team, role="prod-admin")
    assert team.run(BOB, "approve", request_id).returncode == 0
    assert team.run(BOB, "approve", request_id).returncode == 0  # the same approver counts once
    doc = status(team, ALICE, request_id)
    assert doc["status"] == "pending" and doc["approvers"] == [BOB]
    assert team.run(CAROL, "approve", request_id).returncode == 0
    doc = status(team, ALICE, request_id)
    assert doc["status"] == "approved" and sorted(doc["approvers"]) == [BOB, CAROL]


def test_timeout_exits_4_and_wait_resumes(team):
    out = team.run(ALICE, "request", "prod-readonly", "--reason", "INC-10", "--timeout", "1s")
    assert out.returncode == 4
    assert "jitctl wait" in out.stderr
    request_id = _first_pending(team)
    assert team.run(BOB, "approve", request_id).returncode == 0
    out = team.run(ALICE, "wait", request_id, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"] == "issued"
    # A request is issued once: waiting again is an error, not a second grant.
    assert team.run(ALICE, "wait", request_id).returncode == 2


def test_ctrl_c_cancels_the_pending_request(team):
    """A real SIGINT, sent once stderr shows the request recorded (no timing involved:
    tests/test_interrupts.py puts it at every other point)."""
    waiter = team.popen(ALICE, "request", "prod-readonly", "--reason", "INC-11")
    code, stderr = sigint_once_announced(waiter)
    [row] = json.loads(team.run(BOB, "list", "--json").stdout)
    request_id = row["request_id"]
    assert code == 130, stderr
    assert f"interrupted: request {request_id} cancelled" in stderr and "Traceback" not in stderr
    assert status(team, ALICE, request_id)["status"] == "cancelled"
    assert team.run(BOB, "approve", request_id).returncode == 2


def test_list_filters(team):
    a = pending(team, user=ALICE)
    c = pending(team, user=CAROL, role="prod-admin")
    assert team.run(BOB, "deny", c, "--reason", "not now").returncode == 0

    def ids(*args: str) -> list[str]:
        return [r["request_id"] for r in json.loads(team.run(BOB, "list", "--json", *args).stdout)]

    assert ids() == [c, a]  # newest first
    assert ids("--pending") == [a]
    assert ids("--role", "prod-admin") == [c]
    assert [
        r["request_id"] for r in json.loads(team.run(CAROL, "list", "--mine", "--json").stdout)
    ] == [c]
    out = team.run(BOB, "list", "--role", "prod-admn")
    assert out.returncode == 2 and "did you mean 'prod-admin'" in out.stderr


def test_other_peoples_text_is_shown_literally(team):
    evil = "[bold red]pwn[/] \x1b[31mred\x1b]0;title\x07 \u202eevil"
    request_id = pending(team, reason=evil)
    out = team.run(BOB, "status", request_id)
    assert out.returncode == 0, out.stderr
    assert "[bold red]pwn[/]" in out.stdout
    assert "\x1b" not in out.stdout and "\x07" not in out.stdout and "\u202e" not in out.stdout
    listing = team.run(BOB, "list")
    assert "\x1b" not in listing.stdout and "[bold red]pwn[/]" in listing.stdout


def _first_pending(team: Team) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = json.loads(team.run(BOB, "list", "--pending", "--json").stdout)
        if rows:
            return rows[0]["request_id"]
        time.sleep(0.2)
    raise AssertionError("no pending request appeared")


def test_webhook_tells_approvers_and_the_decision(team, webhook):
    notify_to(team, webhook)
    request_id = pending(team, reason="INC-12 <!here> *bold*")
    assert team.run(BOB, "approve", request_id).returncode == 0
    created, decided = webhook.posts
    assert f"jitctl approve {request_id}" in created["text"] and ALICE in created["text"]
    assert "<!here>" not in created["text"] and "&lt;!here&gt;" in created["text"]
    assert "approved" in decided["text"] and BOB in decided["text"]


def test_failing_webhook_never_blocks_the_request(team, webhook):
    webhook.status = 500
    notify_to(team, webhook)
    out = team.run(ALICE, "request", "prod-readonly", "--reason", "INC-13", "--no-wait")
    assert out.returncode == 0, out.stderr
    assert "could not notify approvers" in out.stderr
    request_id = out.stdout.strip()
    assert status(team, ALICE, request_id)["status"] == "pending"
    failed = [r for r in team.audit_records(ALICE) if r["event"] == "notify_failed"]
    assert len(failed) == 1 and "500" in failed[0]["error"]
