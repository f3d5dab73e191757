"""Role chaining: credentials that are themselves a role session (a broker on Lambda, an IAM
Identity Center login) can assume a role for 1 hour at most. jitctl caps such grants at 1h
with a note (and an audit field), `doctor`, `policy validate` and `broker check` warn about
roles whose max_duration is longer, and AWS's refusal names the real cause."""

from __future__ import annotations

import configparser
import json
import shutil
import subprocess
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from jitctl.aws import AwsClients, assume_role
from jitctl.errors import JitctlError
from jitctl.lifecycle import chaining
from jitctl.timeutil import parse_rfc3339
from tests.conftest import clean_env
from tests.harness import ACCOUNT, Team
from tests.test_cli_request import on_call
from tests.world import key_env

ALICE = "alice@example.com"
SSO_PATH = "/aws-reserved/sso.amazonaws.com/"
CHAINING_REFUSAL = (
    "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by "
    "role chaining."
)


def sso_session(team: Team, person: str) -> dict[str, str]:
    """What IAM Identity Center gives ``person``: a session of an AWSReservedSSO_ role,
    named by their email (moto's server is shared: a role of this test's own)."""
    iam = team.admin_client("iam")
    name = f"AWSReservedSSO_Oncall_{uuid.uuid4().hex[:16]}"
    iam.create_role(RoleName=name, Path=SSO_PATH, AssumeRolePolicyDocument="{}")
    sts = team.admin_client("sts")
    arn = f"arn:aws:iam::{ACCOUNT}:role{SSO_PATH}{name}"
    creds = sts.assume_role(RoleArn=arn, RoleSessionName=person)["Credentials"]
    return key_env(creds)


# ---------------------------------------------------------------- the rule


@pytest.mark.parametrize(
    ("arn", "chained"),
    [
        (f"arn:aws:sts::{ACCOUNT}:assumed-role/jitctl-broker/lambda-fn", True),
        (f"arn:aws-us-gov:sts::{ACCOUNT}:assumed-role/AWSReservedSSO_X_1/a@example.com", True),
        (f"arn:aws:iam::{ACCOUNT}:user/broker", False),
        (f"arn:aws:iam::{ACCOUNT}:role/assumed-role/x", False),  # a role ARN, not a session
        (f"arn:aws:sts::{ACCOUNT}:federated-user/bob", False),
    ],
)
def test_a_role_session_is_told_by_its_arn(arn: str, chained: bool) -> None:
    assert chaining.is_role_session(arn) is chained
    seconds, note = chaining.cap(7200, arn)
    assert seconds == (3600 if chained else 7200)
    assert (note is not None) is chained


def test_a_grant_within_the_hour_is_not_touched() -> None:
    assert chaining.cap(3600, f"arn:aws:sts::{ACCOUNT}:assumed-role/r/s") == (3600, None)


# ---------------------------------------------------------------- issuing


def test_an_sso_login_gets_at_most_an_hour_with_a_note(team: Team) -> None:
    """Direct mode: the requester's own SSO session assumes the role. Asking for the role's
    2h would be refused by AWS; it is issued for 1h and says why."""
    on_call(team, ALICE)
    env = team.env(ALICE, **sso_session(team, ALICE))
    out = team.run(ALICE, "request", "prod-readonly", "--reason", "x", "--duration", "2h", env=env)
    assert out.returncode == 0, out.stderr
    assert "role chaining" in out.stderr and "1h, not 2h" in out.stderr
    ini = configparser.ConfigParser()
    ini.read(team.credentials_file(ALICE))
    expires = parse_rfc3339(ini["jit-prod-readonly"]["x_security_token_expires"])
    assert expires - datetime.now(UTC) <= timedelta(hours=1)
    issued = [r for r in team.audit_records(ALICE) if r["event"] == "issued"][-1]
    assert issued["duration_seconds"] == 3600 and "role chaining" in issued["capped"]


def test_an_iam_user_gets_the_full_duration(team: Team) -> None:
    """The control: the same request with an IAM user's keys is not capped."""
    on_call(team, ALICE)
    out = team.run(ALICE, "request", "prod-readonly", "--reason", "x", "--duration", "2h")
    assert out.returncode == 0, out.stderr
    assert "role chaining" not in out.stderr
    issued = [r for r in team.audit_records(ALICE) if r["event"] == "issued"][-1]
    assert issued["duration_seconds"] == 7200 and "capped" not in issued


