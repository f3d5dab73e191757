"""Issue 20, items 1 and 2: one approval, one grant, one person.

Item 1, through a broker (tests/test_attack_identity.py holds direct mode): alice may create
IAM roles in the account the broker serves. She makes ``AWSReservedSSO_evil``, assumes it with
the session name bob@example.com and approves her own request as "bob"; or, once the broker
has seen a real Identity Center role, makes one of the same name after it is gone. Only IAM's
record of the role counts (its path, its unique id), never its name.

Item 2, in direct mode and through a broker: two people whose emails share their first 64
characters (STS's limit) each get a grant; revoking one must deny exactly that person's
sessions, so the deny's aws:SourceIdentity is hers alone.

Against moto's server; the broker's tests with its IAM enforcement on.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from tests import broker_world
from tests.broker_world import REGION, BrokerWorld, own_world
from tests.harness import POLICY, Team
from tests.world import key_env

pytestmark = pytest.mark.slow

ACCOUNT = "777700002222"  # this module's broker world, apart from every other test's
ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"
SSO_PATH = "/aws-reserved/sso.amazonaws.com/"
LONG = "a-very-long-mailbox-name-for-the-platform-on-call-rotation-of-team-x"  # 68
LONG_ONE, LONG_TWO = f"{LONG}-one@example.com", f"{LONG}-two@example.com"
WHOAMI = {"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}
ROLE_MAKER = {
    "Effect": "Allow",
    "Action": ["iam:CreateRole", "iam:PutRolePolicy", "sts:AssumeRole", "sts:GetCallerIdentity"],
    "Resource": "*",
}
# The broker world's policy in this account, its identities the two long names, no region.
BROKER_POLICY = (
    broker_world.POLICY.replace(broker_world.ACCOUNT, ACCOUNT)
    .replace(
        f'"arn:aws:iam::{ACCOUNT}:user/bob-admin" = "bob@example.com"',
        f'"arn:aws:iam::{ACCOUNT}:user/long-one" = "{LONG_ONE}"\n'
        f'"arn:aws:iam::{ACCOUNT}:user/long-two" = "{LONG_TWO}"',
    )
    .replace(
        'region = "eu-west-1"  # the client (AWS_REGION us-east-1) learns it from the broker\n', ""
    )
)


def _doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _keys(creds: dict[str, Any]) -> dict[str, str]:
    return key_env(creds)


def _on_call(pd: Any, pd_id: str) -> None:
    now = datetime.now(UTC)
    pd.add_oncall(pd_id, "PEP1234", 1, start=now - timedelta(hours=1), end=now + timedelta(hours=4))


# --------------------------------------------------------------------------- the broker's world


@pytest.fixture(scope="module")
def world(tmp_path_factory, pd_certs) -> Iterator[BrokerWorld]:
    """A broker in its own account and moto server. alice may create roles there; alice and
    bob may assume roles (bob's stand for Identity Center signing him in)."""
    root = tmp_path_factory.mktemp("who")
    with own_world(root, pd_certs, account=ACCOUNT, policy=BROKER_POLICY) as w:
        for name, person in (("long-one", LONG_ONE), ("long-two", LONG_TWO)):
            w.user(name, {"Version": "2012-10-17", "Statement": [WHOAMI]})
            w.pd_ids[person] = w.pd.add_user(person)
        for person in (ALICE, BOB):
            w.iam.put_user_policy(
                UserName=person, PolicyName="roles", PolicyDocument=_doc(ROLE_MAKER)
            )
        with w.serving():
            yield w


@pytest.fixture
def enforced(world, enforcing) -> BrokerWorld:
    """The world with moto's IAM enforcement on (conftest.enforcing) for this test."""
    return world


@contextmanager
def _as_admin() -> Iterator[None]:
    """The account's administrator acts (moto cannot authorize its stand-in's session)."""
    from moto.core.authorization import disable_iam_authentication

    with disable_iam_authentication():
        yield


def _make_role(world: BrokerWorld, client: Any, name: str, path: str = "/") -> None:
    """A role ``client`` creates that alice and bob may assume and that may ask who it is."""
    people = [f"arn:aws:iam::{ACCOUNT}:user/{u}" for u in (ALICE, BOB)]
    trust = _doc({"Effect": "Allow", "Principal": {"AWS": people}, "Action": "sts:AssumeRole"})
    client.create_role(RoleName=name, Path=path, AssumeRolePolicyDocument=trust)
    client.put_role_policy(RoleName=name, PolicyName="whoami", PolicyDocument=_doc(WHOAMI))


def _session(world: BrokerWorld, keys_of: str, role: str, name: str) -> dict[str, str]:
    """``keys_of``'s own keys assume ``role`` (its path and name) with session name ``name``."""
    arn = f"arn:aws:iam::{ACCOUNT}:role/{role}"
    sts = world.boto(keys_of, "sts")
    return _keys(sts.assume_role(RoleArn=arn, RoleSessionName=name)["Credentials"])


def _pending(world: BrokerWorld, reason: str) -> str:
    out = world.run(ALICE, "request", "prod-readonly", "--reason", reason, "--no-wait")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _status(world: BrokerWorld, request_id: str) -> dict[str, Any]:
    out = world.run(CAROL, "status", request_id, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _refused_as_bob(world: BrokerWorld, request_id: str, as_bob: dict[str, str]) -> str:
    out = world.run(ALICE, "approve", request_id, "--yes", **as_bob)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    (line,) = out.stderr.splitlines()
    doc = _status(world, request_id)
    assert doc["status"] == "pending" and doc["approvers"] == []
    return line


def test_a_role_named_like_identity_centers_is_not_identity_centers_to_the_broker(enforced):
    world = enforced
    request_id = _pending(world, "INC-20 evil role")
    evil = f"AWSReservedSSO_evil_{uuid.uuid4().hex[:8]}"
    _make_role(world, world.boto(ALICE, "iam"), evil)
    as_bob = _session(world, ALICE, evil, BOB)
    arn = boto3.client(
        "sts",
        endpoint_url=world.moto,
        region_name=REGION,
        aws_access_key_id=as_bob["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=as_bob["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=as_bob["AWS_SESSION_TOKEN"],
    ).get_caller_identity()["Arn"]
    assert arn == f"arn:aws:sts::{ACCOUNT}:assumed-role/{evil}/{BOB}"  # what the broker sees
    line = _refused_as_bob(world, request_id, as_bob)
    assert f"IAM keeps it at path /, not {SSO_PATH}" in line


def test_a_role_made_again_under_the_same_name_inherits_nothing_from_the_brokers_cache(enforced):
    world = enforced
    name = f"AWSReservedSSO_Approver_{uuid.uuid4().hex[:8]}"
    with _as_admin():
        _make_role(world, world.iam, name, SSO_PATH)  # Identity Center's, made by AWS
    first = _pending(world, "INC-20 first")
    # bob's Identity Center session approves: the broker asks IAM and keeps its answer.
    sso_bob = _session(world, BOB, SSO_PATH[1:] + name, BOB)
    out = world.run(BOB, "approve", first, "--yes", **sso_bob)
    assert out.returncode == 0, out.stderr
    assert _status(world, first)["approvers"] == [BOB]
    # The permission set goes; alice makes a role of the same name, outside that path.
    with _as_admin():
        world.iam.delete_role_policy(RoleName=name, PolicyName="whoami")
        world.iam.delete_role(RoleName=name)
    _make_role(world, world.boto(ALICE, "iam"), name)
    second = _pending(world, "INC-20 second")
    as_bob = _session(world, ALICE, name, BOB)
    line = _refused_as_bob(world, second, as_bob)
    assert f"IAM keeps it at path /, not {SSO_PATH}" in line


# --------------------------------------------------------------------------- item 2


def _two_long_grants(run, pd: Any, pd_ids: dict[str, str]) -> dict[str, str]:
    """LONG_ONE and LONG_TWO are on call and each gets prod-readonly: person -> request id."""
    ids = {}
    for user, person in (("long-one", LONG_ONE), ("long-two", LONG_TWO)):
        _on_call(pd, pd_ids[person])
        out = run(user, "request", "prod-readonly", "--reason", "INC-20 long names", "--json")
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        assert doc["status"] == "issued" and doc["requester"] == person
        ids[person] = doc["request_id"]
    return ids


def _session_name(moto: str, keys: dict[str, str]) -> str:
    """The session name STS reports for credentials jitctl issued (its SourceIdentity too)."""
    sts = boto3.client("sts", endpoint_url=moto, region_name=REGION, **keys)
    return sts.get_caller_identity()["Arn"].rsplit("/", 1)[1]


def _denied(iam: Any, role: str) -> list[str]:
    doc = iam.get_role_policy(RoleName=role, PolicyName="jitctl-revocations")["PolicyDocument"]
    return [s["Condition"]["StringEquals"]["aws:SourceIdentity"] for s in doc["Statement"]]


def _profile_keys(credentials_file) -> dict[str, str]:
    import configparser

    ini = configparser.RawConfigParser()
    ini.read(credentials_file)
    section = ini["jit-prod-readonly"]
    return {
        "aws_access_key_id": section["aws_access_key_id"],
        "aws_secret_access_key": section["aws_secret_access_key"],
        "aws_session_token": section["aws_session_token"],
    }


def _revoke_one_and_check(names: dict[str, str], denied: list[str]) -> None:
    assert names[LONG_ONE] != names[LONG_TWO]
    assert all(len(n) <= 64 for n in names.values())
    assert denied == [names[LONG_ONE]]  # her sessions, and nobody else's


def test_revoking_one_long_address_through_the_broker_cuts_only_hers(enforced):
    world = enforced
    ids = _two_long_grants(world.run, world.pd, world.pd_ids)
    home = world.root / "home"
    names = {
        person: _session_name(world.moto, _profile_keys(home / user / ".aws" / "credentials"))
        for user, person in (("long-one", LONG_ONE), ("long-two", LONG_TWO))
    }
    out = world.run("long-one", "revoke", ids[LONG_ONE], "--reason", "done")
    assert out.returncode == 0, out.stderr
    with _as_admin():
        denied = _denied(world.iam, "jit-prod-readonly")
    _revoke_one_and_check(names, denied)


@pytest.fixture
def long_team(tmp_path, moto_server, pd_sim) -> Team:
    """Direct mode: the harness's team, prod-readonly on a role of this test's own, and the
    two long addresses mapped from IAM users long-one and long-two."""
    role = f"prod-readonly-{uuid.uuid4().hex[:8]}"
    identities = (
        '[identities]\n"arn:aws:iam::123456789012:user/long-one" = "' + LONG_ONE + '"\n'
        '"arn:aws:iam::123456789012:user/long-two" = "' + LONG_TWO + '"\n'
    )
    policy = POLICY.replace("role/prod-readonly", f"role/{role}")
    team = Team(tmp_path, moto_server, pd_sim, policy=policy.replace("[identities]\n", identities))
    iam = boto3.client(
        "iam",
        endpoint_url=moto_server,
        region_name=REGION,
        aws_access_key_id="AKIAADMIN",
        aws_secret_access_key="x",
    )
    iam.create_role(RoleName=role, AssumeRolePolicyDocument="{}", MaxSessionDuration=43200)
    team.iam_role, team.iam = role, iam
    return team


def test_revoking_one_long_address_in_direct_mode_cuts_only_hers(long_team):
    team = long_team
    pd_ids = {person: team.pd_user(person) for person in (LONG_ONE, LONG_TWO)}
    ids = _two_long_grants(team.run, team.pd, pd_ids)
    names = {
        person: team.consumer_arn(user, "jit-prod-readonly").rsplit("/", 1)[1]
        for user, person in (("long-one", LONG_ONE), ("long-two", LONG_TWO))
    }
    out = team.run("long-one", "revoke", ids[LONG_ONE], "--reason", "done")
    assert out.returncode == 0, out.stderr
    _revoke_one_and_check(names, _denied(team.iam, team.iam_role))
