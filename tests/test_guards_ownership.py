"""Whose request is it: a second person tries to use, wait for or cancel someone else's request.

Direct mode, through the installed CLI (the `team` harness: a shared SQLite store, moto, the
PagerDuty simulator). The same attempts through the broker are in tests/test_broker_endpoints.py.
Each test ends with the owner doing the same thing successfully, so a refusal is about who
asked, not about a request that could not be used anyway.
"""

from __future__ import annotations

import json

from jitctl.errors import ExitCode
from tests.harness import Team

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"


def approved_for_alice(team: Team) -> str:
    out = team.run(ALICE, "request", "prod-readonly", "--reason", "INC-26 mine", "--no-wait")
    assert out.returncode == 0, out.stderr
    request_id = out.stdout.strip()
    decided = team.run(CAROL, "approve", request_id, "--yes")
    assert decided.returncode == 0, decided.stderr
    return request_id


def status(team: Team, request_id: str) -> dict:
    out = team.run(CAROL, "status", request_id, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_bob_cannot_take_alices_approved_request(team):
    request_id = approved_for_alice(team)
    taken = team.run(BOB, "wait", request_id, "--json")
    assert taken.returncode == ExitCode.DENIED, taken.stderr
    # --json: the one document on stdout is the refusal, never credentials
    assert json.loads(taken.stdout)["error"]["exit_code"] == ExitCode.DENIED
    assert "AccessKeyId" not in taken.stdout and "Traceback" not in taken.stderr
    assert f"belongs to {ALICE}" in taken.stderr
    assert not team.credentials_file(BOB).exists()
    assert "issued" not in [r["event"] for r in team.audit_records(BOB)]
    assert status(team, request_id)["status"] == "approved"
    # The request itself was usable: its owner gets the credentials.
    mine = team.run(ALICE, "wait", request_id, "--json")
    assert mine.returncode == 0, mine.stderr
    assert json.loads(mine.stdout)["requester"] == ALICE
    assert team.credentials_file(ALICE).exists()


def test_bob_cannot_cancel_alices_pending_request(team):
    out = team.run(ALICE, "request", "prod-readonly", "--reason", "INC-26 keep", "--no-wait")
    assert out.returncode == 0, out.stderr
    request_id = out.stdout.strip()
    cancelled = team.run(BOB, "cancel", request_id)
    assert cancelled.returncode == ExitCode.DENIED, cancelled.stderr
    assert f"only {ALICE} can cancel" in cancelled.stderr and "Traceback" not in cancelled.stderr
    assert status(team, request_id)["status"] == "pending"
    assert team.run(ALICE, "cancel", request_id).returncode == 0
    assert status(team, request_id)["status"] == "cancelled"
    records = [r for r in team.audit_records(ALICE) if r["request_id"] == request_id]
    assert [r["event"] for r in records][-1] == "cancelled"
    assert not [r for r in team.audit_records(BOB) if r["event"] == "cancelled"]


def test_an_approvals_reason_is_kept_and_a_denials_is_required(team):
    out = team.run(ALICE, "request", "prod-readonly", "--reason", "INC-26 why", "--no-wait")
    assert out.returncode == 0, out.stderr
    request_id = out.stdout.strip()
    blank = team.run(CAROL, "deny", request_id, "--reason", "   ", "--yes")
    assert blank.returncode == ExitCode.USAGE and "Traceback" not in blank.stderr
    assert status(team, request_id)["status"] == "pending"
    approved = team.run(CAROL, "approve", request_id, "--reason", "checked the runbook", "--yes")
    assert approved.returncode == 0, approved.stderr
    records = [r for r in team.audit_records(CAROL) if r["event"] == "approved"]
    assert [r["reason"] for r in records] == ["checked the runbook"]


def test_the_channel_hears_approved_only_once_enough_approvers_have(team, webhook):
    """prod-admin needs two approvers: the first approval is not announced as approved."""
    from tests.conftest import notify_to

    notify_to(team, webhook)
    out = team.run(ALICE, "request", "prod-admin", "--reason", "INC-26 two", "--no-wait")
    assert out.returncode == 0, out.stderr
    request_id = out.stdout.strip()

    def approved_posts() -> list:
        return [p for p in webhook.posts if "approved" in str(p) and request_id in str(p)]

    assert team.run(BOB, "approve", request_id, "--yes").returncode == 0
    assert status(team, request_id)["status"] == "pending" and approved_posts() == []
    assert team.run(CAROL, "approve", request_id, "--yes").returncode == 0
    assert status(team, request_id)["status"] == "approved" and len(approved_posts()) == 1
