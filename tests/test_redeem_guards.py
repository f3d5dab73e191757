"""The re-check before anything is issued (flow.check_redeemable), against what a requester can
write: her own store in direct mode, and time itself.

Each forgery keeps every other rule satisfied (a genuine approver, a live approval), so only
the rule under test stands between the forged request and credentials; each test also shows
the honest case issuing, so the refusal is that rule's.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from jitctl import models
from jitctl.context import Environment
from jitctl.errors import Denied, ExitCode
from jitctl.lifecycle.service import LocalService
from jitctl.store.step import TransitionError
from tests.harness import POLICY, Team
from tests.test_attack_decisions import assert_refused, forge_sqlite, pending

ALICE, BOB = "alice@example.com", "bob@example.com"


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def stored(team: Team, request_id: str) -> dict:
    with sqlite3.connect(team.root / "requests.db") as db:
        (text,) = db.execute(
            "SELECT body FROM requests WHERE request_id = ?", (request_id,)
        ).fetchone()
    return json.loads(text)


def test_an_unknown_kind_of_approval_is_refused(team):
    request_id = pending(team)
    forge_sqlite(team, request_id, approval="by-the-boss", approvers=[BOB])
    assert_refused(team, request_id, "unknown kind of approval 'by-the-boss'")


def test_a_forged_break_glass_approval_is_refused(team):
    """prod-readonly has no [break_glass]: alice writing "break_glass" into her own request
    gets nothing."""
    request_id = pending(team)
    forge_sqlite(team, request_id, approval="break_glass", approvers=[], decided_by=ALICE)
    assert_refused(team, request_id, "role 'prod-readonly' no longer allows break-glass")


def test_a_genuine_approval_decided_in_the_future_is_refused(team):
    """Bob really approved; alice then moves the decision 30 days ahead, so that it would
    never lapse. The stored time is not believable, whatever else holds."""
    request_id = pending(team)
    assert team.run(BOB, "approve", request_id, "--yes").returncode == 0
    real = stored(team, request_id)
    assert real["status"] == "approved" and real["approvers"] == [BOB]
    future = datetime.now(UTC) + timedelta(days=30)
    forge_sqlite(team, request_id, decided_at=stamp(future), approvers=[BOB])
    assert_refused(team, request_id, "the stored decision has no believable time")


def test_a_genuine_approval_decided_just_now_issues(team):
    """The same forgery with a believable time (a minute ago) issues: the refusal above is
    the time's alone."""
    request_id = pending(team)
    assert team.run(BOB, "approve", request_id, "--yes").returncode == 0
    recent = datetime.now(UTC) - timedelta(minutes=1)
    forge_sqlite(team, request_id, decided_at=stamp(recent), approvers=[BOB])
    out = team.run(ALICE, "wait", request_id, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"] == "issued"


class _ClockAfterLookup:
    """Stands at ``start`` until PagerDuty has been asked who is on call, then at ``later``:
    the moment between the fast path's lookup and the issuing step, made exact."""

    def __init__(self, pd, start: datetime, later: datetime) -> None:
        self.pd, self.start, self.later = pd, start, later

    def now(self) -> datetime:
        return self.later if self.pd.requests("/oncalls") else self.start


@pytest.mark.parametrize("ends_after", [timedelta(minutes=m) for m in (5, 10, 15)])
def test_an_on_call_shift_that_ends_before_issuing_is_refused(team, monkeypatch, ends_after):
    """PagerDuty said alice is on call (her shift ends 5 minutes later); by the time the
    credentials are issued, 10 minutes on, the shift is over: nothing is issued. A shift that
    ends at that very moment is over too; one that lasts past it issues (the last case)."""
    start = datetime.now(UTC).replace(microsecond=0)
    team.pd.add_oncall(
        team.pd_user(ALICE), "PEP1234", 1, start=start - timedelta(hours=1), end=start + ends_after
    )
    team.act_as(monkeypatch, ALICE)
    clock = _ClockAfterLookup(team.pd, start, start + timedelta(minutes=10))
    service = LocalService(Environment(environ=team.env(ALICE), clock=clock))
    if ends_after <= timedelta(minutes=10):
        with pytest.raises(Denied, match="your on-call shift has ended") as info:
            service.request("prod-readonly", "INC-26 shift", None)
        assert info.value.exit_code == ExitCode.DENIED
        events = [r["event"] for r in team.audit_records(ALICE)]
        assert events[-1] == "issue_refused" and "issued" not in events
        return
    outcome = service.request("prod-readonly", "INC-26 shift", None)
    assert outcome.issued is not None
    assert outcome.issued.request.status == models.ISSUED


def issue_refused(
    team: Team, monkeypatch, person: str, request_id: str, error: type[Exception], why: str
) -> Environment:
    """``person`` runs the issuing step (flow.issue, the broker's too) on the request: refused."""
    from jitctl.lifecycle.flow import issue

    team.act_as(monkeypatch, person)
    env = Environment(environ=team.env(person))
    with pytest.raises(error, match=why):
        issue(env, env.store.get(request_id), evidence=None)
    return env


def test_the_issuing_step_itself_refuses_someone_elses_request(team, monkeypatch):
    """flow.issue is the step the broker runs too: it checks whose request it is on its own,
    whatever its caller checked first. Bob, holding alice's approved request, gets nothing."""

    request_id = pending(team)
    assert team.run(BOB, "approve", request_id, "--yes").returncode == 0
    bob = issue_refused(team, monkeypatch, BOB, request_id, Denied, f"belongs to {ALICE}")
    assert bob.store.get(request_id).status == models.APPROVED
    assert "issued" not in [r["event"] for r in team.audit_records(BOB)]
    out = team.run(ALICE, "wait", request_id, "--json")
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize(
    "role,approval,why",
    [
        ("prod-admin", "on_call", "role 'prod-admin' has no on-call fast track"),
        ("prod-readonly", "incident", "role 'prod-readonly' has no incident fast track"),
    ],
)
def test_a_fast_track_approval_forged_onto_a_role_without_it_is_refused(team, role, approval, why):
    request_id = pending(team, role)
    forge_sqlite(team, request_id, approval=approval, approvers=[], decided_by=None)
    assert_refused(team, request_id, why)


def test_an_approval_still_holds_at_the_last_moment_of_its_ttl(team, monkeypatch):
    """Decided at T with a 30-minute request_ttl: issuing at exactly T + 30 min works."""
    from jitctl.lifecycle.decisions import approve
    from jitctl.lifecycle.flow import issue, submit
    from tests.conftest import FixedClock

    start = datetime.now(UTC).replace(microsecond=0)
    team.act_as(monkeypatch, ALICE)
    alice = Environment(environ=team.env(ALICE), clock=FixedClock(start))
    req = submit(alice, role_name="prod-readonly", reason="INC-26 edge", duration=None).request
    team.act_as(monkeypatch, BOB)
    approve(
        Environment(environ=team.env(BOB), clock=FixedClock(start)), req.request_id, reason=None
    )
    team.act_as(monkeypatch, ALICE)
    late = Environment(environ=team.env(ALICE), clock=FixedClock(start + timedelta(minutes=30)))
    grant = issue(late, late.store.get(req.request_id), evidence=None)
    assert grant.request.status == models.ISSUED


def test_a_peer_approval_of_a_role_made_on_call_only_since_is_refused(team):
    """Bob's genuine approval, then the policy drops the role's [approval] table: the role
    takes no peer approvals now, so the approval is not redeemed (checked when it takes
    effect, not when it was given)."""
    request_id = pending(team, "prod-readonly")
    assert team.run(BOB, "approve", request_id, "--yes").returncode == 0
    policy = team.policy_dir / "team.toml"
    table = '[roles.prod-readonly.approval]\napprovers = ["group:sre"]\nrequest_ttl = "30m"\n'
    assert table in policy.read_text()
    policy.write_text(policy.read_text().replace(table, ""))
    assert_refused(team, request_id, "role 'prod-readonly' takes no peer approvals")


@pytest.mark.parametrize(
    "team_policy", [POLICY + '[roles.prod-admin.break_glass]\nmax_duration = "30m"\n']
)
def test_a_break_glass_approval_longer_than_its_cap_is_refused(team):
    """Alice writes "break_glass" into her own pending prod-admin request for 1h; the re-check
    before issuing holds it to break_glass.max_duration as the policy says now (30m)."""
    request_id = pending(team, role="prod-admin")
    forge_sqlite(team, request_id, approval="break_glass", approvers=[], duration_seconds=3600)
    assert_refused(team, request_id, "break-glass grants of 'prod-admin' last at most 30m")


@pytest.mark.parametrize("still_on_call", [True, False], ids=["still-on-call", "rotated-off"])
def test_an_on_call_approval_issued_by_a_later_run_asks_pagerduty_again(
    team, monkeypatch, still_on_call
):
    """The run that was approved as on call recorded the approval and died before issuing;
    `jitctl wait`, a later run holding no evidence of its own, asks PagerDuty again and its
    answer now decides: still on call issues, rotated off is refused."""
    from jitctl.lifecycle.flow import submit

    team.pd.add_oncall(team.pd_user(ALICE), "PEP1234", 1)
    team.act_as(monkeypatch, ALICE)
    alice = Environment(environ=team.env(ALICE))
    submitted = submit(alice, role_name="prod-readonly", reason="INC-26 later", duration=None)
    request_id = submitted.request.request_id
    assert submitted.request.approval == models.ON_CALL and submitted.fast_tracked
    if not still_on_call:
        team.pd.rotate(team.pd_user(BOB), "PEP1234", 1)
    asked_before = len(team.pd.requests("/oncalls"))
    out = team.run(ALICE, "wait", request_id, "--json")
    assert len(team.pd.requests("/oncalls")) > asked_before
    if not still_on_call:
        assert out.returncode == ExitCode.DENIED, out.stderr
        assert "PagerDuty does not show you on call now" in out.stderr
        assert not team.credentials_file(ALICE).exists()
        return
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"] == models.ISSUED


def test_issuing_a_request_nobody_has_approved_says_it_is_pending(team, monkeypatch):
    """The issuing step (the broker's too) takes only an approved request: a pending one is
    a usage error naming its status, not a refusal of a decision that was never made, and
    leaves no `issue_refused` record behind."""
    request_id = pending(team)
    why = f"request {request_id} is pending, not approved"
    alice = issue_refused(team, monkeypatch, ALICE, request_id, TransitionError, why)
    assert alice.store.get(request_id).status == models.PENDING
    assert "issue_refused" not in [r["event"] for r in team.audit_records(ALICE)]


def test_a_decision_ahead_by_exactly_the_allowed_skew_still_issues(team, monkeypatch):
    """Clocks differ a little (trusted_time.SKEW_LIMIT): a decision stamped exactly that far
    ahead of the issuing step is still believable; the forgery above is 30 days ahead."""
    from jitctl.lifecycle.decisions import approve
    from jitctl.lifecycle.flow import issue, submit
    from jitctl.trusted_time import SKEW_LIMIT
    from tests.conftest import FixedClock

    start = datetime.now(UTC).replace(microsecond=0)
    team.act_as(monkeypatch, ALICE)
    alice = Environment(environ=team.env(ALICE), clock=FixedClock(start))
    req = submit(alice, role_name="prod-readonly", reason="INC-26 skew", duration=None).request
    team.act_as(monkeypatch, BOB)
    ahead = FixedClock(start + SKEW_LIMIT)
    approve(Environment(environ=team.env(BOB), clock=ahead), req.request_id, reason=None)
    team.act_as(monkeypatch, ALICE)
    assert alice.store.get(req.request_id).decided_at == start + SKEW_LIMIT
    grant = issue(alice, alice.store.get(req.request_id), evidence=None)
    assert grant.request.status == models.ISSUED
