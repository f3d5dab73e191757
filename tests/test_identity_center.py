"""identity_center roles: a permission set assigned in an account instead of AssumeRole, with
moto's sso-admin and identitystore and the team harness."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from jitctl import models
from jitctl.context import Environment
from jitctl.errors import ExitCode, JitctlError
from jitctl.lifecycle.flow import issue, submit
from jitctl.lifecycle.service import LocalService
from tests.conftest import FixedClock
from tests.harness import Team
from tests.idc_world import IdcWorld, admin
from tests.test_flow import use_identity

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"


def environment(team: Team, user: str, clock) -> Environment:
    return Environment(environ=team.env(user), clock=clock)


@pytest.fixture
def world(team: Team) -> IdcWorld:
    return IdcWorld(team)


def on_call(team: Team, email: str) -> None:
    now = datetime.now(UTC)
    team.pd.add_oncall(team.pd_user(email), "PEP1234", 1, start=now - timedelta(hours=1), end=None)


def test_on_call_request_assigns_and_lists(team, world, monkeypatch):
    alice = world.user(ALICE)
    on_call(team, ALICE)
    use_identity(monkeypatch, team, ALICE)
    env = environment(team, ALICE, FixedClock(datetime.now(UTC)))
    submitted = submit(env, role_name="sso-admin", reason="INC-1", duration=timedelta(minutes=5))
    assert submitted.fast_tracked
    done = issue(env, submitted.request, evidence=submitted.on_call.evidence)
    assert done.credentials is None
    assert world.holders() == [alice]
    doc = models.public_dict(done.request)
    assert (doc["kind"], doc["account"], doc["permission_set"]) == (
        "identity_center", world.account, world.name,
    )  # fmt: skip
    assert doc["assignment"] == "present" and doc["status"] == "issued"
    assert any("aws sso login" in n for n in done.notes)
    assert [g.request_id for g in LocalService(env).grants()] == [done.request.request_id]
    events = [r["event"] for r in team.audit_records(ALICE)]
    assert events[-2:] == ["assigned", "issued"]


def alice_env(team: Team, monkeypatch, clock) -> Environment:
    use_identity(monkeypatch, team, ALICE)
    env = environment(team, ALICE, clock)
    env.caller  # noqa: B018 (AWS names the caller now, with Alice's keys)
    return env


def fast_grant(env: Environment, minutes: int = 5) -> models.AccessRequest:
    submitted = submit(
        env, role_name="sso-admin", reason="INC-7", duration=timedelta(minutes=minutes)
    )
    assert submitted.fast_tracked
    return issue(env, submitted.request, evidence=submitted.on_call.evidence).request


def sweep_at(team: Team, monkeypatch, clock) -> dict:
    from jitctl.lifecycle.sweep import sweep

    return sweep(alice_env(team, monkeypatch, clock)).as_dict()


def test_peer_path_then_revoke_removes_the_assignment_and_says_what_stays(team, world, monkeypatch):
    from jitctl.revocation.revoke import revoke

    alice = world.user(ALICE)
    clock = FixedClock(datetime.now(UTC))
    env = alice_env(team, monkeypatch, clock)
    req = submit(env, role_name="sso-admin", reason="INC-8", duration=None).request
    assert req.status == models.PENDING and world.holders() == []
    use_identity(monkeypatch, team, BOB)
    LocalService(environment(team, BOB, clock)).approve(req.request_id, "ok")
    env = alice_env(team, monkeypatch, clock)
    done = issue(env, env.store.get(req.request_id), evidence=None)
    assert done.request.approval == models.PEER and world.holders() == [alice]
    revoked = revoke(alice_env(team, monkeypatch, clock), req.request_id, reason="done")
    assert world.holders() == []
    doc = models.public_dict(revoked.request)
    assert (doc["status"], doc["assignment"]) == ("revoked", "removed")
    assert any("does not end a session already signed in" in n for n in revoked.notes)
    events = [r["event"] for r in team.audit_records(ALICE)]
    assert events[-2:] == ["unassigned", "revoked"]


def test_sweep_removes_an_assignment_whose_grant_ran_out(team, world, monkeypatch):
    alice = world.user(ALICE)
    on_call(team, ALICE)
    clock = FixedClock(datetime.now(UTC))
    req = fast_grant(alice_env(team, monkeypatch, clock), minutes=2)
    assert world.holders() == [alice]
    assert sweep_at(team, monkeypatch, clock)["unassigned"] == []  # still live: kept
    assert world.holders() == [alice]
    clock.advance(121)
    report = sweep_at(team, monkeypatch, clock)
    assert report["unassigned"] == [{"request_id": req.request_id, "assignment": "removed"}]
    assert world.holders() == []
    env = alice_env(team, monkeypatch, clock)
    assert models.public_dict(env.store.get(req.request_id))["assignment"] == "removed"
    assert LocalService(env).grants() == []


def test_overlapping_grants_keep_the_assignment_until_the_last_ends(team, world, monkeypatch):
    from jitctl.revocation.revoke import revoke

    alice = world.user(ALICE)
    on_call(team, ALICE)
    clock = FixedClock(datetime.now(UTC))
    short = fast_grant(alice_env(team, monkeypatch, clock), minutes=2)
    middle = fast_grant(alice_env(team, monkeypatch, clock), minutes=10)
    long = fast_grant(alice_env(team, monkeypatch, clock), minutes=30)
    assert world.holders() == [alice]  # one assignment, looked for before creating
    clock.advance(180)
    assert sweep_at(team, monkeypatch, clock)["unassigned"] == [
        {"request_id": short.request_id, "assignment": "kept"}
    ]
    assert world.holders() == [alice]
    env = alice_env(team, monkeypatch, clock)
    revoked = revoke(env, middle.request_id, reason="done early")
    assert models.public_dict(revoked.request)["assignment"] == "kept"
    assert world.holders() == [alice]
    live = [g.request_id for g in LocalService(alice_env(team, monkeypatch, clock)).grants()]
    assert live == [long.request_id]  # revoking one grant does not cut the other off
    clock.advance(30 * 60)
    report = sweep_at(team, monkeypatch, clock)
    assert {"request_id": long.request_id, "assignment": "removed"} in report["unassigned"]
    assert world.holders() == []


def test_an_assignment_that_was_there_first_is_never_removed(team, world, monkeypatch):
    alice = world.user(ALICE)
    world.assign(alice)  # an administrator's, before jitctl
    on_call(team, ALICE)
    clock = FixedClock(datetime.now(UTC))
    req = fast_grant(alice_env(team, monkeypatch, clock), minutes=2)
    assert models.public_dict(req)["assignment"] == "preexisting"
    clock.advance(200)
    sweep_at(team, monkeypatch, clock)
    assert world.holders() == [alice]


def test_a_requester_missing_from_the_identity_store_is_refused_before_approvers(
    team, world, monkeypatch, capsys
):
    from jitctl.cli.main import run

    use_identity(monkeypatch, team, "dave@example.com")
    assert run(["request", "sso-admin", "--reason", "INC-9", "--no-wait"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert f"not in the Identity Store {world.store_id}" in err and "Traceback" not in err
    env = environment(team, "dave@example.com", FixedClock(datetime.now(UTC)))
    assert env.store.list() == []
    assert [r["event"] for r in team.audit_records("dave@example.com")] == []


def stuck_in_progress(env: Environment) -> None:
    """AWS answers IN_PROGRESS for every creation, however long jitctl waits (a botocore
    after-call handler on this run's own client: what AWS said, changed before jitctl reads it)."""

    def stuck(parsed, **_) -> None:
        parsed["AccountAssignmentCreationStatus"]["Status"] = "IN_PROGRESS"

    events = env.aws.client("sso-admin").meta.events
    for op in ("CreateAccountAssignment", "DescribeAccountAssignmentCreationStatus"):
        events.register(f"after-call.sso-admin.{op}", stuck)


def test_stuck_in_progress_is_exit_5_recorded_and_swept(team, world, monkeypatch):
    alice = world.user(ALICE)
    on_call(team, ALICE)
    team.config.write_text(team.config.read_text() + '\n[identity_center]\ntimeout = "1s"\n')
    clock = FixedClock(datetime.now(UTC))
    env = alice_env(team, monkeypatch, clock)
    submitted = submit(env, role_name="sso-admin", reason="INC-10", duration=None)
    stuck_in_progress(env)
    seen: list[tuple[str, float]] = []
    env.on_progress = lambda status, waited: seen.append((status, waited))
    with pytest.raises(JitctlError) as info:
        issue(env, submitted.request, evidence=submitted.on_call.evidence)
    assert seen and {s for s, _ in seen} == {"IN_PROGRESS"} and seen[-1][1] >= 1  # told, bounded
    assert info.value.exit_code == ExitCode.UNAVAILABLE and "IN_PROGRESS" in info.value.message
    stored = env.store.get(submitted.request.request_id)
    assert stored.status == models.APPROVED and stored.issue_failure is not None
    assert stored.assignment["state"] == "creating"  # known to the store: never a half grant
    assert [r["event"] for r in team.audit_records(ALICE)][-1] == "issue_failed"
    assert LocalService(env).grants() == [] and world.holders() == [alice]
    report = sweep_at(team, monkeypatch, clock)  # AWS finished it meanwhile: sweep removes it
    assert (
        report["unassigned"] == [{"request_id": stored.request_id, "assignment": "removed"}]
        and world.holders() == []
    )


CRASH = """
import os, sys
from jitctl.context import Environment
from jitctl.lifecycle.flow import issue

env = Environment(environ=dict(os.environ))
crash = lambda **_: os._exit(9)  # AWS made it; the process dies before anything else
env.aws.client("sso-admin").meta.events.register(
    "after-call.sso-admin.CreateAccountAssignment", crash
)
issue(env, env.store.get(sys.argv[1]), evidence=None)
"""


def test_a_crash_between_assignment_and_store_is_found_by_the_reconciler(team, world, monkeypatch):
    import subprocess
    import sys

    from jitctl.identity_center.reconcile import leftovers

    alice = world.user(ALICE)
    on_call(team, ALICE)
    clock = FixedClock(datetime.now(UTC))
    env = alice_env(team, monkeypatch, clock)
    req = submit(env, role_name="sso-admin", reason="INC-11", duration=None).request
    died = subprocess.run(
        [sys.executable, "-c", CRASH, req.request_id],
        env=team.env(ALICE), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert died.returncode == 9, died.stderr
    assert world.holders() == [alice]
    stored = env.store.get(req.request_id)
    assert stored.status == models.APPROVED and stored.assignment["state"] == "creating"
    assert sweep_at(team, monkeypatch, clock)["unassigned"] == []  # its issuer may yet finish
    clock.advance(10 * 60)  # past the claim's lease and the wait's bound
    later = alice_env(team, monkeypatch, clock)
    assert [f["request_id"] for f in leftovers(later, clock.now())] == [req.request_id]
    report = sweep_at(team, monkeypatch, clock)
    assert report["unassigned"] == [{"request_id": req.request_id, "assignment": "removed"}]
    assert world.holders() == [] and leftovers(later, clock.now()) == []


def test_doctor_warns_of_long_sessions_and_reports_assignments_left(team, world, monkeypatch):
    from jitctl.doctor.checks import run_doctor
    from jitctl.identity_center.reconcile import iso_duration

    assert iso_duration("PT1H30M") == timedelta(minutes=90)
    world.user(ALICE)
    on_call(team, ALICE)
    clock = FixedClock(datetime.now(UTC))
    req = fast_grant(alice_env(team, monkeypatch, clock), minutes=2)
    clock.advance(300)  # ran out; no sweep yet
    checks = {c.name: c for c in run_doctor(alice_env(team, monkeypatch, clock)).checks}
    session = checks["identity center"]
    assert session.status == "warn" and "8h, longer than max_duration 1h" in session.detail
    left = checks["assignments left"]
    assert left.status == "warn" and req.request_id in left.detail and "sweep" in left.fix
    sweep_at(team, monkeypatch, clock)
    checks = {c.name: c for c in run_doctor(alice_env(team, monkeypatch, clock)).checks}
    assert checks["assignments left"].status == "pass"


def test_a_stored_record_naming_someone_elses_assignment_deletes_nothing(team, world, monkeypatch):
    """The store is data: a record rewritten to name Bob's assignment (Alice can write the
    SQLite store in direct mode) never makes the sweep delete Bob's."""
    world.user(ALICE)
    bob = world.user(BOB)
    world.assign(bob)  # Bob's own, an administrator's
    on_call(team, ALICE)
    clock = FixedClock(datetime.now(UTC))
    env = alice_env(team, monkeypatch, clock)
    req = fast_grant(env, minutes=2)
    env.store.set_assignment(req.request_id, req.assignment | {"principal_id": bob})
    clock.advance(200)
    report = sweep_at(team, monkeypatch, clock)
    assert bob in world.holders()
    assert any("will not delete it" in p for p in report["problems"])


def test_policy_validate_warns_of_a_permission_set_session_longer_than_the_role(
    team, world, monkeypatch, capsys
):
    from jitctl.cli.main import run

    use_identity(monkeypatch, team, ALICE)
    assert run(["policy", "validate", "--json"]) == 0
    warnings = json.loads(capsys.readouterr().out)["warnings"]
    assert any(w.startswith("sso-admin: permission set") and "8h" in w for w in warnings)
    world.sso.update_permission_set(
        InstanceArn=world.instance_arn, PermissionSetArn=world.ps_arn, SessionDuration="PT1H"
    )
    assert run(["policy", "validate", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["warnings"] == []


def test_roles_are_grouped_by_account_with_kind_and_account(team, world, monkeypatch):
    env = alice_env(team, monkeypatch, FixedClock(datetime.now(UTC)))
    rows = LocalService(env).roles()
    accounts = [r["account"] for r in rows]
    assert accounts == sorted(accounts)
    kinds = {r["role"]: (r["kind"], r["account"], r["permission_set"]) for r in rows}
    assert kinds["sso-admin"] == ("identity_center", world.account, world.name)
    assert kinds["prod-readonly"] == ("assume_role", "123456789012", None)


def test_broker_check_does_not_call_an_identity_center_role_gated(team, world):
    from jitctl.broker.trustcheck import NO_TRUST_POLICY, check_gate
    from jitctl.policy.load import load_policy

    policy = load_policy(team.policy_dir)
    iam = admin(team, "iam")  # the assume_role roles' trust policies: not this test's subject
    findings = check_gate(policy, iam, "arn:aws:iam::123456789012:role/jitctl-broker")
    (finding,) = [f for f in findings if f.role == "sso-admin"]
    assert not finding.gated and finding.error == NO_TRUST_POLICY


def test_broker_serve_runs_housekeeping_until_told_to_stop():
    import threading

    from jitctl.broker.wsgi import _housekeeping

    ran = threading.Semaphore(0)

    class Broker:
        def housekeeping(self) -> dict:
            ran.release()
            return {"problems": []}

    stop = _housekeeping(Broker(), 0.01)
    try:
        assert all(ran.acquire(timeout=30) for _ in range(3))  # again and again
    finally:
        stop.set()


@pytest.mark.parametrize(
    "argv",
    [
        ["exec", "sso-admin", "--reason", "INC-12", "--", "true"],
        ["console", "sso-admin", "--reason", "INC-12", "--print"],
    ],
)
def test_commands_that_need_credentials_say_this_kind_has_none(
    team, world, monkeypatch, capsys, argv
):
    from jitctl.cli.main import run

    world.user(ALICE)
    on_call(team, ALICE)
    use_identity(monkeypatch, team, ALICE)
    assert run(argv) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "IAM Identity Center role: it has no credentials" in err and "Traceback" not in err


def test_request_list_status_and_grants_in_the_terminal(team, world, monkeypatch, capsys):
    from jitctl.cli.main import run

    world.user(ALICE)
    on_call(team, ALICE)
    use_identity(monkeypatch, team, ALICE)
    assert run(["request", "sso-admin", "--reason", "INC-13", "--duration", "1m"]) == 0
    err = capsys.readouterr().err
    assert f"assigned in account {world.account} (present)" in err and "aws sso login" in err
    (req,) = environment(team, ALICE, FixedClock(datetime.now(UTC))).store.list()
    for argv in (["list"], ["status", req.request_id], ["grants"]):
        assert run(argv) == 0, argv
        assert req.request_id in capsys.readouterr().out
    assert not (team.credentials_file(ALICE)).exists()


def test_an_identity_center_grant_is_not_extended(team, world, monkeypatch):
    """`jitctl extend` makes a new STS session: an assignment has none, so it is refused (exit
    2) and nothing is recorded, rather than issued as a second assignment."""
    world.user(ALICE)
    on_call(team, ALICE)
    use_identity(monkeypatch, team, ALICE)
    env = environment(team, ALICE, FixedClock(datetime.now(UTC)))
    submitted = submit(env, role_name="sso-admin", reason="INC-1", duration=timedelta(minutes=5))
    grant = issue(env, submitted.request, evidence=submitted.on_call.evidence).request
    before = LocalService(env).list(pending_only=False, mine=True, role=None, limit=50)
    with pytest.raises(JitctlError) as refused:
        LocalService(env).extend(grant.request_id, timedelta(minutes=5), "INC-1 goes on")
    assert refused.value.exit_code == ExitCode.USAGE
    assert "IAM Identity Center" in refused.value.message
    after = LocalService(env).list(pending_only=False, mine=True, role=None, limit=50)
    assert [r.request_id for r in after] == [r.request_id for r in before]
