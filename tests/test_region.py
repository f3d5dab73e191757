"""Regions: a jit profile gets one in the AWS config file (the role's `region`, else the
caller's), and a missing table is reported with the region and account it was looked for in."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import textwrap
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from jitctl.credentials.profiles import write_config_region
from jitctl.errors import PolicyError
from jitctl.policy.load import load_policy
from tests.conftest import clean_env
from tests.harness import POLICY, Team

ALICE = "alice@example.com"
# The harness's policy, with a region for prod-readonly only.
REGION_POLICY = POLICY.replace(
    'session_policy = "readonly.json"\n',
    'session_policy = "readonly.json"\nregion = "eu-west-1"\n',
    1,
)


@pytest.fixture
def team_policy() -> str:
    return REGION_POLICY


def on_call(team: Team, email: str) -> None:
    team.on_call(email, 6)


def aws_cli(team: Team, user: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The AWS CLI v1 from PyPI with nothing but the files jitctl wrote: no keys, no region
    in the environment (the endpoint is the local AWS's)."""
    exe = shutil.which("aws")
    assert exe, "the AWS CLI is not installed (it is in the test extras)"
    home = team.home(user)
    env = clean_env(
        HOME=str(home),
        AWS_SHARED_CREDENTIALS_FILE=str(team.credentials_file(user)),
        AWS_CONFIG_FILE=str(home / ".aws" / "config"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    return subprocess.run(
        [exe, "--endpoint-url", team.moto, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def config_sections(team: Team, user: str) -> dict[str, dict[str, str]]:
    ini = configparser.RawConfigParser()
    ini.read(team.home(user) / ".aws" / "config")
    return {name: dict(ini.items(name)) for name in ini.sections()}


def test_the_jit_profile_gets_the_roles_region_and_the_aws_cli_uses_it(team):
    on_call(team, ALICE)
    out = team.run(ALICE, "request", "prod-readonly", "--reason", "INC-12 region")
    assert out.returncode == 0, out.stderr
    assert config_sections(team, ALICE) == {"profile jit-prod-readonly": {"region": "eu-west-1"}}
    # No region anywhere but in the file jitctl wrote: without it the CLI refuses to run.
    regions = aws_cli(
        team, ALICE, "--profile", "jit-prod-readonly", "ec2", "describe-regions", "--output", "json"
    )
    assert regions.returncode == 0, regions.stderr
    who = aws_cli(team, ALICE, "--profile", "jit-prod-readonly", "sts", "get-caller-identity")
    assert "assumed-role/prod-readonly/alice@example.com" in who.stdout, who.stderr


def test_the_region_joins_an_existing_profile_section_keeping_its_keys(team):
    on_call(team, ALICE)
    config = team.home(ALICE) / ".aws" / "config"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        "# mine\n[default]\noutput = json\n\n[profile jit-other]\n# keep me\noutput = text\n"
        "s3 =\n    addressing_style = path\n"
    )
    env = team.env(ALICE, AWS_REGION="ap-southeast-2")
    out = team.run(
        ALICE, "request", "prod-readonly", "--reason", "INC-12", "--profile", "jit-other", env=env
    )
    assert out.returncode == 0, out.stderr
    text = config.read_text()
    # The role's region wins over the caller's; the section's own keys and comments stay.
    assert text.startswith("# mine\n[default]\noutput = json\n\n[profile jit-other]\n# keep me\n")
    assert config_sections(team, ALICE)["profile jit-other"] == {
        "output": "text",
        "s3": "\naddressing_style = path",
        "region": "eu-west-1",
    }
    assert config_sections(team, ALICE)["default"] == {"output": "json"}


def test_without_a_role_region_the_profile_gets_the_callers(tmp_path):
    """prod-admin has no region in the policy: its profile gets the caller's AWS_REGION."""
    from jitctl.context import Environment
    from jitctl.credentials.delivery import profile_region

    env = Environment(environ={"AWS_REGION": "ca-central-1"})
    assert profile_region(env, None) == "ca-central-1"
    assert profile_region(env, "eu-west-1") == "eu-west-1"
    assert profile_region(env, "not a region\n[x]") == "ca-central-1"  # a broker's garbage
    path = tmp_path / "config"
    assert write_config_region(path, "jit-prod-admin", "ca-central-1") is True
    assert write_config_region(path, "jit-prod-admin", "ca-central-1") is False
    assert path.read_text() == "[profile jit-prod-admin]\nregion = ca-central-1\n"
    assert write_config_region(path, "default", "us-west-2") is True
    assert path.read_text().endswith("\n[default]\nregion = us-west-2\n")


@pytest.mark.parametrize("bad", ['"eu west 1"', '"EU-WEST-1"', "3", '""'])
def test_a_bad_region_in_the_policy_is_an_error_naming_the_key(tmp_path, bad):
    path = tmp_path / "p.toml"
    path.write_text(
        textwrap.dedent(f"""\
            version = 1
            [roles.app]
            arn = "arn:aws:iam::123456789012:role/app"
            region = {bad}
            [roles.app.approval]
            approvers = ["bob@example.com"]
            """)
    )
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert "role 'app'" in str(info.value) and "region" in str(info.value)


def test_a_missing_request_table_names_the_region_and_account(team):
    table = f"jitctl-{uuid.uuid4().hex[:8]}"
    team.use_store(f'[store]\nbackend = "dynamodb"\ntable = "{table}"\n')
    init = team.run(ALICE, "init")  # in us-east-1, the harness's region, and it says so
    assert init.returncode == 0, init.stderr
    assert f"store ready: {table} in us-east-1 (account 123456789012)" in init.stderr
    out = team.run(ALICE, "list", env=team.env(ALICE, AWS_REGION="eu-west-1"))
    assert out.returncode == 2
    assert out.stderr.startswith(
        f"jitctl: DynamoDB table {table} does not exist in eu-west-1 (account 123456789012)"
    )
    assert "set [store] region" in out.stderr and "Traceback" not in out.stderr
    team.config.write_text(team.config.read_text() + 'region = "us-east-1"\n')
    fixed = team.run(ALICE, "list", env=team.env(ALICE, AWS_REGION="eu-west-1"))
    assert fixed.returncode == 0, fixed.stderr


def test_a_missing_audit_table_names_the_region_and_account(team):
    table = f"jitctl-audit-{uuid.uuid4().hex[:8]}"
    team.config.write_text(
        team.config.read_text() + f'[audit]\ntable = "{table}"\nregion = "eu-central-1"\n'
    )
    out = team.run(ALICE, "audit", "log")
    assert out.returncode == 2, out.stderr
    assert f"dynamodb:{table}" in out.stderr
    assert "does not exist in eu-central-1 (account 123456789012)" in out.stderr
    assert "Traceback" not in out.stderr


def test_the_roles_region_crosses_the_broker_wire():
    """In broker mode the client has no policy: the region comes with the credentials."""
    from jitctl.broker.wire import issued_in, issued_out
    from jitctl.models import AccessRequest, Credentials, Issued

    now = datetime.now(UTC)
    req = AccessRequest("r-1", "prod-readonly", ALICE, "arn:x", "INC-1", 900, "issued", now, now)
    creds = Credentials("ASIA1", "secret", "token", now + timedelta(minutes=15))
    assert issued_in(issued_out(Issued(req, creds, region="eu-west-1"))).region == "eu-west-1"
    assert issued_in(issued_out(Issued(req, creds))).region is None


def test_aws_region_wins_over_the_config_files_region_as_for_the_aws_cli(team):
    """Issue 21 item 19: one region rule, AWS's order (AWS_REGION, AWS_DEFAULT_REGION, then
    the profile's `region` in the config file): a [default] region in ~/.aws/config does not
    send jitctl's own calls elsewhere when AWS_REGION says us-east-1."""
    table = f"jitctl-{uuid.uuid4().hex[:8]}"
    team.use_store(f'[store]\nbackend = "dynamodb"\ntable = "{table}"\n')
    assert team.run(ALICE, "init").returncode == 0  # in us-east-1, AWS_REGION's
    config = team.home(ALICE) / ".aws" / "config"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("[default]\nregion = eu-west-1\n")
    env = team.env(ALICE, AWS_CONFIG_FILE=str(config))
    env.pop("AWS_DEFAULT_REGION", None)
    out = team.run(ALICE, "list", env=env)
    assert out.returncode == 0, out.stderr
    del env["AWS_REGION"]  # AWS_DEFAULT_REGION comes next, still before the file
    out = team.run(ALICE, "list", env=env | {"AWS_DEFAULT_REGION": "us-east-1"})
    assert out.returncode == 0, out.stderr
    out = team.run(ALICE, "list", env=env)  # only the file's region: the table is not there
    assert out.returncode == 2 and "does not exist in eu-west-1" in out.stderr, out.stderr
