"""Credentials for shells, child processes and credential_process, checked by real consumers:
sh/bash `eval`, and separate boto3 processes talking to moto's server."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest

from jitctl.credentials.formats import (
    CONFLICTING_VARS,
    CREDENTIAL_VARS,
    SHELLS,
    child_environment,
    credential_process_json,
    env_lines,
    fish_quote,
    powershell_quote,
)
from jitctl.models import Credentials
from jitctl.timeutil import parse_rfc3339
from tests.conftest import clean_env

ROLE_ARN = "arn:aws:iam::123456789012:role/jit-formats"
SESSION = "alice@example.com"
ASSUMED_ARN = f"arn:aws:sts::123456789012:assumed-role/jit-formats/{SESSION}"
EXPIRES = datetime(2026, 11, 21, 4, 0, 0, tzinfo=UTC)
NASTY = "a b'c\"d$HOME`x`\\e;f*g\th"  # everything a shell would like to interpret

# Prints the caller's ARN as seen by STS, using whatever credentials boto3 finds.
WHOAMI = "import boto3; print(boto3.client('sts').get_caller_identity()['Arn'])"
# Prints the AWS_* variables a process sees, as JSON.
SHOW_ENV = (
    "import json, os; print(json.dumps({k: v for k, v in os.environ.items() "
    "if k.startswith('AWS_')}))"
)


def assumed(aws_env: dict[str, str]) -> Credentials:
    """Real temporary credentials from moto's STS (the admin keys in aws_env call it)."""
    sts = boto3.client("sts")
    out = sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName=SESSION, DurationSeconds=3600)
    c = out["Credentials"]
    return Credentials(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"], c["Expiration"])


def stale_env(aws_env: dict[str, str], tmp_path: Path, **extra: str) -> dict[str, str]:
    """A subprocess environment that would use someone else's credentials if left alone."""
    return clean_env(
        AWS_ENDPOINT_URL=aws_env["AWS_ENDPOINT_URL"],
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",  # botocore itself reads only this one
        AWS_CONFIG_FILE=str(tmp_path / "no-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
        AWS_PROFILE="someone-else",  # does not exist: botocore would refuse to start
        AWS_DEFAULT_PROFILE="someone-else",
        AWS_ACCESS_KEY_ID="AKIASTALESTALESTALE1",
        AWS_SECRET_ACCESS_KEY="stale",
        AWS_SESSION_TOKEN="stale-token",
        AWS_SECURITY_TOKEN="stale-token",
        AWS_SECRET_KEY="stale",
        AWS_CREDENTIAL_EXPIRATION="2001-01-01T00:00:00Z",
        **extra,
    )


# --- sh / bash / zsh ---------------------------------------------------------------------


@pytest.mark.parametrize("form", ['eval "$(cat "$1")"', 'eval $(cat "$1")'])
def test_eval_in_sh_gives_boto3_the_assumed_role(aws_env, tmp_path, form):
    creds = assumed(aws_env)
    script = tmp_path / "env.sh"
    script.write_text(env_lines(creds))
    env = stale_env(aws_env, tmp_path)
    out = subprocess.run(
        ["sh", "-c", f'{form} && exec "$2" -c "$3"', "sh", str(script), sys.executable, WHOAMI],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ASSUMED_ARN


@pytest.mark.parametrize("shell", ["sh", "bash", "zsh"])
def test_sh_quoting_survives_eval_byte_for_byte(tmp_path, shell):
    exe = shutil.which(shell)
    if exe is None:
        pytest.skip(f"{shell} is not installed")
    creds = Credentials("ASIAKEY", NASTY, "tok'en\nline2", EXPIRES)
    script = tmp_path / "env.sh"
    script.write_text(env_lines(creds, shell))
    out = subprocess.run(
        [exe, "-c", 'eval "$(cat "$1")" && exec "$2" -c "$3"', shell, str(script)]
        + [sys.executable, SHOW_ENV],
        capture_output=True,
        text=True,
        env=clean_env(AWS_PROFILE="old", AWS_ROLE_ARN="arn:old", AWS_REGION="eu-west-1"),
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert seen == {
        "AWS_ACCESS_KEY_ID": "ASIAKEY",
        "AWS_SECRET_ACCESS_KEY": NASTY,
        "AWS_SESSION_TOKEN": "tok'en\nline2",
        "AWS_CREDENTIAL_EXPIRATION": "2026-11-21T04:00:00Z",
        "AWS_REGION": "eu-west-1",  # settings stay; the old profile and role are gone
    }


def test_sh_output_shape():
    text = env_lines(Credentials("ASIAKEY", "s", "t", EXPIRES))
    lines = text.splitlines()
    assert lines[0].startswith("unset AWS_PROFILE ") and lines[0].endswith(";")
    assert lines[1:] == [
        "export AWS_ACCESS_KEY_ID=ASIAKEY;",
        "export AWS_SECRET_ACCESS_KEY=s;",
        "export AWS_SESSION_TOKEN=t;",
        "export AWS_CREDENTIAL_EXPIRATION=2026-11-21T04:00:00Z;",
    ]
    assert set(lines[0][len("unset ") : -1].split()) == set(CONFLICTING_VARS)


def test_no_expiration_unsets_a_stale_one():
    text = env_lines(Credentials("ASIAKEY", "s", "t", None))  # type: ignore[arg-type]
    assert "AWS_CREDENTIAL_EXPIRATION" in text.splitlines()[0]
    assert "export AWS_CREDENTIAL_EXPIRATION" not in text


# --- fish / PowerShell (string level; run for real when installed) ---------------------------


def test_fish_quoting():
    assert fish_quote("plain") == "'plain'"
    assert fish_quote("it's a \\ b $x") == "'it\\'s a \\\\ b $x'"
    text = env_lines(Credentials("ASIAKEY", "a b'c", "t", EXPIRES), "fish")
    assert "set -gx AWS_SECRET_ACCESS_KEY 'a b\\'c';" in text.splitlines()
    assert "set -e -g AWS_PROFILE;" in text.splitlines()
    assert "set -gx AWS_CREDENTIAL_EXPIRATION '2026-11-21T04:00:00Z';" in text.splitlines()


def test_powershell_quoting():
    assert powershell_quote("it's") == "'it''s'"
    assert powershell_quote("a\u2019b $x `y") == "'a\u2019\u2019b $x `y'"
    text = env_lines(Credentials("ASIAKEY", "a b'c", "t", EXPIRES), "powershell")
    lines = text.splitlines()
    assert lines[0].startswith("Remove-Item -ErrorAction SilentlyContinue -Path Env:AWS_PROFILE, ")
    assert "$Env:AWS_SECRET_ACCESS_KEY = 'a b''c';" in lines
    assert env_lines(Credentials("K", "s", "t", EXPIRES), "pwsh") == env_lines(
        Credentials("K", "s", "t", EXPIRES), "powershell"
    )


# PowerShell is not in the package registries this project can reach, so its output is checked
# as text (test_powershell_quoting); fish is installed by .ci/run and runs the output for real.
@pytest.mark.parametrize("shell", ["fish"])
def test_fish_output_for_real_when_installed(tmp_path, shell):
    exe = shutil.which(shell)
    if exe is None:
        pytest.skip(f"{shell} is not installed")
    creds = Credentials("ASIAKEY", NASTY, "tok'en", EXPIRES)
    script = tmp_path / "env.txt"
    script.write_text(env_lines(creds, shell))
    cmd = [exe, "--no-config", "-c", f"source {script}; {sys.executable} -c {SHOW_ENV!r}"]
    out = subprocess.run(
        cmd, capture_output=True, text=True, env=clean_env(AWS_PROFILE="old"), timeout=60
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert seen["AWS_SECRET_ACCESS_KEY"] == NASTY and "AWS_PROFILE" not in seen


def test_unknown_shell_names_the_valid_ones():
    with pytest.raises(ValueError) as err:
        env_lines(Credentials("K", "s", "t", EXPIRES), "tcsh")
    for shell in SHELLS:
        assert shell in str(err.value)


def test_nul_in_a_value_is_refused_without_echoing_it():
    with pytest.raises(ValueError) as err:
        env_lines(Credentials("K", "sec\0ret", "t", EXPIRES))
    assert "AWS_SECRET_ACCESS_KEY" in str(err.value) and "sec" not in str(err.value)


# --- credential_process ----------------------------------------------------------------------


def test_credential_process_document():
    doc = json.loads(credential_process_json(Credentials("ASIAKEY", "s", "t", EXPIRES)))
    assert doc == {
        "Version": 1,
        "AccessKeyId": "ASIAKEY",
        "SecretAccessKey": "s",
        "SessionToken": "t",
        "Expiration": "2026-11-21T04:00:00Z",
    }
    assert parse_rfc3339(doc["Expiration"]) == EXPIRES


def test_boto3_profile_with_credential_process_uses_the_document(aws_env, tmp_path):
    creds = assumed(aws_env)
    (tmp_path / "doc.json").write_text(credential_process_json(creds))
    printer = tmp_path / "print doc.py"  # a space in the path: the config line must quote it
    printer.write_text(f"print(open({str(tmp_path / 'doc.json')!r}).read())\n")
    config = tmp_path / "config"
    command = shlex.join([sys.executable, str(printer)])
    config.write_text(f"[profile x]\ncredential_process = {command}\nregion = us-east-1\n")
    env = clean_env(
        AWS_ENDPOINT_URL=aws_env["AWS_ENDPOINT_URL"],
        AWS_CONFIG_FILE=str(config),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
        AWS_PROFILE="x",
    )
    out = subprocess.run(
        [sys.executable, "-c", WHOAMI], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ASSUMED_ARN


# --- child_environment -----------------------------------------------------------------------


def test_child_environment_drops_other_credentials_and_keeps_settings():
    base = {
        "PATH": "/usr/bin",
        "HOME": "/home/alice",
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL": "http://localhost:5000",
        "AWS_ENDPOINT_URL_S3": "http://localhost:5001",
        "AWS_CA_BUNDLE": "/etc/ca.pem",
        "AWS_CONFIG_FILE": "/home/alice/.aws/config",
        **{name: "inherited" for name in CONFLICTING_VARS + CREDENTIAL_VARS},
    }
    before = dict(base)
    env = child_environment(base, Credentials("ASIAKEY", "s", "t", EXPIRES))
    assert base == before  # a copy: the caller's mapping is untouched
    assert env == {
        "PATH": "/usr/bin",
        "HOME": "/home/alice",
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL": "http://localhost:5000",
        "AWS_ENDPOINT_URL_S3": "http://localhost:5001",
        "AWS_CA_BUNDLE": "/etc/ca.pem",
        "AWS_CONFIG_FILE": "/home/alice/.aws/config",
        "AWS_ACCESS_KEY_ID": "ASIAKEY",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_SESSION_TOKEN": "t",
        "AWS_CREDENTIAL_EXPIRATION": "2026-11-21T04:00:00Z",
    }


def test_child_environment_strips_every_jitctl_variable():
    base = {
        "PATH": "/usr/bin",
        "JITCTL_PAGERDUTY_TOKEN": "pd-secret-token",
        "JITCTL_CONFIG": "/etc/jitctl.toml",
        "JITCTL_AUDIT_LOG": "/var/log/jitctl.jsonl",
        "JITCTL_SOMETHING_NEW": "x",
        "Jitctl_Mixed_Case": "y",
        "MY_JITCTL_NOTE": "kept: not jitctl's prefix",
    }
    env = child_environment(base, Credentials("ASIAKEY", "s", "t", EXPIRES))
    assert not [name for name in env if name.upper().startswith("JITCTL_")]
    assert "pd-secret-token" not in env.values()
    assert env["MY_JITCTL_NOTE"] == "kept: not jitctl's prefix" and env["PATH"] == "/usr/bin"


def test_child_environment_works_for_boto3_despite_stale_sources(aws_env, tmp_path):
    creds = assumed(aws_env)
    base = stale_env(
        aws_env,
        tmp_path,
        AWS_WEB_IDENTITY_TOKEN_FILE=str(tmp_path / "missing-token"),
        AWS_ROLE_ARN="arn:aws:iam::123456789012:role/other",
        AWS_CONTAINER_CREDENTIALS_FULL_URI="http://127.0.0.1:9/creds",
    )
    out = subprocess.run(
        [sys.executable, "-c", WHOAMI],
        capture_output=True,
        text=True,
        env=child_environment(base, creds),
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ASSUMED_ARN
