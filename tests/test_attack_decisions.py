"""Issue 9, breaks 2, 3 and 6, replayed: forged approvals, skewed clocks, a lost delivery.

AWS is moto's server (one with IAM enforcement for the DynamoDB forgery, so the forger uses
only her own keys), PagerDuty the simulator, the CLI the installed `jitctl` run per person.
Clocks are faked only through our own Clock interface, in-process.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from jitctl import models
from jitctl.context import Environment
from jitctl.errors import ExitCode, TimedOut, UsageError
from jitctl.lifecycle.decisions import approve, list_requests
from jitctl.lifecycle.flow import issue, submit
from jitctl.revocation.cutoff import denied_tags
from jitctl.store.base import RequestExpired
from jitctl.trusted_time import SKEW_LIMIT, TrustedClock, parse_http_date, skew_message
from tests.conftest import FixedClock, enforce, moto_process
from tests.harness import Team, existing_role, iam_keys

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"


def pending(team: Team, role: str = "prod-readonly") -> str:
    out = team.run(ALICE, "request", role, "--reason", "INC-9 forged", "--no-wait")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def events(team: Team, user: str, request_id: str) -> list[dict[str, Any]]:
    return [r for r in team.audit_records(user) if r["request_id"] == request_id]


def forged(body: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """What alice writes: her request, now 'approved', decided a moment ago."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        **body,
        "status": "approved",
        "approval": "peer",
        "decided_at": now,
        "decided_by": BOB,
        **changes,
    }


def forge_sqlite(team: Team, request_id: str, **changes: Any) -> None:
    with sqlite3.connect(team.root / "requests.db") as db:
        (text,) = db.execute(
            "SELECT body FROM requests WHERE request_id = ?", (request_id,)
        ).fetchone()
        body = forged(json.loads(text), **changes)
        db.execute(
            "UPDATE requests SET status = ?, body = ? WHERE request_id = ?",
            (body["status"], json.dumps(body), request_id),
        )


# Each forgery breaks one rule of the policy as it is now (prod-admin needs 2 of bob, carol).
FORGERIES = {
    "not an approver": ("prod-readonly", {"approvers": ["mallory@example.com"]}, "may not approve"),
    "one approver twice": ("prod-admin", {"approvers": [BOB, BOB]}, "more than once"),
    "the requester": ("prod-admin", {"approvers": [ALICE, BOB]}, "listed as an approver"),
    "stale min_approvals": (
        "prod-admin",
        {"approvers": [BOB], "min_approvals": 1},
        "needs 2",
    ),
    "on call, not on call": (
        "prod-readonly",
        {"approval": "on_call", "approvers": [], "decided_by": None},
        "PagerDuty does not show you on call",
    ),
}


def assert_refused(team: Team, request_id: str, why: str) -> None:
    out = team.run(ALICE, "wait", request_id, "--json")
    assert out.returncode == ExitCode.DENIED, out.stderr
    # stdout holds the one --json document, the error (issue 21 item 18), and no credentials
    assert json.loads(out.stdout)["error"]["exit_code"] == ExitCode.DENIED
    assert "Traceback" not in out.stderr
    assert f"request {request_id} cannot be issued" in out.stderr and why in out.stderr
    records = events(team, ALICE, request_id)
    refused = [r for r in records if r["event"] == "issue_refused"]
    assert len(refused) == 1 and why in refused[0]["why"]
    assert "issued" not in [r["event"] for r in records]
    assert not team.credentials_file(ALICE).exists()
    assert team.run(ALICE, "audit", "verify").returncode == 0


@pytest.mark.parametrize("name", FORGERIES)
def test_a_forged_sqlite_approval_is_refused(team, name):
    role, changes, why = FORGERIES[name]
    request_id = pending(team, role)
    forge_sqlite(team, request_id, **changes)
    assert_refused(team, request_id, why)


def test_a_rewritten_min_approvals_on_a_pending_request_does_not_count(team):
    request_id = pending(team, "prod-admin")
    undecided = {"status": "pending", "approval": None, "decided_at": None, "decided_by": None}
    forge_sqlite(team, request_id, min_approvals=1, **undecided)
    assert team.run(BOB, "approve", request_id).returncode == 0
    out = team.run(ALICE, "status", request_id, "--json")
    doc = json.loads(out.stdout)
    assert (doc["status"], doc["approvers"], doc["min_approvals"]) == ("pending", [BOB], 2)
    assert team.run(CAROL, "approve", request_id).returncode == 0
    assert team.run(ALICE, "wait", request_id).returncode == 0


