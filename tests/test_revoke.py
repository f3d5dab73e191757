"""Revocation's core in-process against moto's server: the inline deny policy statement by
statement, merging, pruning, size, concurrency, and the local cleanup."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from jitctl import models
from jitctl.context import Environment
from jitctl.credentials.profiles import read_profile, write_profile
from jitctl.errors import Denied, ExitCode
from jitctl.lifecycle.request_rules import new_request_id
from jitctl.models import AccessRequest, Credentials
from jitctl.revocation.policy import (
    ISSUE_MARGIN,
    POLICY_NAME,
    POLICY_SIZE_LIMIT,
    RevocationPolicyFull,
    ceil_second,
    covers,
    cutoff_for,
    deny_statement,
    iam_role_name,
    latest_cutoff,
    merge,
    parse_deny,
    policy_size,
    statement_id,
)
from jitctl.revocation.revoke import (
    RevocationNotInForce,
    ensure_denied,
    remove_local_copies,
    revoke,
)
from jitctl.store.base import TransitionError
from jitctl.timeutil import rfc3339
from tests.conftest import FixedClock
from tests.harness import POLICY, Team
from tests.world import stored_request

ALICE, BOB, CAROL, DAVE = (
    "alice@example.com",
    "bob@example.com",
    "carol@example.com",
    "dave@example.com",
)
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def role_uid() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def team_policy(role_uid: str) -> str:
    """The harness policy over roles of this test's own in moto (the server outlives it)."""
    return POLICY.replace("role/prod-readonly", f"role/ro-{role_uid}").replace(
        "role/prod-admin", f"role/team/ops/admin-{role_uid}"
    )


@pytest.fixture
def team(team, role_uid: str, monkeypatch) -> Team:
    """The shared team, with those roles created, acting as Bob."""
    team.ro_name, team.admin_name = f"ro-{role_uid}", f"admin-{role_uid}"
    for name, path in ((team.ro_name, "/"), (team.admin_name, "/team/ops/")):
        iam(team).create_role(
            RoleName=name, Path=path, AssumeRolePolicyDocument="{}", MaxSessionDuration=43200
        )
    team.act_as(monkeypatch, BOB)
    return team


def iam(team: Team):
    return team.admin_client("iam")


def env_at(team: Team, now: datetime, user: str = BOB) -> Environment:
    return Environment(environ=team.env(user), clock=FixedClock(now))


def issued(env: Environment, requester: str, role: str = "prod-readonly", at=None) -> str:
    """A request issued to ``requester``, straight into the store."""
    at = at or env.clock.now() - timedelta(minutes=10)
    return stored_request(env, requester, at=at, role=role, issued_for=timedelta(hours=1))


def statements(team: Team, role_name: str) -> list[dict]:
    doc = iam(team).get_role_policy(RoleName=role_name, PolicyName=POLICY_NAME)["PolicyDocument"]
    assert doc["Version"] == "2012-10-17"
    return doc["Statement"]


def expected(request_id: str, person: str, cutoff: datetime) -> dict:
    return {
        "Sid": "JitctlRevoke" + request_id.replace("-", ""),
        "Effect": "Deny",
        "Action": "*",
        "Resource": "*",
        "Condition": {
            "StringEquals": {"aws:SourceIdentity": person},
            "DateLessThan": {"aws:TokenIssueTime": cutoff.strftime("%Y-%m-%dT%H:%M:%SZ")},
        },
    }


def test_one_revocation_writes_exactly_the_statement(team):
    env = env_at(team, NOW)
    rid = issued(env, ALICE)
    done = revoke(env, rid, reason="laptop stolen", settle=0)
    assert statements(team, team.ro_name) == [expected(rid, ALICE, NOW)]
    assert not done.already_revoked and done.statement_written and done.iam_role == team.ro_name
    req = env.store.get(rid)
    assert (req.status, req.revoked_by, req.revoked_reason) == ("revoked", BOB, "laptop stolen")
    assert req.revoked_at == NOW
    (record,) = [r for r in team.audit_records(BOB) if r["event"] == "revoked"]
    assert record["request_id"] == rid and record["person"] == BOB and record["requester"] == ALICE
    assert record["actor"].endswith(":user/bob@example.com") and record["reason"] == "laptop stolen"
    assert record["cutoff"] == done.as_dict()["cutoff"] and record["source_identity"] == ALICE
    assert record["role"] == "prod-readonly" and record["role_arn"].endswith(team.ro_name)


