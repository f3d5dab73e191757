"""Issue 21, real clients: what jitctl hands out (a profile, `--format env`, `credential_process`,
`exec`) read by real AWS clients: the AWS CLI v2 (Debian's `awscli` at /usr/bin/aws, which
.ci/run installs; these tests skip only when it is absent), the AWS CLI v1 from the test
extras, and boto3. Each gets the role's region, and only the role's credentials."""

from __future__ import annotations

import configparser
import json
import os
import shlex
import shutil
import subprocess
import sys

import pytest

from tests.conftest import clean_env
from tests.harness import Team
from tests.test_cli_request import on_call
from tests.test_region import REGION_POLICY

ALICE = "alice@example.com"
ROLE_ARN = "arn:aws:sts::123456789012:assumed-role/prod-readonly/alice@example.com"
AWS_V2 = "/usr/bin/aws"  # Debian's AWS CLI v2; `aws` on PATH in the venv is the v1 from PyPI
needs_v2 = pytest.mark.skipif(not os.access(AWS_V2, os.X_OK), reason="no AWS CLI v2 (apt awscli)")
SHOW_ENV = "import json, os; print(json.dumps(dict(os.environ)))"


@pytest.fixture
def team_policy() -> str:
    return REGION_POLICY  # prod-readonly's region is eu-west-1


@pytest.fixture
def team(team: Team) -> Team:
    """Alice on call, and a [default] region in her AWS config that is not the role's: a
    client that falls back to it shows it."""
    on_call(team, ALICE)
    config = team.aws_config_file(ALICE)
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("[default]\nregion = ap-south-1\n")
    return team


def clients() -> list:
    v1 = shutil.which("aws", path=os.path.dirname(sys.executable))
    return [
        pytest.param(AWS_V2, id="aws-cli-v2", marks=needs_v2),
        pytest.param(v1, id="aws-cli-v1", marks=pytest.mark.skipif(v1 is None, reason="no v1")),
    ]


