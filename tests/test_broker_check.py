"""`jitctl broker check`: which policy roles trust someone besides the broker (a hole in the
gate), and which lack what the broker needs. Trust policies live in moto's IAM; the command runs
as a subprocess with the CLI's own error handling."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from jitctl.broker.trustcheck import analyse, check_gate
from jitctl.errors import UsageError
from jitctl.policy.load import load_policy
from tests.conftest import clean_env, enforce, moto_process
from tests.test_deploy import TRUST_TEMPLATE, client

ACCOUNT = "123456789012"
BROKER = f"arn:aws:iam::{ACCOUNT}:role/jitctl-broker"
ROOT = f"arn:aws:iam::{ACCOUNT}:root"
ALL = ["sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"]


def trust(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(principal: Any, action: Any = ALL, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Principal": principal, "Action": action} | extra


def gated_template(broker: str = BROKER) -> dict[str, Any]:
    return json.loads(TRUST_TEMPLATE.read_text().replace("BROKER_ROLE_ARN", broker))


def found(document: dict[str, Any]) -> tuple[list[str], list[str]]:
    f = analyse("r", "arn:aws:iam::123456789012:role/r", document, BROKER)
    return [h.describe() for h in f.holes], list(f.missing)


# --------------------------------------------------------------------- reading trust policies


def test_the_deploy_template_is_gated():
    assert found(gated_template()) == ([], [])


@pytest.mark.parametrize(
    ("principal", "hole"),
    [
        ({"AWS": ROOT}, f"AWS:{ROOT}"),
        ({"AWS": ACCOUNT}, f"AWS:{ACCOUNT}"),
        ("*", "*"),
        ({"AWS": "*"}, "*"),
        (
            {"AWS": [BROKER, f"arn:aws:iam::{ACCOUNT}:role/ops"]},
            f"AWS:arn:aws:iam::{ACCOUNT}:role/ops",
        ),
        ({"AWS": f"arn:aws:iam::{ACCOUNT}:user/alice"}, f"AWS:arn:aws:iam::{ACCOUNT}:user/alice"),
        ({"AWS": "arn:aws:iam::210987654321:root"}, "AWS:arn:aws:iam::210987654321:root"),
        ({"Service": "ec2.amazonaws.com"}, "Service:ec2.amazonaws.com"),
        ({"AWS": "AROAEXAMPLEUNIQUEID"}, "AWS:AROAEXAMPLEUNIQUEID"),  # a deleted role's id
    ],
)
def test_any_other_principal_is_a_hole(principal, hole):
    holes, _ = found(trust(allow({"AWS": BROKER}), allow(principal, "sts:AssumeRole")))
    assert holes == [f"trusts {hole}"]


def test_the_broker_inside_a_list_is_not_a_hole_but_its_neighbour_is():
    doc = trust(allow({"AWS": [BROKER, ROOT]}))
    assert found(doc) == ([f"trusts AWS:{ROOT}"], [])


@pytest.mark.parametrize(
    "action", ["sts:AssumeRole", ["sts:AssumeRole"], "sts:*", "*", "sts:Assume*", "STS:assumerole"]
)
def test_action_forms_and_wildcards(action):
    holes, _ = found(trust(allow({"AWS": BROKER}), allow({"AWS": ROOT}, action)))
    assert holes == [f"trusts AWS:{ROOT}"]


def test_tagging_alone_lets_nobody_in():
    doc = trust(allow({"AWS": BROKER}), allow({"AWS": ROOT}, ["sts:TagSession"]))
    assert found(doc) == ([], [])


def test_not_action_that_leaves_assume_role_in_is_a_hole():
    doc = trust(
        allow({"AWS": BROKER}), {"Effect": "Allow", "Principal": "*", "NotAction": "sts:TagSession"}
    )
    assert found(doc)[0] == ["trusts *"]
    doc = trust(
        allow({"AWS": BROKER}), {"Effect": "Allow", "Principal": "*", "NotAction": "sts:Assume*"}
    )
    assert found(doc)[0] == []


def test_federated_and_saml_assume_are_holes_too():
    web = allow({"Federated": "cognito-identity.amazonaws.com"}, "sts:AssumeRoleWithWebIdentity")
    saml = allow(
        {"Federated": f"arn:aws:iam::{ACCOUNT}:saml-provider/okta"}, "sts:AssumeRoleWithSAML"
    )
    holes, _ = found(trust(allow({"AWS": BROKER}), web, saml))
    assert holes == [
        "trusts Federated:cognito-identity.amazonaws.com",
        f"trusts Federated:arn:aws:iam::{ACCOUNT}:saml-provider/okta",
    ]


def test_not_principal_is_everyone_but():
    st = {"Effect": "Allow", "NotPrincipal": {"AWS": ROOT}, "Action": "sts:AssumeRole"}
    holes, _ = found(trust(allow({"AWS": BROKER}), st))
    assert holes == [f"trusts everyone except AWS:{ROOT} (NotPrincipal)"]


def test_conditions_are_reported_not_trusted():
    cond = {"StringEquals": {"aws:PrincipalTag/team": "sre"}}
    holes, _ = found(trust(allow({"AWS": BROKER}), allow({"AWS": ROOT}, Condition=cond)))
    assert holes == [f"trusts AWS:{ROOT} (with conditions)"]


@pytest.mark.parametrize("operator", ["StringEquals", "ArnEquals", "ArnLike", "StringLike"])
def test_principal_arn_pinned_to_the_broker_closes_the_hole(operator):
    cond = {operator: {"aws:PrincipalArn": BROKER}, "Null": {"sts:SourceIdentity": "false"}}
    assert found(trust(allow({"AWS": ROOT}, Condition=cond))) == ([], [])


@pytest.mark.parametrize(
    "cond",
    [
        {"ArnLike": {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:role/jitctl-*"}},
        {"StringEqualsIfExists": {"aws:PrincipalArn": BROKER}},  # a missing key passes
        {"ArnEquals": {"aws:PrincipalArn": [BROKER, f"arn:aws:iam::{ACCOUNT}:role/ops"]}},
        {"ArnNotEquals": {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:role/ops"}},
    ],
)
def test_principal_arn_conditions_that_admit_more_stay_holes(cond):
    holes, _ = found(trust(allow({"AWS": ROOT}, Condition=cond)))
    assert holes == [f"trusts AWS:{ROOT} (with conditions)"]


def test_deny_statements_are_not_holes():
    deny = {"Effect": "Deny", "Principal": "*", "Action": "sts:AssumeRole"}
    deny["Condition"] = {"Null": {"sts:SourceIdentity": "true"}}
    assert found(trust(allow({"AWS": BROKER}), deny)) == ([], [])


def test_missing_actions_for_the_broker():
    doc = trust(allow({"AWS": BROKER}, ["sts:AssumeRole", "sts:SetSourceIdentity"]))
    assert found(doc) == ([], ["sts:TagSession"])
    doc = trust(allow({"AWS": BROKER}, "sts:AssumeRole"))
    assert found(doc) == ([], ["sts:SetSourceIdentity", "sts:TagSession"])
    assert found(trust()) == ([], ALL)


def test_an_unconditional_deny_takes_the_action_from_the_broker():
    deny = {"Effect": "Deny", "Principal": {"AWS": BROKER}, "Action": "sts:TagSession"}
    assert found(trust(allow({"AWS": BROKER}), deny)) == ([], ["sts:TagSession"])


def test_broker_allowed_through_its_account_root_is_not_missing_but_is_a_hole():
    holes, missing = found(trust(allow({"AWS": ROOT})))
    assert (holes, missing) == ([f"trusts AWS:{ROOT}"], [])


def test_a_single_statement_object_and_string_actions():
    doc = {"Version": "2012-10-17", "Statement": allow({"AWS": BROKER}, "sts:*")}
    assert found(doc) == ([], [])


def test_a_broker_that_is_no_role_arn_is_a_usage_error(tmp_path):
    policy = load_policy(write_policy_dir(tmp_path, {"a": f"arn:aws:iam::{ACCOUNT}:role/a"}))
    with pytest.raises(UsageError, match="not an IAM role ARN"):
        check_gate(policy, None, f"arn:aws:iam::{ACCOUNT}:user/alice")


# --------------------------------------------------------------------- against IAM (moto)


def write_policy_dir(root: Path, roles: dict[str, str]) -> Path:
    """One policy file with a role per (name -> role ARN)."""
    root.mkdir(parents=True, exist_ok=True)
    text = "version = 1\n"
    for name, arn in roles.items():
        text += textwrap.dedent(
            f"""
            [roles.{name}]
            arn = "{arn}"
            max_duration = "1h"
            [roles.{name}.approval]
            approvers = ["carol@example.com"]
            """
        )
    (root / "policy.toml").write_text(text)
    return root / "policy.toml"


CASES = {
    "gated": gated_template,
    "root": lambda b: trust(allow({"AWS": b}), allow({"AWS": ROOT})),
    "star": lambda b: trust(allow("*", "sts:AssumeRole")),
    "second": lambda b: trust(allow({"AWS": [b, f"arn:aws:iam::{ACCOUNT}:role/ops-{b[-6:]}"]})),
    "notag": lambda b: trust(allow({"AWS": b}, ["sts:AssumeRole", "sts:SetSourceIdentity"])),
}


@pytest.fixture
def roles(moto_server, tmp_path) -> dict[str, Any]:
    """A fresh broker ARN and one IAM role per CASES entry (moto's server is shared)."""
    suffix = uuid.uuid4().hex[:6]
    broker = f"arn:aws:iam::{ACCOUNT}:role/jitctl-broker-{suffix}"
    iam = client("iam", moto_server)
    arns = {}
    for case, make in CASES.items():
        name = f"jit-{case}-{suffix}"
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(make(broker)))
        arns[case] = f"arn:aws:iam::{ACCOUNT}:role/{name}"
    arns["gone"] = f"arn:aws:iam::{ACCOUNT}:role/jit-gone-{suffix}"  # never created
    return {"broker": broker, "arns": arns, "policy": write_policy_dir(tmp_path / "p", arns)}