def test_two_revocations_keep_both_statements(team):
    env = env_at(team, NOW)
    first, second = issued(env, ALICE), issued(env, CAROL)
    revoke(env, first, reason="one", settle=0)
    revoke(env_at(team, NOW + timedelta(minutes=5)), second, reason="two", settle=0)
    assert statements(team, team.ro_name) == [
        expected(first, ALICE, NOW),
        expected(second, CAROL, NOW + timedelta(minutes=5)),
    ]


def test_revoking_again_keeps_one_statement_and_the_original_cutoff(team):
    env = env_at(team, NOW)
    rid = issued(env, ALICE)
    revoke(env, rid, reason="one", settle=0)
    again = revoke(env_at(team, NOW + timedelta(minutes=5)), rid, reason="again", settle=0)
    # A later cutoff would also cut alice's newer, legitimate grants: the original stays.
    assert again.already_revoked and again.request.revoked_reason == "one"
    assert statements(team, team.ro_name) == [expected(rid, ALICE, NOW)]
    # ... and is put back if someone removed it.
    iam(team).delete_role_policy(RoleName=team.ro_name, PolicyName=POLICY_NAME)
    revoke(env_at(team, NOW + timedelta(minutes=9)), rid, reason="again", settle=0)
    assert statements(team, team.ro_name) == [expected(rid, ALICE, NOW)]
    events = [r for r in team.audit_records(BOB) if r["event"] == "revoked"]
    assert [r["already_revoked"] for r in events] == [False, True, True]


def test_same_sid_again_keeps_one_statement_with_the_later_cutoff(team):
    """A retry after the deny was written but the store was not (e.g. a crash in between)."""
    env = env_at(team, NOW)
    rid = issued(env, ALICE)
    sid = statement_id(rid)
    first = deny_statement(sid, ALICE, NOW - timedelta(minutes=3))
    lock = team.root / "locks" / "role"
    ensure_denied(
        iam(team),
        role_name=team.ro_name,
        role_arn="arn",
        statement=first,
        now=NOW,
        lock_path=lock,
        settle=0,
    )
    assert env.store.get(rid).status == "issued"
    revoke(env, rid, reason="retry", settle=0)
    assert statements(team, team.ro_name) == [expected(rid, ALICE, NOW)]
    # Merging an earlier cutoff for the same Sid never moves it back.
    merged, _ = merge({"Statement": [expected(rid, ALICE, NOW)]}, first, now=NOW)
    assert merged["Statement"] == [expected(rid, ALICE, NOW)]


def test_statements_older_than_the_longest_session_are_pruned(team):
    old_env = env_at(team, NOW - timedelta(hours=13))
    old = issued(old_env, ALICE)
    revoke(old_env, old, reason="old", settle=0)
    recent_env = env_at(team, NOW - timedelta(hours=11))
    recent = issued(recent_env, CAROL)
    revoke(recent_env, recent, reason="recent", settle=0)
    foreign = {"Sid": "SomeoneElses", "Effect": "Deny", "Action": "s3:*", "Resource": "*"}
    doc = {"Version": "2012-10-17", "Statement": [*statements(team, team.ro_name), foreign]}
    iam(team).put_role_policy(
        RoleName=team.ro_name, PolicyName=POLICY_NAME, PolicyDocument=json.dumps(doc)
    )
    env = env_at(team, NOW)
    new = issued(env, DAVE)
    done = revoke(env, new, reason="new", settle=0)
    assert done.pruned == 1
    assert statements(team, team.ro_name) == [
        expected(recent, CAROL, NOW - timedelta(hours=11)),
        foreign,
        expected(new, DAVE, NOW),
    ]


def test_too_large_a_policy_is_a_clear_error_and_nothing_changes(team):
    filler = [
        deny_statement(f"JitctlRevokeFill{i}", f"person-{i:03}-" + "x" * 40, NOW) for i in range(60)
    ]
    doc = {"Version": "2012-10-17", "Statement": []}
    while policy_size(doc) < POLICY_SIZE_LIMIT - 150:
        doc["Statement"].append(filler[len(doc["Statement"])])
    iam(team).put_role_policy(
        RoleName=team.ro_name, PolicyName=POLICY_NAME, PolicyDocument=json.dumps(doc)
    )
    env = env_at(team, NOW)
    rid = issued(env, ALICE)
    with pytest.raises(RevocationPolicyFull) as info:
        revoke(env, rid, reason="full", settle=0)
    assert info.value.exit_code == ExitCode.UNAVAILABLE
    assert "10240" in info.value.message and "age out" in info.value.hint
    assert env.store.get(rid).status == "issued"  # the AWS deny comes first: retry is possible
    assert len(statements(team, team.ro_name)) == len(doc["Statement"])