def test_an_approver_removed_from_the_policy_after_approving_does_not_count(team):
    request_id = pending(team)
    assert team.run(BOB, "approve", request_id, "--reason", "ok").returncode == 0
    policy = team.policy_dir / "team.toml"
    policy.write_text(
        policy.read_text().replace(
            f'sre = ["{BOB}", "{CAROL}"]', f'sre = ["{CAROL}", "dave@example.com"]'
        )
    )
    assert_refused(team, request_id, f"{BOB} may not approve role 'prod-readonly'")


def test_a_genuine_approval_still_issues(team):
    request_id = pending(team, "prod-admin")
    for approver in (BOB, CAROL):
        assert team.run(approver, "approve", request_id).returncode == 0
    out = team.run(ALICE, "wait", request_id, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["approvers"] == [BOB, CAROL]
    observed = [r for r in events(team, ALICE, request_id) if r["event"] == "approved"]
    # The requester's record says what the store said; it names no approver as its author.
    assert observed[0]["observed"] is True and observed[0]["person"] == ALICE
    assert observed[0]["stored_approvers"] == [BOB, CAROL] and "approvers" not in observed[0]


# ---------------------------------------------------------------- the approval lapses


def test_an_approval_lapses_request_ttl_after_the_decision(team, monkeypatch):
    start = datetime.now(UTC)
    team.act_as(monkeypatch, ALICE)
    at = Environment(environ=team.env(ALICE), clock=FixedClock(start))
    late, in_time = (
        submit(at, role_name="prod-readonly", reason=f"INC-{i}", duration=None).request
        for i in (1, 2)
    )
    team.act_as(monkeypatch, BOB)
    bob = Environment(environ=team.env(BOB), clock=FixedClock(start))
    for req in (late, in_time):
        approve(bob, req.request_id, reason=None)
    team.act_as(monkeypatch, ALICE)
    ttl = timedelta(minutes=30)  # the role's request_ttl
    alice = Environment(
        environ=team.env(ALICE), clock=FixedClock(start + ttl + timedelta(minutes=1))
    )
    with pytest.raises(TimedOut, match="the approval lapsed") as info:
        issue(alice, alice.store.get(late.request_id), evidence=None)
    assert info.value.exit_code == ExitCode.TIMEOUT
    assert alice.store.get(late.request_id).status == models.APPROVED  # nothing issued
    assert [r["event"] for r in events(team, ALICE, late.request_id)][-1] == "issue_refused"
    alice = Environment(
        environ=team.env(ALICE), clock=FixedClock(start + ttl - timedelta(minutes=1))
    )
    grant = issue(alice, alice.store.get(in_time.request_id), evidence=None)
    assert grant.request.status == models.ISSUED


# ---------------------------------------------------------------- DynamoDB, IAM enforced


@pytest.fixture(scope="module")
def enforcing_moto():
    """A moto server of our own: IAM enforcement goes on once the users exist (reset-auth)."""
    with moto_process() as url:
        yield url


# What a team in direct mode gives everyone: the store, STS. Nothing else.
MEMBER_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["sts:*", "dynamodb:*"], "Resource": "*"}],
}


def test_a_forged_dynamodb_item_written_with_the_requesters_keys_is_refused(
    tmp_path, enforcing_moto, pd_sim
):

    team = Team(tmp_path, enforcing_moto, pd_sim)
    table = "jit-forgery"
    team.use_store(f'[store]\nbackend = "dynamodb"\ntable = "{table}"\nregion = "us-east-1"\n')
    iam = boto3.client(
        "iam",
        endpoint_url=enforcing_moto,
        region_name="us-east-1",
        aws_access_key_id="AKIAADMIN",
        aws_secret_access_key="x",
    )
    for user in (ALICE, BOB, CAROL, "dave@example.com"):
        iam_keys(enforcing_moto, user)
    for user in (ALICE, BOB, CAROL):  # dave: keys, but no permissions
        iam.put_user_policy(
            UserName=user, PolicyName="member", PolicyDocument=json.dumps(MEMBER_POLICY)
        )
    enforce(enforcing_moto)

    assert team.run(ALICE, "init").returncode == 0
    request_id = pending(team, "prod-admin")
    kw = {"endpoint_url": enforcing_moto, "region_name": "us-east-1"}
    dave = boto3.client("dynamodb", **kw, **lower(iam_keys(enforcing_moto, "dave@example.com")))
    with pytest.raises(dave.exceptions.ClientError, match="AccessDenied"):
        dave.get_item(TableName=table, Key={"request_id": {"S": request_id}})  # enforced
    ddb = boto3.client("dynamodb", **kw, **lower(iam_keys(enforcing_moto, ALICE)))
    item = ddb.get_item(TableName=table, Key={"request_id": {"S": request_id}})["Item"]
    body = forged(json.loads(item["body"]["S"]), approvers=[BOB], min_approvals=1)
    item.pop("pending_pk")
    item["status"] = {"S": "approved"}
    item["body"] = {"S": json.dumps(body)}
    ddb.put_item(TableName=table, Item=item)
    assert_refused(team, request_id, "needs 2")


