"""The AWS layer against moto's real server: caller identity, AssumeRole parameters, refusals."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from datetime import UTC, datetime

import boto3
import pytest

from jitctl.aws import (
    TRUST_POLICY_HINT,
    AwsClients,
    approvers_tag,
    assume_role,
    get_caller_identity,
    sts_name,
    tag_value,
)
from jitctl.errors import AwsUnavailable, ExitCode, UsageError
from tests.conftest import moto_process
from tests.harness import iam_keys

ROLE = "arn:aws:iam::123456789012:role/prod-readonly"


def capture_params(clients: AwsClients, operation: str) -> list[dict]:
    """Record what botocore really sends (the call still goes to moto)."""
    seen: list[dict] = []
    clients.client("sts").meta.events.register(
        f"provide-client-params.sts.{operation}", lambda params, **_: seen.append(dict(params))
    )
    return seen


def test_caller_identity_comes_from_sts(aws_env, monkeypatch):
    for key, value in iam_keys(aws_env["AWS_ENDPOINT_URL"], "alice@example.com").items():
        monkeypatch.setenv(key, value)
    arn, account = get_caller_identity(AwsClients())
    assert arn == "arn:aws:iam::123456789012:user/alice@example.com"
    assert account == "123456789012"


def test_assume_role_carries_who_and_why(aws_env):
    clients = AwsClients()
    seen = capture_params(clients, "AssumeRole")
    policy = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:List*", "Resource": "*"}],
        }
    )
    creds = assume_role(
        clients,
        role_arn=ROLE,
        person="alice@example.com",
        duration_seconds=1800,
        tags={
            "jitctl:request-id": "r-abc",
            "jitctl:on-call": "escalation_policy/PEP1234/L1",
            "jitctl:approvers": "",
        },
        session_policy=policy,
    )
    (params,) = seen
    assert params["SourceIdentity"] == "alice@example.com"
    assert params["RoleSessionName"] == "alice@example.com"
    assert params["DurationSeconds"] == 1800
    assert params["Policy"] == policy
    assert {t["Key"]: t["Value"] for t in params["Tags"]} == {
        "jitctl:request-id": "r-abc",
        "jitctl:on-call": "escalation_policy/PEP1234/L1",
    }  # empty values are dropped: STS rejects nothing, CloudTrail shows nothing useless
    remaining = (creds.expiration - datetime.now(UTC)).total_seconds()
    assert 1700 < remaining <= 1800
    # A separate client with the new credentials really is the assumed role session.
    sts = boto3.client(
        "sts",
        endpoint_url=aws_env["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id=creds.access_key_id,
        aws_secret_access_key=creds.secret_access_key,
        aws_session_token=creds.session_token,
    )
    assert (
        sts.get_caller_identity()["Arn"]
        == "arn:aws:sts::123456789012:assumed-role/prod-readonly/alice@example.com"
    )
    assert creds.secret_access_key not in repr(creds) and creds.session_token not in repr(creds)


STS_NAME = re.compile(r"[\w+=,.@-]{2,64}", re.ASCII)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alice@example.com", "alice@example.com"),
        ("Alice@Example.COM", "alice@example.com"),  # people are compared lower-cased
        ("first.last+jit=x,y@example.co.uk", "first.last+jit=x,y@example.co.uk"),
        ("a" * 54 + "@example.c", "a" * 54 + "@example.c"),  # exactly 64: as is
    ],
)
def test_an_email_sts_takes_is_the_name_itself(text, expected):
    assert sts_name(text) == expected


LONG = "a-very-long-mailbox-name-for-the-platform-team-rotation-of-the-year"  # 67


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("jösé@example.com", "jäsé@example.com"),  # both were "j-s-@example.com"
        (f"{LONG}-one@example.com", f"{LONG}-two@example.com"),  # both were cut at 64
        ("a" * 55 + "@example.c", "a" * 55 + "@example.co"),
        ("zoë o'brien <z@x.io>", "zoe o-brien -z@x.io-"),
    ],
)
def test_two_people_never_share_a_name_in_aws(one, other):
    names = {sts_name(one), sts_name(other), sts_name(one.upper())}
    assert len(names) == 2 and sts_name(one) == sts_name(one.upper())
    for name in names:
        assert STS_NAME.fullmatch(name) and not name.lower().startswith("aws:")
        assert "@" not in name  # never someone's email: every email STS takes is used as is


def test_the_stable_form_is_readable_and_stable():
    name = sts_name("José.Núñez@example.com")
    assert name.startswith("jose.nunez_example.com.") and len(name) == 23 + 26
    assert sts_name("josé.núñez@example.com") == name
    long = sts_name(f"{LONG}-one@example.com")
    assert long.startswith(LONG[:37]) and len(long) == 64
    assert len(sts_name("a")) == 28 and len(sts_name("")) == 26  # never under STS's 2


@pytest.mark.parametrize("count", [1, 3, 5, 8, 40])
def test_the_approvers_tag_never_cuts_an_address(count):
    people = [f"approver-{i:02d}-{LONG}@example.com" for i in range(count)]
    tag = approvers_tag(people)
    assert len(tag) <= 256 and tag_value(tag) == tag
    words = tag.split(" ")
    shown = [w for w in words if not w.startswith("+")]
    assert shown == people[: len(shown)]  # whole addresses, in order
    hidden = count - len(shown)
    assert words[len(shown) :] == ([f"+{hidden}"] if hidden else [])
    if hidden:  # no room for one more
        assert len(" ".join([*people[: len(shown) + 1], f"+{hidden - 1}"])) > 256


def test_an_address_longer_than_a_tag_is_counted_not_cut():
    assert approvers_tag(["x" * 300 + "@example.com", "bob@example.com"]) == "+2"
    assert approvers_tag([]) == ""


def test_tag_values_are_sanitised():
    assert tag_value("INC-1 <script>\n") == "INC-1 _script__"
    assert len(tag_value("y" * 999)) == 256


def test_unreachable_aws_is_exit_5(monkeypatch, aws_env):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    with pytest.raises(AwsUnavailable) as info:
        get_caller_identity(AwsClients(connect_timeout=1, read_timeout=1))
    assert info.value.exit_code == ExitCode.UNAVAILABLE


def test_no_credentials_is_a_usage_error(monkeypatch, aws_env, tmp_path):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(UsageError, match="no AWS credentials"):
        get_caller_identity(AwsClients())


@pytest.fixture(scope="module")
def enforcing_moto():
    """A moto server that enforces IAM after setup, so STS really refuses (AccessDenied)."""
    with moto_process(open_calls=4) as url:
        yield url


def test_sts_refusal_is_exit_5_naming_the_trust_policy(enforcing_moto, monkeypatch, aws_env):
    kw = dict(
        endpoint_url=enforcing_moto,
        region_name="us-east-1",
        aws_access_key_id="AKIAADMIN",
        aws_secret_access_key="x",
    )
    iam = boto3.client("iam", **kw)
    iam.create_user(UserName="alice@example.com")
    key = iam.create_access_key(UserName="alice@example.com")["AccessKey"]
    iam.put_user_policy(
        UserName="alice@example.com",
        PolicyName="whoami",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}
                ],
            }
        ),
    )
    monkeypatch.setenv("AWS_ENDPOINT_URL", enforcing_moto)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    clients = AwsClients()
    assert get_caller_identity(clients)[0].endswith("user/alice@example.com")
    with pytest.raises(AwsUnavailable) as info:
        assume_role(
            clients,
            role_arn=ROLE,
            person="alice@example.com",
            duration_seconds=900,
            tags={},
            session_policy=None,
        )
    assert info.value.exit_code == ExitCode.UNAVAILABLE
    assert "AccessDenied" in info.value.message
    assert info.value.hint == TRUST_POLICY_HINT


def test_an_sso_profile_without_a_login_is_exit_2_with_the_login_command(tmp_path):
    """Not "AWS unreachable" (exit 5, which runbooks retry): the fix is to log in."""
    import shutil

    from tests.conftest import clean_env

    config = tmp_path / "config"
    config.write_text(
        "[profile work]\nsso_start_url = https://example.awsapps.com/start\n"
        "sso_region = us-east-1\nsso_account_id = 123456789012\nsso_role_name = ReadOnly\n"
        "region = us-east-1\n"
    )
    env = clean_env(
        HOME=str(tmp_path),
        AWS_CONFIG_FILE=str(config),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "credentials"),
        AWS_PROFILE="work",
        AWS_EC2_METADATA_DISABLED="true",
        JITCTL_CONFIG=str(tmp_path / "none.toml"),
    )
    (tmp_path / "none.toml").write_text('policy = "p.toml"\n')
    (tmp_path / "p.toml").write_text("version = 1\n")
    out = subprocess.run(
        [shutil.which("jitctl") or "jitctl", "whoami"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 2, out.stderr
    assert "`aws sso login --profile work`" in out.stderr and "Traceback" not in out.stderr


def _jitctl_without_login(tmp_path, *args: str, **aws: str):
    """The installed CLI on a machine whose only AWS settings are ``aws`` (no config files)."""
    import shutil

    from tests.conftest import clean_env

    (tmp_path / "c.toml").write_text('policy = "p.toml"\n')
    (tmp_path / "p.toml").write_text(
        'version = 1\n[roles.ro]\narn = "arn:aws:iam::123456789012:role/ro"\n'
        '[roles.ro.approval]\napprovers = ["bob@example.com"]\n'
    )
    settings = {
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        **aws,
    }
    env = clean_env(
        HOME=str(tmp_path),
        AWS_EC2_METADATA_DISABLED="true",
        JITCTL_CONFIG=str(tmp_path / "c.toml"),
        JITCTL_AUDIT_LOG=str(tmp_path / "audit.jsonl"),
        **settings,
    )
    exe = shutil.which("jitctl") or "jitctl"
    return subprocess.run([exe, *args], env=env, capture_output=True, text=True, timeout=60)


def test_keys_past_their_aws_credential_expiration_are_exit_2_saying_refresh(tmp_path):
    """botocore reports these as a RuntimeError, which was "AWS unreachable" (exit 5)."""
    out = _jitctl_without_login(
        tmp_path,
        "request",
        "ro",
        "--reason",
        "INC-1",  # fmt: skip
        AWS_ACCESS_KEY_ID="AKIAEXAMPLE",
        AWS_SECRET_ACCESS_KEY="secret",
        AWS_SESSION_TOKEN="token",
        AWS_CREDENTIAL_EXPIRATION="2020-01-01T00:00:00Z",
    )
    assert out.returncode == 2, out.stderr
    assert "your AWS credentials have expired" in out.stderr
    assert "refresh them" in out.stderr and "unreachable" not in out.stderr
    assert "Traceback" not in out.stderr and "secret" not in out.stderr


def test_no_aws_credentials_at_all_is_exit_2_saying_how_to_log_in(tmp_path):
    out = _jitctl_without_login(tmp_path, "request", "ro", "--reason", "INC-1")
    assert out.returncode == 2, out.stderr
    assert "no AWS credentials found" in out.stderr and "aws sso login" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("config", 'The credential source "Nope"'),
        ("expiration", "AWS_CREDENTIAL_EXPIRATION is not a date"),
    ],
)
def test_a_broken_aws_setup_is_exit_2_not_aws_unreachable(tmp_path, setting, says):
    if setting == "config":
        (tmp_path / "config").write_text(
            "[profile p]\ncredential_source = Nope\nrole_arn = arn:aws:iam::123456789012:role/x\n"
        )
        aws = {"AWS_CONFIG_FILE": str(tmp_path / "config"), "AWS_PROFILE": "p"}
    else:
        aws = {
            "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
            "AWS_SECRET_ACCESS_KEY": "secret",
            "AWS_CREDENTIAL_EXPIRATION": "next tuesday",
        }
    out = _jitctl_without_login(tmp_path, "whoami", **aws)
    assert out.returncode == 2, out.stderr
    assert says in out.stderr and "unreachable" not in out.stderr
