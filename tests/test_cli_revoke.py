"""`jitctl revoke` end to end: the installed CLI for several people against moto's server.

moto does not enforce the deny on sessions, so these tests read the role's inline policy
back and check its statement, rather than expecting an AccessDenied.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from jitctl.credentials.profiles import read_profile
from jitctl.revocation.policy import ISSUE_MARGIN
from tests.harness import POLICY, Team

ALICE, BOB, DAVE = "alice@example.com", "bob@example.com", "dave@example.com"


@pytest.fixture
def iam_role() -> str:
    return f"prod-readonly-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def team_policy(iam_role: str) -> str:
    """prod-readonly points at an IAM role of this test's own (moto's server is shared)."""
    return POLICY.replace("role/prod-readonly", f"role/{iam_role}")


@pytest.fixture
def team(team, iam_role: str) -> Team:
    team.iam_role = iam_role
    iam(team).create_role(
        RoleName=iam_role, AssumeRolePolicyDocument="{}", MaxSessionDuration=43200
    )
    return team


def iam(team: Team):
    return team.admin_client("iam")


def granted(team: Team, user: str = ALICE) -> str:
    """``user`` is on call and gets prod-readonly at once; returns the request id."""
    team.on_call(user, 6)
    out = team.run(user, "request", "prod-readonly", "--reason", "INC-77 db down", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["status"] == "issued"
    assert read_profile(team.credentials_file(user), "jit-prod-readonly") is not None
    return doc["request_id"]


def status(team: Team, user: str, request_id: str) -> dict:
    out = team.run(user, "status", request_id, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def deny_statements(team: Team) -> dict[str, dict]:
    doc = iam(team).get_role_policy(RoleName=team.iam_role, PolicyName="jitctl-revocations")
    return {s["Sid"]: s for s in doc["PolicyDocument"]["Statement"]}


def test_an_approver_revokes_and_the_session_is_denied_in_aws(team):
    request_id = granted(team)
    before = datetime.now(UTC).replace(microsecond=0)
    out = team.run(BOB, "revoke", request_id, "--reason", "INC-77 over, access no longer needed")
    assert out.returncode == 0, out.stderr
    assert f"revoked {request_id}: sessions of {ALICE} on prod-readonly issued before" in out.stderr
    assert out.stdout == ""

    doc = status(team, ALICE, request_id)
    assert (doc["status"], doc["revoked_by"]) == ("revoked", BOB)
    assert doc["revoked_reason"] == "INC-77 over, access no longer needed"

    statement = deny_statements(team)["JitctlRevoke" + request_id.replace("-", "")]
    assert (statement["Effect"], statement["Action"], statement["Resource"]) == ("Deny", "*", "*")
    assert statement["Condition"]["StringEquals"] == {"aws:SourceIdentity": ALICE}
    cutoff = statement["Condition"]["DateLessThan"]["aws:TokenIssueTime"]
    # Now, or (revoked this soon after it was issued) a margin past issued_at: after the grant.
    issued_at = datetime.fromisoformat(doc["issued_at"].replace("Z", "+00:00"))
    latest = max(datetime.now(UTC), issued_at + ISSUE_MARGIN) + timedelta(
        seconds=1
    )  # JSON: whole s
    assert issued_at < datetime.fromisoformat(cutoff.replace("Z", "+00:00")) <= latest
    assert before <= datetime.fromisoformat(cutoff.replace("Z", "+00:00"))

    (record,) = [r for r in team.audit_records(BOB) if r["event"] == "revoked"]
    assert (record["request_id"], record["person"], record["requester"]) == (request_id, BOB, ALICE)
    assert record["actor"].endswith(":user/bob@example.com") and record["cutoff"] == cutoff
    assert record["role"] == "prod-readonly" and record["reason"].startswith("INC-77 over")
    assert team.run(BOB, "audit", "verify").returncode == 0
    # bob's machine is not alice's: her file is hers to clean (or her own revoke does it).
    assert read_profile(team.credentials_file(ALICE), "jit-prod-readonly") is not None


def test_the_requester_revokes_her_own_grant_and_her_profile_goes(team):
    request_id = granted(team)
    creds = team.credentials_file(ALICE)
    creds.write_text(creds.read_text() + "\n[other]\naws_access_key_id = AKIAOTHER\n")
    out = team.run(ALICE, "revoke", request_id, "--reason", "done early", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert (doc["status"], doc["revoked_by"], doc["request_id"]) == ("revoked", ALICE, request_id)
    revocation = doc["revocation"]
    assert revocation["profiles_removed"] == ["jit-prod-readonly"]
    assert revocation["source_identity"] == ALICE and revocation["iam_role"] == team.iam_role
    assert revocation["policy_name"] == "jitctl-revocations" and not revocation["already_revoked"]
    assert read_profile(creds, "jit-prod-readonly") is None
    assert read_profile(creds, "other") == {"aws_access_key_id": "AKIAOTHER"}
    assert revocation["statement_id"] in deny_statements(team)
    events = [r["event"] for r in team.audit_records(ALICE)]
    assert events == ["requested", "auto_approved", "issued", "revoked"]
    assert team.run(ALICE, "audit", "verify").returncode == 0


def test_someone_else_may_not_revoke(team):
    request_id = granted(team)
    out = team.run(DAVE, "revoke", request_id, "--reason", "because")
    assert out.returncode == 3
    assert "may not revoke" in out.stderr and "bob@example.com" in out.stderr
    assert status(team, ALICE, request_id)["status"] == "issued"
    assert "Traceback" not in out.stderr


def test_a_pending_request_cannot_be_revoked(team):
    out = team.run(ALICE, "request", "prod-readonly", "--reason", "INC-78", "--no-wait")
    assert out.returncode == 0, out.stderr
    request_id = out.stdout.strip()
    out = team.run(BOB, "revoke", request_id, "--reason", "no")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "is pending, not issued" in lines[0]
    assert status(team, ALICE, request_id)["status"] == "pending"


def test_revoking_twice_is_harmless(team):
    request_id = granted(team)
    assert team.run(BOB, "revoke", request_id, "--reason", "first").returncode == 0
    first = deny_statements(team)
    out = team.run(BOB, "revoke", request_id, "--reason", "second")
    assert out.returncode == 0, out.stderr
    assert "was already revoked by bob@example.com" in out.stderr
    assert deny_statements(team) == first
    assert status(team, ALICE, request_id)["revoked_reason"] == "first"


def test_a_reason_is_required(team):
    request_id = granted(team)
    out = team.run(BOB, "revoke", request_id)
    assert out.returncode == 2 and "reason is required" in out.stderr
    assert status(team, ALICE, request_id)["status"] == "issued"