def test_check_gate_reads_each_roles_trust_policy(moto_server, roles):
    findings = check_gate(load_policy(roles["policy"]), client("iam", moto_server), roles["broker"])
    by_role = {f.role: f for f in findings}
    assert list(by_role) == ["gated", "root", "star", "second", "notag", "gone"]
    assert by_role["gated"].gated
    assert [h.principal for h in by_role["root"].holes] == [f"AWS:{ROOT}"]
    assert [h.principal for h in by_role["star"].holes] == ["*"]
    assert [h.principal for h in by_role["second"].holes] == [
        f"AWS:arn:aws:iam::{ACCOUNT}:role/ops-{roles['broker'][-6:]}"
    ]
    assert by_role["star"].missing == tuple(ALL[1:])  # "*" allowed AssumeRole alone
    assert by_role["notag"].holes == () and by_role["notag"].missing == ("sts:TagSession",)
    assert not by_role["gone"].gated and by_role["gone"].error == "no such role in this account"


def user_with(iam, name: str, action: str) -> tuple[str, str]:
    """An IAM user whose only permission is ``action``; returns its access key."""
    iam.create_user(UserName=name)
    statement = {"Effect": "Allow", "Action": action, "Resource": "*"}
    document = {"Version": "2012-10-17", "Statement": [statement]}
    iam.put_user_policy(UserName=name, PolicyName="only", PolicyDocument=json.dumps(document))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def test_a_checker_without_iam_get_role_proves_nothing(tmp_path):
    """With IAM enforced, a checker denied iam:GetRole gets "cannot check", never ✓."""
    with moto_process() as url:
        iam = client("iam", url)
        broker = f"arn:aws:iam::{ACCOUNT}:role/jitctl-broker"
        document = json.dumps(gated_template(broker))
        iam.create_role(RoleName="jit-a", AssumeRolePolicyDocument=document)
        auditor = user_with(iam, "auditor", "iam:ListRoles")
        reader = user_with(iam, "reader", "iam:GetRole")
        enforce(url)
        policy = load_policy(
            write_policy_dir(tmp_path, {"a": f"arn:aws:iam::{ACCOUNT}:role/jit-a"})
        )
        (finding,) = check_gate(policy, client("iam", url, *auditor), broker)
        assert not finding.gated
        assert finding.error == "access denied (the checker needs iam:GetRole)"
        (control,) = check_gate(policy, client("iam", url, *reader), broker)
        assert control.gated  # the same role, read by a principal allowed to


