"""Issue 9, break 1: a session name is chosen by whoever calls sts:AssumeRole.

alice, with nothing but her own IAM keys, assumes a role she may assume and names the session
"bob@example.com", then tries to approve her own request as bob. Against moto's server with IAM
enforcement on, through the installed CLI. Only IAM Identity Center roles (AWS sets the name)
and roles the admin lists in [identities] session_name_roles may name a person this way.

Issue 20, item 1: a role's name proves nothing. alice, who may create IAM roles, makes one
named AWSReservedSSO_evil; only IAM's record of the role (its path, its unique id) counts.
These are the direct-mode tests; tests/test_attack_who.py holds the same attacks on a broker.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from tests import harness
from tests.conftest import moto_process
from tests.harness import POLICY, Team
from tests.world import key_env

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"
DEPLOY = "deploy"
DEPLOY_ARN = f"arn:aws:iam::{harness.ACCOUNT}:role/{DEPLOY}"
SSO_ROLE = "AWSReservedSSO_Approver_0123456789abcdef"
SSO_PATH = "/aws-reserved/sso.amazonaws.com/"
WHOAMI = {"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}
# jitctl asks IAM about the role whose session names a person (direct mode: with its keys)
GET_ROLE = {"Effect": "Allow", "Action": "iam:GetRole", "Resource": "*"}
ROLE_MAKER = {
    "Effect": "Allow",
    "Action": ["iam:CreateRole", "iam:PutRolePolicy", "sts:AssumeRole"],
    "Resource": "*",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def enforcing_moto() -> Iterator[tuple[str, dict[str, str]]]:
    """moto's server enforcing IAM once an admin exists (3 unauthenticated calls make it)."""
    with moto_process(open_calls=3) as url:
        iam = _client("iam", url, {"AWS_ACCESS_KEY_ID": "AKIASETUP", "AWS_SECRET_ACCESS_KEY": "x"})
        iam.create_user(UserName="admin")
        key = iam.create_access_key(UserName="admin")["AccessKey"]
        admin = key_env(key)
        iam.put_user_policy(
            UserName="admin",
            PolicyName="all",
            PolicyDocument=_doc({"Effect": "Allow", "Action": "*", "Resource": "*"}),
        )
        yield url, admin


def _client(service: str, url: str, keys: dict[str, str]):
    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=keys.get("AWS_SESSION_TOKEN"),
    )