def test_concurrent_revocations_on_one_role_lose_none(team):
    env = env_at(team, NOW)
    people = [f"person{i}@example.com" for i in range(8)]
    ids = [issued(env, person) for person in people]
    errors: list[BaseException] = []
    start = threading.Barrier(len(ids))

    def one(rid: str) -> None:
        try:
            start.wait()
            revoke(env_at(team, NOW), rid, reason="sweep", settle=0.05)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(rid,)) for rid in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    found = statements(team, team.ro_name)
    assert sorted(s["Sid"] for s in found) == sorted(statement_id(r) for r in ids)
    assert {s["Condition"]["StringEquals"]["aws:SourceIdentity"] for s in found} == set(people)
    assert all(env.store.get(r).status == "revoked" for r in ids)


class OtherHost:
    """The real IAM client, plus a second writer on another host: right after our first PUT
    it writes back the document it read before ours (the lost-update race)."""

    def __init__(self, client, stale: dict) -> None:
        self._client, self._stale, self.races = client, stale, 0

    def __getattr__(self, name):
        return getattr(self._client, name)

    def put_role_policy(self, **kw):
        self._client.put_role_policy(**kw)
        if self.races == 0:
            self.races += 1
            self._client.put_role_policy(**(kw | {"PolicyDocument": json.dumps(self._stale)}))


def test_a_write_lost_to_another_host_is_written_again(team):
    other = deny_statement("JitctlRevokeOther", CAROL, NOW)
    stale = {"Version": "2012-10-17", "Statement": [other]}
    client = OtherHost(iam(team), stale)
    mine = deny_statement("JitctlRevokeMine", ALICE, NOW)
    wrote, _ = ensure_denied(
        client,
        role_name=team.ro_name,
        role_arn="arn",
        statement=mine,
        now=NOW,
        lock_path=team.root / "locks" / "role",
        settle=0.01,
    )
    assert wrote and client.races == 1
    assert statements(team, team.ro_name) == [other, mine]


def test_role_arn_with_a_path(team):
    env = env_at(team, NOW)
    rid = issued(env, ALICE, role="prod-admin")
    done = revoke(env, rid, reason="path", settle=0)
    assert done.iam_role == team.admin_name and "/team/ops/" in done.role_arn
    assert statements(team, team.admin_name) == [expected(rid, ALICE, NOW)]
    assert iam_role_name("arn:aws:iam::123456789012:role/a/b/c/name") == "name"
    assert iam_role_name("arn:aws-us-gov:iam::123456789012:role/plain") == "plain"


def test_only_issued_grants_and_only_requester_or_approvers(team, monkeypatch):
    env = env_at(team, NOW)
    rid = issued(env, ALICE)
    team.act_as(monkeypatch, DAVE)
    with pytest.raises(Denied, match="may not revoke"):
        revoke(env_at(team, NOW, user=DAVE), rid, reason="no", settle=0)
    team.act_as(monkeypatch, BOB)
    pending = AccessRequest(
        request_id=new_request_id(),
        role="prod-readonly",
        requester=ALICE,
        requester_arn="x",
        reason="INC",
        duration_seconds=3600,
        status=models.PENDING,
        created_at=NOW,
        expires_at=NOW + timedelta(minutes=30),
    )
    env.store.create(pending)
    with pytest.raises(TransitionError, match="pending, not issued") as info:
        revoke(env, pending.request_id, reason="no", settle=0)
    assert info.value.exit_code == ExitCode.USAGE
    with pytest.raises(Exception, match="NoSuchEntity"):
        iam(team).get_role_policy(RoleName=team.ro_name, PolicyName=POLICY_NAME)


def test_missing_role_is_exit_5_with_the_fix(team):
    iam(team).delete_role(RoleName=team.ro_name)
    env = env_at(team, NOW)
    rid = issued(env, ALICE)
    with pytest.raises(Exception) as info:
        revoke(env, rid, reason="gone", settle=0)
    assert info.value.exit_code == ExitCode.UNAVAILABLE
    assert "does not exist" in info.value.hint
    assert env.store.get(rid).status == "issued"