def consumer(team: Team, exe: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """An AWS CLI with nothing but Alice's files and ``env``: no keys, no region of its own."""
    base = clean_env(
        HOME=str(team.home(ALICE)),
        AWS_SHARED_CREDENTIALS_FILE=str(team.credentials_file(ALICE)),
        AWS_CONFIG_FILE=str(team.aws_config_file(ALICE)),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_PAGER="",
        XDG_CACHE_HOME=team.env(ALICE)["XDG_CACHE_HOME"],
        XDG_DATA_HOME=team.env(ALICE)["XDG_DATA_HOME"],
    )
    return subprocess.run(
        [exe, "--endpoint-url", team.moto, *args],
        env=base | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def who_and_where(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["Arn"]


def region_of(team: Team, exe: str, *args: str, **env: str) -> str:
    """The region the CLI would use: `aws configure list` names it and where it came from."""
    out = consumer(team, exe, "configure", "list", *args, **env)
    assert out.returncode == 0, out.stderr
    row = next(line.split() for line in out.stdout.splitlines() if line.split()[:1] == ["region"])
    return row[1]


@pytest.mark.parametrize("exe", clients())
def test_the_profile_is_read_by_the_aws_cli_with_its_region(team, exe):
    """Item 23 (profile): the jit profile jitctl writes is who the AWS CLI is, in the role's
    region rather than [default]'s."""
    assert team.run(ALICE, "request", "prod-readonly", "--reason", "INC-23").returncode == 0
    who = consumer(team, exe, "--profile", "jit-prod-readonly", "sts", "get-caller-identity")
    assert who_and_where(who) == ROLE_ARN
    assert region_of(team, exe, "--profile", "jit-prod-readonly") == "eu-west-1"


@pytest.mark.parametrize("exe", clients())
def test_env_form_carries_the_roles_region_and_clears_other_credentials(team, exe):
    """Items 21, 22, 23 (env): `eval "$(jitctl request ... --format env)"` gives a shell the
    role's credentials and region under both names, and unsets every variable that would pick
    other credentials (s3cmd's AWS_CREDENTIAL_FILE, web identity, container, AWS_PROFILE)."""
    out = team.run(ALICE, "request", "prod-readonly", "--reason", "INC-21", "--format", "env")
    assert out.returncode == 0, out.stderr
    assert "export AWS_REGION=eu-west-1;" in out.stdout
    assert "export AWS_DEFAULT_REGION=eu-west-1;" in out.stdout
    unset = next(line for line in out.stdout.splitlines() if line.startswith("unset "))
    for name in ("AWS_CREDENTIAL_FILE", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        assert name in unset.split()
    stale = {
        "AWS_CREDENTIAL_FILE": str(team.root / "s3cmd-keys"),
        "AWS_WEB_IDENTITY_TOKEN_FILE": str(team.root / "token"),
        "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/someone-else",
    }
    script = f'{out.stdout}\nexec {shlex.quote(exe)} "$@"'
    for args in (("sts", "get-caller-identity"), ("configure", "list")):
        shell = subprocess.run(
            ["sh", "-c", script, "sh", "--endpoint-url", team.moto, *args],
            env=clean_env(HOME=str(team.home(ALICE)), AWS_PAGER="", **stale),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shell.returncode == 0, shell.stderr
        if args[0] == "sts":
            assert json.loads(shell.stdout)["Arn"] == ROLE_ARN
        else:
            assert "eu-west-1" in next(ln for ln in shell.stdout.splitlines() if "region" in ln)


@pytest.mark.parametrize("exe", clients())
def test_exec_gives_the_child_the_roles_region_and_only_its_credentials(team, exe):
    """Items 21, 22, 23 (exec): the child runs in the role's region, with no variable left
    that points another client at the parent's credentials."""
    stale = {
        "AWS_CREDENTIAL_FILE": str(team.root / "s3cmd-keys"),
        "AWS_CREDENTIAL_PROFILES_FILE": str(team.root / "java-keys"),
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:9/creds",
    }
    env = team.env(ALICE, **stale)
    env.pop("AWS_DEFAULT_REGION", None)
    run = ("exec", "prod-readonly", "--reason", "INC-22", "--")
    shown = team.run(ALICE, *run, sys.executable, "-c", SHOW_ENV, env=env)
    assert shown.returncode == 0, shown.stderr
    child = json.loads(shown.stdout)
    assert (child["AWS_REGION"], child["AWS_DEFAULT_REGION"]) == ("eu-west-1", "eu-west-1")
    assert not set(stale) & set(child)
    who = team.run(
        ALICE, *run, exe, "--endpoint-url", team.moto, "sts", "get-caller-identity", env=env
    )
    assert who_and_where(who) == ROLE_ARN
    listed = team.run(ALICE, *run, exe, "configure", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "eu-west-1" in next(ln for ln in listed.stdout.splitlines() if "region" in ln)


@pytest.mark.parametrize("exe", clients())
def test_credential_process_serves_the_aws_cli(team, exe):
    """Item 23 (credential_process): the AWS CLI runs `jitctl credential-process` itself."""
    assert team.run(ALICE, "request", "prod-readonly", "--reason", "INC-23 cp").returncode == 0
    config = team.aws_config_file(ALICE)
    config.write_text(
        config.read_text()
        + f"[profile cp]\nregion = eu-west-1\ncredential_process = {team.exe} credential-process prod-readonly\n"
    )
    # jitctl, run by the CLI, needs what any jitctl run needs: its config, and Alice's own
    # credentials to ask STS who is calling (the cache is hers under that config alone)
    own = {
        k: v
        for k, v in team.env(ALICE).items()
        if k.startswith(("JITCTL_", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT"))
    }
    who = consumer(team, exe, "--profile", "cp", "sts", "get-caller-identity", **own)
    assert who_and_where(who) == ROLE_ARN


def test_a_profile_name_aws_clients_cannot_read_is_refused_before_anything_is_requested(team):
    """Item 20: `[profile my jit]` is dropped by botocore (and the JS SDK), region and all."""
    out = team.run(ALICE, "request", "prod-readonly", "--reason", "INC-20", "--profile", "my jit")
    assert out.returncode == 2, out.stderr
    assert "cannot be read back by AWS clients" in out.stderr and "'my jit'" in out.stderr
    assert json.loads(team.run(ALICE, "list", "--json").stdout) == []  # nothing requested
    assert not team.credentials_file(ALICE).exists()
    fine = "team.jit@ops"
    out = team.run(ALICE, "request", "prod-readonly", "--reason", "INC-20", "--profile", fine)
    assert out.returncode == 0, out.stderr
    ini = configparser.RawConfigParser()
    ini.read(team.aws_config_file(ALICE))
    assert ini[f"profile {fine}"]["region"] == "eu-west-1"
    who = team.consumer_arn(ALICE, fine)
    assert who == ROLE_ARN