def lower(keys: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in keys.items()}


# ---------------------------------------------------------------- skewed clocks


def test_trusted_clock_follows_aws_only_when_the_local_clock_is_off():
    local = datetime(2026, 11, 28, 4, 0, tzinfo=UTC)
    told: list[str] = []
    clock = TrustedClock(FixedClock(local), on_skew=told.append)
    clock.observe(local + SKEW_LIMIT - timedelta(seconds=1))  # noise: keep the local clock
    assert clock.now() == local and told == []
    clock.observe(local - timedelta(hours=1))  # this machine is an hour fast
    assert clock.now() == local - timedelta(hours=1)
    clock.observe(local - timedelta(hours=1))
    assert told == [skew_message(timedelta(hours=-1))] and "1h ahead of AWS's" in told[0]


def test_trusted_clock_syncs_once_and_falls_back_to_local_time():
    calls = []

    def sync():
        calls.append(1)
        raise UsageError("no AWS credentials")

    local = datetime(2026, 11, 28, 4, 0, tzinfo=UTC)
    clock = TrustedClock(FixedClock(local), sync=sync)
    assert clock.now() == clock.now() == local and calls == [1]
    assert parse_http_date("Sat, 28 Nov 2026 04:00:00 GMT") == local
    assert parse_http_date("yesterday") is None and parse_http_date(None) is None


def test_every_environment_learns_aws_time_from_the_sts_call_naming_the_caller(team, monkeypatch):
    team.act_as(monkeypatch, ALICE)
    env = Environment(environ=team.env(ALICE))  # what every command builds
    assert isinstance(env.clock, TrustedClock) and env.clock.offset is None
    assert env.caller.person == ALICE
    assert env.clock.offset is not None and abs(env.clock.offset) < SKEW_LIMIT  # moto's Date


def skewed(team: Team, monkeypatch, user: str, by: timedelta, told: list[str]) -> Environment:
    """``user``'s Environment on a machine whose clock is off by ``by``; AWS (moto) is right."""
    team.act_as(monkeypatch, user)
    clock = TrustedClock(FixedClock(datetime.now(UTC) + by))
    return Environment(environ=team.env(user), clock=clock, on_clock_skew=told.append)


def test_a_requester_30_days_ahead_cannot_keep_a_request_pending(team, monkeypatch):
    told: list[str] = []
    env = skewed(team, monkeypatch, ALICE, timedelta(days=30), told)
    real = datetime.now(UTC)
    req = submit(env, role_name="prod-readonly", reason="INC-9", duration=None).request
    assert abs(req.created_at - real) < timedelta(seconds=30)
    assert req.expires_at - req.created_at == timedelta(minutes=30)
    stamps = [datetime.fromisoformat(r["ts"]) for r in events(team, ALICE, req.request_id)]
    assert stamps and all(abs(ts - real) < timedelta(seconds=30) for ts in stamps)
    assert len(told) == 1 and "ahead of AWS's" in told[0]


def test_an_approver_an_hour_fast_listing_pending_changes_nothing(team, monkeypatch):
    team.act_as(monkeypatch, ALICE)
    alice = Environment(environ=team.env(ALICE), clock=FixedClock(datetime.now(UTC)))
    ids = {
        submit(
            alice, role_name="prod-readonly", reason=f"INC-{i}", duration=None
        ).request.request_id
        for i in range(3)
    }
    before = {r.request_id: r for r in alice.store.list()}
    told: list[str] = []
    bob = skewed(team, monkeypatch, BOB, timedelta(hours=1), told)
    listed = list_requests(bob, pending_only=True, mine=False, role=None)
    assert {r.request_id for r in listed} == ids and told  # AWS's time: still pending
    # Even a reader that trusts its wrong clock only reports: nothing is written.
    wrong = Environment(
        environ=team.env(BOB), clock=FixedClock(datetime.now(UTC) + timedelta(hours=1))
    )
    assert list_requests(wrong, pending_only=True, mine=False, role=None) == []
    assert {r.request_id: r for r in alice.store.list()} == before


def test_an_approver_an_hour_slow_cannot_approve_past_the_ttl(team, monkeypatch):
    team.act_as(monkeypatch, ALICE)
    then = Environment(
        environ=team.env(ALICE), clock=FixedClock(datetime.now(UTC) - timedelta(minutes=40))
    )
    req = submit(then, role_name="prod-readonly", reason="INC-9", duration=None).request
    told: list[str] = []
    bob = skewed(team, monkeypatch, BOB, -timedelta(hours=1), told)
    with pytest.raises(RequestExpired) as info:
        approve(bob, req.request_id, reason=None)  # by bob's clock it has 50 minutes left
    assert info.value.exit_code == ExitCode.TIMEOUT
    assert then.store.get(req.request_id).status == models.EXPIRED
    assert "behind AWS's" in told[0]