def test_local_profiles_of_that_grant_are_removed(team, monkeypatch):
    team.act_as(monkeypatch, ALICE)  # alice revokes her own grant
    env = env_at(team, NOW, user=ALICE)
    rid, other = issued(env, ALICE), issued(env, ALICE)
    path = team.credentials_file(ALICE)
    creds = Credentials("ASIAX", "secret", "token", NOW + timedelta(hours=1))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[default]\nregion = eu-west-1\n")
    write_profile(path, "jit-prod-readonly", creds, extra={"x_jitctl_request_id": rid})
    write_profile(path, "copy", creds, extra={"x_jitctl_request_id": rid})
    write_profile(path, "newer", creds, extra={"x_jitctl_request_id": other})
    cache = env.credential_cache  # alice's, under this config
    cache.store("prod-readonly", creds, rid, ALICE)
    cache.store("prod-admin", creds, other, ALICE)
    done = revoke(env, rid, reason="mine", settle=0)
    local = remove_local_copies(env, done.request)  # the revoker's machine: the CLI's step
    assert local.profiles_removed == ["jit-prod-readonly", "copy"] and local.cache_removed
    assert cache.load("prod-readonly") is None and cache.load("prod-admin") is not None
    assert read_profile(path, "jit-prod-readonly") is None and read_profile(path, "copy") is None
    assert read_profile(path, "newer") is not None
    assert read_profile(path, "default") == {"region": "eu-west-1"}


def test_policy_document_helpers():
    cutoff = datetime(2026, 11, 21, 4, 5, 7, 800, tzinfo=UTC)
    assert ceil_second(cutoff) == datetime(2026, 11, 21, 4, 5, 8, tzinfo=UTC)
    assert ceil_second(cutoff.replace(microsecond=0)) == cutoff.replace(microsecond=0)
    assert statement_id("r-abc2def") == "JitctlRevokerabc2def"
    s = deny_statement("JitctlRevokeX", ALICE, NOW)
    assert parse_deny(s) == (ALICE, NOW)
    assert parse_deny(s | {"Action": "s3:*"}) is None
    assert parse_deny(s | {"Effect": "Allow"}) is None
    assert parse_deny("nonsense") is None
    later = deny_statement("JitctlRevokeY", ALICE, NOW + timedelta(seconds=1))
    assert covers({"Statement": later}, s) and not covers({"Statement": [s]}, later)


# --- a revoker whose clock is slow; one statement per person; the read-back ----------------


def alice_statements(team: Team) -> list[dict]:
    return [
        s
        for s in statements(team, team.ro_name)
        if s["Condition"]["StringEquals"]["aws:SourceIdentity"] == ALICE
    ]


def cutoff_of(statement: dict) -> datetime:
    return parse_deny(statement)[1]


def test_a_revoker_whose_clock_is_5_minutes_slow_still_denies_the_grant(team):
    rid = issued(env_at(team, NOW), ALICE, at=NOW - timedelta(minutes=1))
    slow = env_at(team, NOW - timedelta(minutes=5))
    done = revoke(slow, rid, reason="slow clock", settle=0)
    (statement,) = alice_statements(team)
    assert cutoff_of(statement) > NOW - timedelta(minutes=1)  # after the grant's issued_at
    assert done.cutoff == NOW - timedelta(minutes=1) + ISSUE_MARGIN and done.confirmed
    assert done.as_dict()["issued_at"] == rfc3339(NOW - timedelta(minutes=1))


def test_a_slow_revoker_does_not_stop_at_an_older_cutoff_of_the_same_person(team):
    """The break as reported: alice's earlier grant was revoked 2 minutes ago; her new grant
    (issued after that cutoff) is revoked by bob, whose clock is 5 minutes slow. The older
    statement "covered" bob's too-early cutoff, nothing was written, and bob saw "revoked"."""
    env = env_at(team, NOW - timedelta(minutes=2))
    earlier = issued(env, ALICE, at=NOW - timedelta(minutes=40))
    revoke(env, earlier, reason="first grant", settle=0)
    grant = issued(env, ALICE, at=NOW - timedelta(minutes=1))

    done = revoke(env_at(team, NOW - timedelta(minutes=5)), grant, reason="second", settle=0)

    (statement,) = alice_statements(team)  # one per person: the latest cutoff
    assert statement["Sid"] == statement_id(grant)
    assert cutoff_of(statement) == NOW - timedelta(minutes=1) + ISSUE_MARGIN
    assert done.statement_written and done.confirmed
    assert env.store.get(grant).status == "revoked"