# ---------------------------------------------------------------- AWS's refusal


@pytest.fixture
def refusing_sts(fake_http) -> str:
    body = (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
        f"<Type>Sender</Type><Code>ValidationError</Code><Message>{CHAINING_REFUSAL}"
        "</Message></Error><RequestId>1</RequestId></ErrorResponse>"
    )
    return fake_http(400, {"Content-Type": "text/xml"}, body.encode()).url


def test_the_refusal_names_role_chaining_not_max_session_duration(
    aws_env, refusing_sts: str, monkeypatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", refusing_sts)
    with pytest.raises(JitctlError) as info:
        assume_role(
            AwsClients(),
            role_arn=f"arn:aws:iam::{ACCOUNT}:role/prod",
            person=ALICE,
            duration_seconds=7200,
            tags={},
            session_policy=None,
        )
    assert "role chaining" in (info.value.hint or "")
    assert "raise it" not in (info.value.hint or "")  # the old advice, which cannot help


# ---------------------------------------------------------------- warnings


def test_doctor_warns_an_sso_login_about_roles_over_an_hour(team: Team) -> None:
    env = team.env(ALICE, **sso_session(team, ALICE))
    out = team.run(ALICE, "doctor", "--json", env=env)
    checks = {c["name"]: c for c in json.loads(out.stdout)["checks"]}
    check = checks["session length"]
    assert check["status"] == "warn", check
    assert "role chaining" in check["detail"] and "prod-readonly (2h)" in check["detail"]
    assert "prod-admin" not in check["detail"]  # its max_duration is 1h


def test_doctor_passes_an_iam_user(team: Team) -> None:
    out = team.run(ALICE, "doctor", "--json")
    checks = {c["name"]: c for c in json.loads(out.stdout)["checks"]}
    assert checks["session length"]["status"] == "pass"


def test_policy_validate_warns_when_a_broker_is_configured(team: Team) -> None:
    config = team.config.read_text()
    bare = team.run(ALICE, "policy", "validate", "--json")
    assert bare.returncode == 0, bare.stderr
    assert json.loads(bare.stdout)["over_chaining_limit"] == ["prod-readonly"]
    assert json.loads(bare.stdout)["warnings"] == []  # who issues is not known: no warning
    team.config.write_text(
        config + f'\n[broker]\nrole_arn = "arn:aws:iam::{ACCOUNT}:role/jitctl-broker"\n'
    )
    out = team.run(ALICE, "policy", "validate")
    assert out.returncode == 0, out.stderr  # a warning, not an error
    assert "warning:" in out.stderr and "prod-readonly" in out.stderr
    assert "role chaining" in out.stderr


def test_broker_check_warns_about_roles_over_an_hour(team: Team) -> None:
    iam = team.admin_client("iam")
    suffix = uuid.uuid4().hex[:6]
    broker = f"arn:aws:iam::{ACCOUNT}:role/jitctl-broker-{suffix}"
    policy = team.root / "long" / "policy.toml"
    policy.parent.mkdir()
    policy.write_text(
        f'version = 1\n[roles.long]\narn = "arn:aws:iam::{ACCOUNT}:role/long-{suffix}"\n'
        'max_duration = "4h"\n[roles.long.approval]\napprovers = ["bob@example.com"]\n'
    )
    iam.create_role(RoleName=f"long-{suffix}", AssumeRolePolicyDocument="{}")
    config = team.root / "check.toml"
    config.write_text(f'policy = "{policy}"\n')
    env = clean_env(
        JITCTL_CONFIG=str(config),
        AWS_ENDPOINT_URL=team.moto,
        AWS_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="AKIAADMIN",
        AWS_SECRET_ACCESS_KEY="x",
        AWS_SHARED_CREDENTIALS_FILE=str(team.root / "nocreds"),
        AWS_CONFIG_FILE=str(team.root / "noconfig"),
    )
    out = subprocess.run(
        [shutil.which("jitctl") or "jitctl", "broker", "check", "--broker-role", broker, "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    (line,) = json.loads(out.stdout)["warnings"]
    assert "role chaining" in line and "long (4h)" in line