# --------------------------------------------------------------------- the command


def jitctl(
    tmp_path: Path, moto: str, policy: Path, *args: str, **extra: str
) -> subprocess.CompletedProcess:
    config = tmp_path / "config.toml"
    config.write_text(f'policy = "{policy}"\n')
    env = clean_env(
        JITCTL_CONFIG=str(config),
        AWS_ENDPOINT_URL=moto,
        AWS_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="AKIAADMIN",
        AWS_SECRET_ACCESS_KEY="x",
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "credentials"),
        AWS_CONFIG_FILE=str(tmp_path / "aws-config"),
        NO_COLOR="1",
        **extra,
    )
    return subprocess.run(
        [shutil.which("jitctl") or "jitctl", "broker", "check", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_command_prints_a_line_per_role_and_exits_3_on_a_hole(tmp_path, moto_server, roles):
    out = jitctl(tmp_path, moto_server, roles["policy"], "--broker-role", roles["broker"])
    assert out.returncode == 3, out.stderr
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert lines[0].startswith("✓ gated (") and "gated (only the broker's role" in lines[0]
    assert lines[1].startswith("✗ root (") and f"hole: trusts AWS:{ROOT}" in lines[1]
    assert "hole: trusts *;" in lines[2] and "lacks sts:TagSession for the broker" in lines[2]
    assert lines[4].endswith("): lacks sts:TagSession for the broker")  # no hole, just broken
    assert lines[5].endswith("): cannot check: no such role in this account")
    assert lines[-1].startswith("jitctl: 5 of 6 roles are not proven gated: root, star,")
    assert "Traceback" not in out.stderr


def test_command_json_is_one_document(tmp_path, moto_server, roles):
    out = jitctl(tmp_path, moto_server, roles["policy"], "--broker-role", roles["broker"], "--json")
    assert out.returncode == 3
    doc = json.loads(out.stdout)
    assert doc["broker_role"] == roles["broker"] and doc["gated"] is False
    assert [(r["role"], r["gated"]) for r in doc["roles"]] == [
        ("gated", True),
        ("root", False),
        ("star", False),
        ("second", False),
        ("notag", False),
        ("gone", False),
    ]
    assert doc["roles"][1]["holes"] == [
        {"principal": f"AWS:{ROOT}", "statement": "#2", "conditional": False}
    ]


def test_command_exits_0_when_every_role_is_gated(tmp_path, moto_server, roles):
    policy = write_policy_dir(tmp_path / "only", {"gated": roles["arns"]["gated"]})
    out = jitctl(tmp_path, moto_server, policy, "--broker-role", roles["broker"], "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["gated"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--broker-role", "alice"], "is not an IAM role ARN"),
        (
            ["--broker-role", f"arn:aws:sts::{ACCOUNT}:assumed-role/jitctl-broker/s"],
            "is not an IAM role ARN",
        ),
        ([], "--broker-role"),
    ],
)
def test_command_refuses_a_bad_broker_role(tmp_path, moto_server, roles, args, message):
    out = jitctl(tmp_path, moto_server, roles["policy"], *args)
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr


def test_aws_unreachable_is_exit_5_not_a_verdict(tmp_path, roles):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    out = jitctl(tmp_path, closed, roles["policy"], "--broker-role", roles["broker"], "--json")
    assert out.returncode == 5, out.stderr
    # --json: the one document on stdout is the error (issue 21 item 18), never a verdict
    assert json.loads(out.stdout)["error"]["exit_code"] == 5 and "✓" not in out.stderr
    (line,) = out.stderr.splitlines()
    assert line.startswith("jitctl: cannot read the trust policy of arn:aws:iam::")
