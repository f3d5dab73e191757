"""On-call approvers (`oncall:EP`, `schedule:S`): whoever PagerDuty says is on call there now.

The installed CLI per person (tests/harness.py Team) against moto's server and the PagerDuty
simulator over HTTPS; the rotation moves with `pd.rotate`.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from jitctl.policy.load import check_policy
from tests.harness import Team
from tests.world import ALICE, BOB, CAROL, DAVE

POLICY = """
version = 1

[roles.prod-admin]
arn = "arn:aws:iam::123456789012:role/prod-admin"
max_duration = "1h"

[roles.prod-admin.approval]
approvers = ["carol@example.com", "oncall:PEPSEC", "schedule:PSCHEDSEC"]
"""


@pytest.fixture
def team_policy() -> str:
    return POLICY


@pytest.fixture
def team(team) -> Team:
    for person in (ALICE, BOB, CAROL, DAVE):
        team.pd_user(person)
    return team


def pending(team: Team) -> str:
    out = team.run(ALICE, "request", "prod-admin", "--reason", "INC-9 failover", "--no-wait")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def explain(team: Team, user: str) -> dict:
    out = team.run(user, "policy", "explain", "prod-admin", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["approval"]


def test_the_new_on_call_may_approve_and_the_old_may_not(team):
    team.pd.rotate(team.pd_user(BOB), "PEPSEC")
    rid = pending(team)
    assert explain(team, CAROL)["on_call"]["oncall:PEPSEC"] == [BOB]
    team.pd.rotate(team.pd_user(DAVE), "PEPSEC")  # the shift changes hands
    assert explain(team, CAROL)["on_call"] == {"oncall:PEPSEC": [DAVE], "schedule:PSCHEDSEC": []}

    old = team.run(BOB, "approve", rid, "--yes")
    assert old.returncode == 3, old.stderr
    assert "may not decide" in old.stderr and DAVE in old.stderr  # who to ask instead
    new = team.run(DAVE, "approve", rid, "--yes", "--json")
    assert new.returncode == 0, new.stderr
    assert json.loads(new.stdout)["approvers"] == [DAVE]

    issued = team.run(ALICE, "wait", rid, "--json")  # issue re-checks: dave is on call still
    assert issued.returncode == 0, issued.stderr
    assert json.loads(issued.stdout)["status"] == "issued"
    # every /oncalls question named the entries' ids (and no user), users included
    asked = team.pd.requests("/oncalls")
    named = [r.query.get("escalation_policy_ids[]") or r.query.get("schedule_ids[]") for r in asked]
    assert asked and set(map(tuple, named)) == {("PEPSEC",), ("PSCHEDSEC",)}
    assert not any("user_ids[]" in r.query for r in asked)
    assert all(r.query.get("include[]") == ["users"] for r in asked)


def test_whoever_is_on_call_for_the_schedule_may_deny(team):
    team.pd.add_oncall(team.pd_user(DAVE), "PEPOTHER", 2, schedule_id="PSCHEDSEC")
    rid = pending(team)
    listed = team.run(DAVE, "list", "--pending", "--json")
    assert [r["request_id"] for r in json.loads(listed.stdout)] == [rid]
    out = team.run(DAVE, "deny", rid, "--reason", "use the runbook", "--yes")
    assert out.returncode == 0, out.stderr
    # one question per kind of entry, and only the schedule's id in the schedule question
    schedules = [r for r in team.pd.requests("/oncalls") if "schedule_ids[]" in r.query]
    assert schedules and all(r.query["schedule_ids[]"] == ["PSCHEDSEC"] for r in schedules)


def test_the_pending_message_names_who_is_on_call_now(team):
    team.pd.rotate(team.pd_user(DAVE), "PEPSEC")
    out = team.run(ALICE, "request", "prod-admin", "--reason", "INC-10", "--no-wait")
    assert out.returncode == 0, out.stderr
    assert DAVE in out.stderr and CAROL in out.stderr


def test_pagerduty_down_means_on_call_entries_match_nobody(team):
    team.pd.rotate(team.pd_user(DAVE), "PEPSEC")
    rid = pending(team)
    team.pd.fail_next(500, count=100, path="/oncalls")
    refused = team.run(DAVE, "approve", rid, "--yes")
    assert refused.returncode == 3, refused.stderr  # fail closed: not an approver now
    assert "may not decide" in refused.stderr
    explained = explain(team, CAROL)
    assert explained["on_call"]["oncall:PEPSEC"] == []
    assert "PagerDuty unavailable" in explained["on_call_problem"]
    named = team.run(CAROL, "approve", rid, "--yes")  # the named approver still can
    assert named.returncode == 0, named.stderr


def test_a_rotation_after_the_approval_is_checked_again_before_issuing(team):
    team.pd.rotate(team.pd_user(DAVE), "PEPSEC")
    rid = pending(team)
    assert team.run(DAVE, "approve", rid, "--yes").returncode == 0
    team.pd.rotate(team.pd_user(BOB), "PEPSEC")
    out = team.run(ALICE, "wait", rid)
    assert out.returncode == 3, out.stderr  # dave may no longer approve this role
    assert "may not approve" in out.stderr


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("oncall:", "does not name a PagerDuty escalation policy id"),
        ("oncall:pep sec", "does not name a PagerDuty escalation policy id"),
        ("schedule:../users", "does not name a PagerDuty schedule id"),
        ("oncalls:PEPSEC", "is not an email, a principal ARN, group:NAME, oncall:"),
    ],
)
def test_malformed_on_call_entries_are_refused_with_a_line(tmp_path, entry, problem):
    file = tmp_path / "p.toml"
    file.write_text(textwrap.dedent(POLICY).replace('"oncall:PEPSEC"', json.dumps(entry)))
    errors = check_policy(file).errors
    assert len(errors) == 1
    # the line of the approvers key itself, not the [roles.prod-admin.approval] header (line 8)
    assert f"{file}:9: role 'prod-admin': approval: approvers: " in str(errors[0])
    assert problem in str(errors[0])


def test_on_call_entries_count_towards_min_approvals(tmp_path):
    text = textwrap.dedent(POLICY).replace(
        '"schedule:PSCHEDSEC"]', '"schedule:PSCHEDSEC"]\nmin_approvals = 3'
    )
    (tmp_path / "ok.toml").write_text(text)
    assert check_policy(tmp_path / "ok.toml").errors == ()
    (tmp_path / "ok.toml").write_text(text.replace("min_approvals = 3", "min_approvals = 4"))
    (error,) = check_policy(tmp_path / "ok.toml").errors
    assert "only 3 distinct people" in str(error)


@pytest.mark.parametrize(
    ("fault", "why"),
    [
        (lambda pd: pd.fail_next(401, count=10, path="/oncalls"), "rejected the token (401)"),
        (lambda pd: pd.fail_next(429, count=10, reset=30, path="/oncalls"), "rate limit (429)"),
        (lambda pd: pd.fail_next(500, count=10, path="/oncalls"), "answered 500"),
        (lambda pd: pd.hang_next(10, count=10, path="/oncalls"), "timed out"),
        (lambda pd: pd.fail_next(200, count=10, path="/oncalls", body="[]"), "unexpected"),
    ],
)
def test_every_pagerduty_failure_leaves_the_entries_matching_nobody(team, monkeypatch, fault, why):
    """In-process, one Environment per person: the rule asks PagerDuty once per command and
    fails closed on each kind of trouble; a named approver is decided without asking."""
    from datetime import UTC, datetime

    from jitctl.context import Environment
    from jitctl.lifecycle.flow import submit
    from jitctl.lifecycle.service import LocalService
    from jitctl.oncall.approvers import is_approver, resolve
    from tests.conftest import FixedClock

    team.pd.rotate(team.pd_user(DAVE), "PEPSEC")
    team.act_as(monkeypatch, ALICE)
    clock = FixedClock(datetime.now(UTC))
    alice = Environment(environ=team.env(ALICE), clock=clock)
    rid = submit(alice, role_name="prod-admin", reason="INC-11", duration=None).request.request_id
    team.act_as(monkeypatch, DAVE)
    dave = Environment(environ=team.env(DAVE), clock=clock)
    role = dave.policy.role("prod-admin")
    assert [r.request_id for r in LocalService(dave).decidable()] == [rid]  # on call: decidable

    fault(team.pd)
    after = Environment(environ=team.env(DAVE), clock=clock)
    found = resolve(after, role)
    assert found.people == {"oncall:PEPSEC": (), "schedule:PSCHEDSEC": ()}
    assert why in found.problem and team.pd.token not in found.problem
    assert LocalService(after).decidable() == []
    asked = len(team.pd.requests("/oncalls"))
    assert is_approver(after, role, CAROL, "") and len(team.pd.requests("/oncalls")) == asked