def _doc(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


@pytest.fixture(scope="module")
def iam_setup(enforcing_moto) -> dict[str, dict[str, str]]:
    """People with keys that may only ask who they are and assume the two test roles."""
    url, admin = enforcing_moto
    iam = _client("iam", url, admin)
    people = [f"arn:aws:iam::{harness.ACCOUNT}:user/{u}" for u in (ALICE, BOB, CAROL)]
    trust = _doc({"Effect": "Allow", "Principal": {"AWS": people}, "Action": "sts:AssumeRole"})
    for name, path in ((DEPLOY, "/"), (SSO_ROLE, SSO_PATH)):
        iam.create_role(RoleName=name, Path=path, AssumeRolePolicyDocument=trust)
        iam.put_role_policy(
            RoleName=name, PolicyName="whoami", PolicyDocument=_doc(WHOAMI, GET_ROLE)
        )
    keys = {}
    for user in (ALICE, BOB, CAROL):
        iam.create_user(UserName=user)
        key = iam.create_access_key(UserName=user)["AccessKey"]
        keys[user] = key_env(key)
        assume = {
            "Effect": "Allow",
            "Action": "sts:AssumeRole",
            "Resource": [
                DEPLOY_ARN,
                f"arn:aws:iam::{harness.ACCOUNT}:role{SSO_PATH}{SSO_ROLE}",
            ],
        }
        iam.put_user_policy(UserName=user, PolicyName="jit", PolicyDocument=_doc(WHOAMI, assume))
        harness._keys[(url, user)] = keys[user]  # Team.env uses these instead of making users
    return keys


def _team(tmp_path, enforcing_moto, pd_sim, policy: str = POLICY) -> Team:
    return Team(tmp_path, enforcing_moto[0], pd_sim, policy=policy)


def _session_as(team: Team, keys: dict[str, str], role: str, name: str) -> dict[str, str]:
    """What someone's own keys get from sts:AssumeRole with a session name of their choosing
    (``role``: its name with its path, if any)."""
    sts = _client("sts", team.moto, keys)
    arn = f"arn:aws:iam::{harness.ACCOUNT}:role/{role}"
    creds = sts.assume_role(RoleArn=arn, RoleSessionName=name)["Credentials"]
    return key_env(creds)


def _pending(team: Team, role: str = "prod-readonly") -> str:
    out = team.run(ALICE, "request", role, "--reason", "INC-9 disk full", "--no-wait")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _status(team: Team, request_id: str) -> dict:
    out = team.run(ALICE, "status", request_id, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _whoami(team: Team, env: dict[str, str]) -> str:
    return _client("sts", team.moto, env).get_caller_identity()["Arn"]


def test_alice_cannot_approve_her_own_request_through_a_session_named_bob(
    tmp_path, enforcing_moto, iam_setup, pd_sim
):
    team = _team(tmp_path, enforcing_moto, pd_sim)
    request_id = _pending(team)
    as_bob = _session_as(team, iam_setup[ALICE], DEPLOY, BOB)
    session_arn = f"arn:aws:sts::{harness.ACCOUNT}:assumed-role/{DEPLOY}/{BOB}"
    assert _whoami(team, as_bob) == session_arn  # STS really reports the name she chose
    out = team.run(ALICE, "approve", request_id, env=team.env(ALICE, **as_bob))
    assert out.returncode == 2, out.stderr
    (line,) = out.stderr.splitlines()
    assert "Traceback" not in out.stderr
    assert f'[identities] "{session_arn}"' in line
    assert f'session_name_roles = ["{DEPLOY_ARN}"]' in line
    doc = _status(team, request_id)
    assert doc["status"] == "pending" and not doc.get("approvers")
    assert "approved" not in [r["event"] for r in team.audit_records(ALICE)]


def test_two_approvals_cannot_be_forged_with_two_session_names(
    tmp_path, enforcing_moto, iam_setup, pd_sim
):
    team = _team(tmp_path, enforcing_moto, pd_sim)
    request_id = _pending(team, "prod-admin")  # min_approvals = 2
    for name in (BOB, CAROL):
        session = _session_as(team, iam_setup[ALICE], DEPLOY, name)
        out = team.run(ALICE, "approve", request_id, env=team.env(ALICE, **session))
        assert out.returncode == 2, out.stderr
    assert _status(team, request_id)["status"] == "pending"


def test_a_role_listed_in_session_name_roles_is_the_admins_choice(
    tmp_path, enforcing_moto, iam_setup, pd_sim
):
    policy = POLICY.replace(
        "[identities]\n", f'[identities]\nsession_name_roles = ["{DEPLOY_ARN}"]\n'
    )
    team = _team(tmp_path, enforcing_moto, pd_sim, policy)
    request_id = _pending(team)
    as_bob = _session_as(team, iam_setup[ALICE], DEPLOY, BOB)
    out = team.run(ALICE, "approve", request_id, env=team.env(ALICE, **as_bob))
    assert out.returncode == 0, out.stderr
    doc = _status(team, request_id)
    assert doc["status"] == "approved" and doc["approvers"] == [BOB]


def test_an_identity_center_session_names_its_person(tmp_path, enforcing_moto, iam_setup, pd_sim):
    team = _team(tmp_path, enforcing_moto, pd_sim)
    request_id = _pending(team)
    # In AWS, Identity Center assumes this role for bob and sets the session name itself.
    sso_bob = _session_as(team, iam_setup[BOB], SSO_PATH[1:] + SSO_ROLE, BOB)
    assert _whoami(team, sso_bob).endswith(f"assumed-role/{SSO_ROLE}/{BOB}")
    out = team.run(BOB, "approve", request_id, env=team.env(BOB, **sso_bob))
    assert out.returncode == 0, out.stderr
    doc = _status(team, request_id)
    assert doc["status"] == "approved" and doc["approvers"] == [BOB]


@pytest.mark.parametrize("command", [("cancel",), ("revoke", "--reason", "as carol")])
def test_alice_cannot_act_as_carol_on_carols_request(
    tmp_path, enforcing_moto, iam_setup, pd_sim, command
):
    team = _team(tmp_path, enforcing_moto, pd_sim)
    out = team.run(CAROL, "request", "prod-readonly", "--reason", "INC-9 carol's", "--no-wait")
    assert out.returncode == 0, out.stderr
    request_id = out.stdout.strip()
    as_carol = _session_as(team, iam_setup[ALICE], DEPLOY, CAROL)
    out = team.run(ALICE, command[0], request_id, *command[1:], env=team.env(ALICE, **as_carol))
    assert out.returncode == 2, out.stderr
    assert "session_name_roles" in out.stderr and "Traceback" not in out.stderr
    assert _status(team, request_id)["status"] == "pending"


# --- issue 20, item 1: IAM's record of the role, not its name -------------------------------


@pytest.fixture(scope="module")
def alice_makes_roles(enforcing_moto, iam_setup) -> dict[str, str]:
    """alice may create IAM roles in the account (a platform engineer, say): her keys."""
    iam = _client("iam", *enforcing_moto)
    iam.put_user_policy(UserName=ALICE, PolicyName="roles", PolicyDocument=_doc(ROLE_MAKER))
    return iam_setup[ALICE]


def _make_role(url: str, keys: dict[str, str], name: str, path: str = "/", *statements) -> None:
    """A role ``keys`` create, which alice and bob may assume, allowed ``statements``."""
    people = [f"arn:aws:iam::{harness.ACCOUNT}:user/{u}" for u in (ALICE, BOB)]
    trust = _doc({"Effect": "Allow", "Principal": {"AWS": people}, "Action": "sts:AssumeRole"})
    iam = _client("iam", url, keys)
    iam.create_role(RoleName=name, Path=path, AssumeRolePolicyDocument=trust)
    policy = _doc(*(statements or (WHOAMI, GET_ROLE)))
    iam.put_role_policy(RoleName=name, PolicyName="whoami", PolicyDocument=policy)


def _refused_as_bob(team: Team, request_id: str, as_bob: dict[str, str]) -> str:
    """alice's approval as "bob" fails with one line (returned); the request stays pending."""
    out = team.run(ALICE, "approve", request_id, env=team.env(ALICE, **as_bob))
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    (line,) = out.stderr.splitlines()
    doc = _status(team, request_id)
    assert doc["status"] == "pending" and not doc.get("approvers")
    assert "approved" not in [r["event"] for r in team.audit_records(ALICE)]
    return line


def test_a_role_named_like_identity_centers_is_not_identity_centers(
    tmp_path, enforcing_moto, alice_makes_roles, pd_sim
):
    team = _team(tmp_path, enforcing_moto, pd_sim)
    request_id = _pending(team)
    evil = f"AWSReservedSSO_evil_{uuid.uuid4().hex[:8]}"
    _make_role(team.moto, alice_makes_roles, evil)
    as_bob = _session_as(team, alice_makes_roles, evil, BOB)
    assert _whoami(team, as_bob).endswith(f"assumed-role/{evil}/{BOB}")
    line = _refused_as_bob(team, request_id, as_bob)
    assert f"IAM keeps it at path /, not {SSO_PATH}" in line


def _cache_file(team: Team, user: str) -> Path:
    return team.home(user) / ".cache" / "jitctl" / "iam-roles.json"


def test_a_role_made_again_under_the_same_name_inherits_nothing_from_the_cache(
    tmp_path, enforcing_moto, alice_makes_roles, pd_sim
):
    url, admin = enforcing_moto
    team = _team(tmp_path, enforcing_moto, pd_sim)
    request_id = _pending(team)
    name = f"AWSReservedSSO_Team_{uuid.uuid4().hex[:8]}"
    _make_role(url, admin, name, SSO_PATH)
    # alice's own Identity Center session: jitctl asks IAM once and keeps its answer.
    as_alice = _session_as(team, alice_makes_roles, SSO_PATH[1:] + name, ALICE)
    out = team.run(ALICE, "whoami", "--json", env=team.env(ALICE, **as_alice))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["person"] == ALICE
    cache = _cache_file(team, ALICE)
    assert name in cache.read_text() and cache.stat().st_mode & 0o777 == 0o600
    # The role goes; alice makes one of the same name, outside Identity Center's path.
    iam = _client("iam", url, admin)
    iam.delete_role_policy(RoleName=name, PolicyName="whoami")
    iam.delete_role(RoleName=name)
    _make_role(url, alice_makes_roles, name)
    as_bob = _session_as(team, alice_makes_roles, name, BOB)
    line = _refused_as_bob(team, request_id, as_bob)
    assert f"IAM keeps it at path /, not {SSO_PATH}" in line


def test_a_session_name_that_cannot_be_checked_names_nobody(
    tmp_path, enforcing_moto, alice_makes_roles, pd_sim
):
    """Identity Center's sessions for bob (any keys may stand for AWS's here), with no
    iam:GetRole, then with IAM out of reach: bob is not recognised, the request waits."""
    url, admin = enforcing_moto
    team = _team(tmp_path, enforcing_moto, pd_sim)
    request_id = _pending(team)
    name = f"AWSReservedSSO_Bare_{uuid.uuid4().hex[:8]}"
    _make_role(url, admin, name, SSO_PATH, WHOAMI)  # no iam:GetRole
    sso_bob = _session_as(team, alice_makes_roles, SSO_PATH[1:] + name, BOB)
    out = team.run(BOB, "approve", request_id, env=team.env(BOB, **sso_bob))
    assert out.returncode == 2, out.stderr
    assert "may not call iam:GetRole" in out.stderr and "Traceback" not in out.stderr
    # IAM cannot be reached (STS can): exit 5, and still nobody's approval.
    _make_role(url, admin, name + "x", SSO_PATH)
    sso_bob = _session_as(team, alice_makes_roles, SSO_PATH[1:] + name + "x", BOB)
    env = team.env(BOB, **sso_bob, AWS_ENDPOINT_URL_IAM=f"http://127.0.0.1:{_free_port()}")
    out = team.run(BOB, "approve", request_id, env=env)
    assert out.returncode == 5, out.stderr
    assert "cannot check role" in out.stderr and "Traceback" not in out.stderr
    assert _status(team, request_id)["status"] == "pending"