# ---------------------------------------------------------------- delivery


def approved(team: Team) -> str:
    request_id = pending(team)
    assert team.run(BOB, "approve", request_id).returncode == 0
    return request_id


def unwritable(tmp_path, how: str):
    """A credentials path that cannot be written, and how to fix it. (A read-only directory
    would not do: CI runs as root, who writes into those.)"""
    blocker = tmp_path / "not-a-dir"  # a file where the directory should be
    blocker.write_text("")
    return blocker / "credentials", blocker.unlink


def test_an_unwritable_credentials_path_fails_before_issuing_and_wait_retries(team, tmp_path):
    request_id = approved(team)
    path, fix = unwritable(tmp_path, "a file in the way")
    env = team.env(ALICE, AWS_SHARED_CREDENTIALS_FILE=str(path))
    out = team.run(ALICE, "wait", request_id, env=env)
    assert out.returncode == ExitCode.USAGE, out.stderr
    assert f"cannot write the credentials file {path}" in out.stderr
    assert f"jitctl wait {request_id}" in out.stderr and "Traceback" not in out.stderr
    assert "issued" not in [r["event"] for r in events(team, ALICE, request_id)]
    fix()
    out = team.run(ALICE, "wait", request_id, "--json", env=env)
    assert out.returncode == 0, out.stderr
    assert (
        json.loads(out.stdout)["status"] == "issued" and "[jit-prod-readonly]" in path.read_text()
    )


LOCK_HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


def test_a_credentials_lock_held_elsewhere_is_exit_5_naming_it_and_wait_retries(team):
    request_id = approved(team)
    lock = team.credentials_file(ALICE).with_name("credentials.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(lock)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        out = team.run(ALICE, "wait", request_id)
        waited = time.monotonic() - started
    finally:
        holder.communicate("", timeout=10)
    assert out.returncode == ExitCode.UNAVAILABLE, out.stderr
    assert f"lock file {lock}" in out.stderr and 10 <= waited < 25
    assert "issued" not in [r["event"] for r in events(team, ALICE, request_id)]
    assert team.run(ALICE, "wait", request_id).returncode == 0
    assert "[jit-prod-readonly]" in team.credentials_file(ALICE).read_text()


def test_a_delivery_that_fails_after_assume_role_is_retried_once(team, tmp_path, monkeypatch):
    """A failure the check cannot foresee (another process took the lock meanwhile, the disk
    filled up): stood in for by issuing, then delivering to a path in a file, the two steps
    the CLI takes after its check."""
    from jitctl.credentials.delivery import deliver
    from jitctl.lifecycle.service import LocalService

    request_id = approved(team)
    path, fix = unwritable(tmp_path, "a file in the way")
    team.act_as(monkeypatch, ALICE)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(path))
    env = Environment(environ=team.env(ALICE, AWS_SHARED_CREDENTIALS_FILE=str(path)))
    service = LocalService(env)
    issued = service.issue(request_id)
    with pytest.raises(UsageError, match="cannot write the credentials file") as info:
        deliver(
            env,
            issued,
            profile=None,
            write_profile=True,
            cache=False,
            on_failure=lambda error: service.delivery_failed(request_id, error),
        )
    assert info.value.exit_code == ExitCode.USAGE
    stored = env.store.get(request_id)
    assert stored.status == models.ISSUED and stored.delivery_failed_at is not None
    fix()
    env_cli = team.env(ALICE, AWS_SHARED_CREDENTIALS_FILE=str(path))
    with existing_role(team.moto, "prod-readonly") as iam:
        out = team.run(ALICE, "wait", request_id, env=env_cli)
        assert out.returncode == 0, out.stderr
        policy = iam.get_role_policy(RoleName="prod-readonly", PolicyName="jitctl-revocations")
    records = events(team, ALICE, request_id)
    issued = [r for r in records if r["event"] == "issued"]
    assert [r["retry"] for r in issued] == [False, True]
    assert issued[0]["access_key_id"] != issued[1]["access_key_id"]
    assert "delivery_failed" in [r["event"] for r in records]
    # the lost set was cut off before the new one was issued, and only that set
    denied = set().union(*map(denied_tags, policy["PolicyDocument"]["Statement"]))
    assert denied == {issued[0]["issue_tag"]} != {issued[1]["issue_tag"]}
    names = [r["event"] for r in records]
    assert names.index("cut_off") < len(names) - 1 - names[::-1].index("issued")
    again = team.run(ALICE, "wait", request_id, env=env_cli)  # delivered: no third grant
    assert again.returncode == ExitCode.USAGE and "already issued" in again.stderr