def test_merging_keeps_the_later_cutoff_per_person(team):
    older = deny_statement("JitctlRevokeOlder", ALICE, NOW - timedelta(minutes=30))
    carol = deny_statement("JitctlRevokeCarol", CAROL, NOW - timedelta(minutes=20))
    foreign = {"Sid": "NotOurs", "Effect": "Deny", "Action": "s3:*", "Resource": "*"}
    doc = {"Version": "2012-10-17", "Statement": [older, carol, foreign]}
    iam(team).put_role_policy(
        RoleName=team.ro_name, PolicyName=POLICY_NAME, PolicyDocument=json.dumps(doc)
    )
    env = env_at(team, NOW)
    rid = issued(env, ALICE)
    revoke(env, rid, reason="newer grant", settle=0)
    # alice's later cutoff takes the older statement's place; the others are untouched.
    assert statements(team, team.ro_name) == [expected(rid, ALICE, NOW), carol, foreign]
    # Merging an earlier cutoff for her (a re-asserted old revocation) changes nothing.
    current = {"Version": "2012-10-17", "Statement": statements(team, team.ro_name)}
    merged, pruned = merge(current, older, now=NOW)
    assert merged == current and pruned == 0
    assert covers(current, older)


def test_latest_cutoff_and_cutoff_for():
    doc = {
        "Statement": [
            deny_statement("JitctlRevokeA", ALICE, NOW - timedelta(minutes=9)),
            deny_statement("Handwritten", ALICE, NOW - timedelta(minutes=3)),
            deny_statement("JitctlRevokeC", CAROL, NOW),
        ]
    }
    assert latest_cutoff(doc, ALICE) == NOW - timedelta(minutes=3)
    assert latest_cutoff(doc, DAVE) is None and latest_cutoff(None, ALICE) is None
    issued_at = NOW - timedelta(minutes=1)
    assert cutoff_for(issued_at, NOW - timedelta(minutes=5)) == issued_at + ISSUE_MARGIN
    assert cutoff_for(issued_at, NOW + timedelta(hours=1)) == NOW + timedelta(hours=1)
    assert cutoff_for(None, NOW - timedelta(seconds=0.5)) == NOW


class RemovedBehindOurBack:
    """The real IAM client; someone else deletes the policy right after our write has been
    read back (an admin tidying up, another tool that owns the role's inline policies)."""

    def __init__(self, client, role_name: str) -> None:
        self._client, self._role, self.reads = client, role_name, 0

    def __getattr__(self, name):
        return getattr(self._client, name)

    def get_role_policy(self, **kw):
        self.reads += 1
        if self.reads == 3:  # ensure_denied read, wrote and read back; this is the check
            self._client.delete_role_policy(RoleName=self._role, PolicyName=POLICY_NAME)
        return self._client.get_role_policy(**kw)


def test_revoke_fails_with_exit_5_when_the_read_back_does_not_deny_the_grant(team):
    from jitctl.aws import AwsClients

    class Clients(AwsClients):
        def client(self, service, *, region=None):
            real = super().client(service, region=region)
            return RemovedBehindOurBack(real, team.ro_name) if service == "iam" else real

    clients = Clients()
    env = Environment(environ=team.env(BOB), clock=FixedClock(NOW), aws_factory=lambda: clients)
    rid = issued(env, ALICE)
    with pytest.raises(RevocationNotInForce) as info:
        revoke(env, rid, reason="gone again", settle=0)
    assert info.value.exit_code == ExitCode.UNAVAILABLE
    assert f"{rid} is NOT revoked" in info.value.message
    assert "denies alice@example.com none of their sessions" in info.value.message
    assert "run the same `jitctl revoke` again" in info.value.hint
    assert env.store.get(rid).status == "issued"  # not recorded as revoked
    (record,) = [r for r in team.audit_records(BOB) if r["event"] == "revoke_failed"]
    assert record["request_id"] == rid and "NOT revoked" in record["error"]
    assert not [r for r in team.audit_records(BOB) if r["event"] == "revoked"]


def test_a_linked_credentials_lock_does_not_undo_a_done_revocation(team, monkeypatch, tmp_path):
    team.act_as(monkeypatch, ALICE)
    env = env_at(team, NOW, user=ALICE)
    rid = issued(env, ALICE)
    path = team.credentials_file(ALICE)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"[jit-prod-readonly]\naws_access_key_id = ASIAX\nx_jitctl_request_id = {rid}\n"
    )
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    path.with_name("credentials.lock").symlink_to(victim)
    done = revoke(env, rid, reason="mine", settle=0)
    assert done.confirmed and env.store.get(rid).status == "revoked"
    local = remove_local_copies(env, done.request)  # the revoker's machine: the CLI's step
    assert any("it is a symlink" in note for note in local.notes)
    assert victim.read_text() == "precious\n"
