"""Credentials in every form the AWS ecosystem expects, each read by a real consumer process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.conftest import clean_env
from tests.harness import Team, iam_keys

ALICE = "alice@example.com"
ROLE_ARN = "arn:aws:sts::123456789012:assumed-role/prod-readonly/alice@example.com"
WHO = "import boto3; print(boto3.client('sts').get_caller_identity()['Arn'])"


@pytest.fixture
def team(team, pd_sim) -> Team:
    """The shared team, with Alice on call."""
    team.on_call(ALICE)
    return team


def consumer_env(team: Team, **extra: str) -> dict[str, str]:
    base = {
        "AWS_ENDPOINT_URL": team.moto,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_SHARED_CREDENTIALS_FILE": str(team.root / "none"),
        "AWS_CONFIG_FILE": str(team.root / "none"),
    }
    return clean_env(**(base | extra))


def test_env_format_evals_in_sh_and_writes_no_file(team):
    out = team.run(ALICE, "request", "prod-readonly", "--reason", "INC-1", "--format", "env")
    assert out.returncode == 0, out.stderr
    assert "export AWS_SESSION_TOKEN=" in out.stdout and "AWS_CREDENTIAL_EXPIRATION" in out.stdout
    assert not team.credentials_file(ALICE).exists()
    script = f'eval "$JITCTL_OUT"; exec {sys.executable} -c "{WHO}"'
    env = consumer_env(team, JITCTL_OUT=out.stdout, AWS_PROFILE="someone-else")
    who = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert who.returncode == 0, who.stderr
    assert who.stdout.strip() == ROLE_ARN


def test_credential_process_format_prints_the_aws_document(team):
    out = team.run(
        ALICE, "request", "prod-readonly", "--reason", "INC-2", "--format", "credential-process"
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["Version"] == 1 and doc["Expiration"].endswith("Z")
    assert set(doc) == {"Version", "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}
    assert not team.credentials_file(ALICE).exists()


def test_json_and_a_secret_format_do_not_mix(team):
    out = team.run(ALICE, "request", "prod-readonly", "--reason", "x", "--format", "env", "--json")
    assert out.returncode == 2 and "choose one" in out.stderr
    out = team.run(ALICE, "request", "prod-readonly", "--reason", "x", "--format", "yaml")
    assert out.returncode == 2


def test_credential_process_serves_the_cached_grant_to_an_sdk(team):
    assert team.run(ALICE, "request", "prod-readonly", "--reason", "INC-3").returncode == 0
    config = team.root / "aws-config"
    env = team.env(ALICE)
    jitctl_cmd = f"{team.exe} credential-process prod-readonly"
    config.write_text(f"[profile jit]\ncredential_process = {jitctl_cmd}\n")
    # Alice's own keys are her default profile: jitctl asks STS who she is with them (the
    # profile the SDK was told to use is the one that runs jitctl: set aside).
    base = team.root / "alice-credentials"
    keys = iam_keys(team.moto, ALICE)
    base.write_text(
        f"[default]\naws_access_key_id = {keys['AWS_ACCESS_KEY_ID']}\n"
        f"aws_secret_access_key = {keys['AWS_SECRET_ACCESS_KEY']}\n"
    )
    # The SDK runs jitctl itself: her config and cache dir point it at her grant.
    sdk_env = consumer_env(
        team,
        AWS_PROFILE="jit",
        AWS_CONFIG_FILE=str(config),
        AWS_SHARED_CREDENTIALS_FILE=str(base),
        HOME=env["HOME"],
        XDG_CACHE_HOME=env["XDG_CACHE_HOME"],
        XDG_DATA_HOME=env["XDG_DATA_HOME"],
        JITCTL_CONFIG=env["JITCTL_CONFIG"],
        JITCTL_CACHE_DIR=env["JITCTL_CACHE_DIR"],
    )
    who = subprocess.run(
        [sys.executable, "-c", WHO], env=sdk_env, capture_output=True, text=True, timeout=60
    )
    assert who.returncode == 0, who.stderr
    assert who.stdout.strip() == ROLE_ARN


def test_credential_process_without_a_fresh_grant_fails_fast_and_offline(team):
    before = len(team.pd.requests())
    start = time.monotonic()
    out = team.run(ALICE, "credential-process", "prod-readonly")
    assert out.returncode == 4
    assert (
        "jitctl request prod-readonly" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    )
    assert time.monotonic() - start < 10
    assert len(team.pd.requests()) == before  # PagerDuty was never asked


def test_exec_runs_the_command_with_only_the_grant(team):
    child = textwrap.dedent("""
        import os, sys, boto3
        assert "AWS_PROFILE" not in os.environ, "inherited profile leaked"
        assert os.environ["AWS_DEFAULT_REGION"] == "us-east-1"
        print(boto3.client("sts").get_caller_identity()["Arn"])
        sys.exit(7)
    """)
    # jitctl itself runs as alice through a named profile; the child must not inherit it.
    env = team.env(ALICE, AWS_PROFILE="base", AWS_DEFAULT_REGION="us-east-1")
    base = team.root / "base-credentials"
    keys = (env.pop("AWS_ACCESS_KEY_ID"), env.pop("AWS_SECRET_ACCESS_KEY"))
    base.write_text(f"[base]\naws_access_key_id = {keys[0]}\naws_secret_access_key = {keys[1]}\n")
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(base)
    out = team.run(
        ALICE,
        "exec",
        "prod-readonly",
        "--reason",
        "INC-4",
        "--",
        sys.executable,
        "-c",
        child,
        env=env,
    )
    assert out.returncode == 7, out.stderr
    assert out.stdout.strip() == ROLE_ARN
    assert (
        base.read_text()
        == f"[base]\naws_access_key_id = {keys[0]}\naws_secret_access_key = {keys[1]}\n"
    )
    assert not team.credentials_file(ALICE).exists()


def test_sigterm_to_jitctl_reaches_the_child(team, tmp_path):
    marker = tmp_path / "got-sigterm"
    child = textwrap.dedent(f"""
        import signal, sys, time, pathlib
        def bye(*_):
            pathlib.Path({str(marker)!r}).write_text("yes")
            sys.exit(0)
        signal.signal(signal.SIGTERM, bye)
        print("ready", flush=True)
        time.sleep(60)
    """)
    proc = team.popen(
        ALICE, "exec", "prod-readonly", "--reason", "INC-5", "--", sys.executable, "-c", child
    )
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert marker.read_text() == "yes"
    assert proc.returncode == 0


def test_exec_without_a_command_is_a_usage_error(team):
    out = team.run(ALICE, "exec", "prod-readonly", "--reason", "x")
    assert out.returncode == 2 and "no command to run" in out.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["--quiet", "request", "prod-readonly", "--reason", "INC-6"],
        ["request", "prod-readonly", "--reason", "INC-6", "--quiet"],
        ["request", "-q", "prod-readonly", "--reason", "INC-6"],
    ],
    ids=["before", "after", "short-between"],
)
def test_quiet_silences_human_messages_before_or_after_the_command(team, argv):
    loud = team.run(ALICE, "request", "prod-readonly", "--reason", "INC-6")
    assert loud.returncode == 0 and "fast-tracked" in loud.stderr  # what --quiet must silence
    out = team.run(ALICE, *argv)
    assert out.returncode == 0 and out.stderr == "" and out.stdout == ""
    assert os.path.exists(team.credentials_file(ALICE))


def test_debug_after_the_command_shows_the_traceback(team):
    plain = team.run(ALICE, "request", "prod-nosuch", "--reason", "x")
    debug = team.run(ALICE, "request", "prod-nosuch", "--reason", "x", "--debug")
    assert plain.returncode == debug.returncode == 2
    assert "Traceback" not in plain.stderr and "Traceback" in debug.stderr


def test_global_options_after_exec_s_double_dash_belong_to_its_command(team):
    show = "import sys; print(sys.argv[1:])"
    argv = ["exec", "prod-readonly", "--reason", "x", "--", sys.executable, "-c", show]
    out = team.run(ALICE, *argv, "--quiet", "--debug")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['--quiet', '--debug']"
    assert "fast-tracked" in out.stderr  # jitctl itself was not made quiet
    failing = team.run(
        ALICE, "exec", "prod-nosuch", "--reason", "x", "--", sys.executable, "--debug"
    )
    assert failing.returncode == 2 and "Traceback" not in failing.stderr


def test_credential_process_for_an_unknown_role_names_the_closest_one(team):
    out = team.run(ALICE, "credential-process", "prod-readonyl")
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == (
        "jitctl: unknown role 'prod-readonyl'; did you mean 'prod-readonly'?"
    )


def test_exec_with_an_unknown_role_names_the_closest_one(team):
    out = team.run(ALICE, "exec", "prod-readonyl", "--reason", "x", "--", sys.executable, "-V")
    assert out.returncode == 2 and "did you mean 'prod-readonly'?" in out.stderr
    assert not team.audit_log(ALICE).exists()


def test_exec_of_a_command_not_on_path_requests_nothing(team):
    out = team.run(ALICE, "exec", "prod-readonly", "--reason", "x", "--", "no-such-tool-xyz", "ls")
    assert out.returncode == 2, out.stderr
    assert (
        "command not found: no-such-tool-xyz" in out.stderr
        and "nothing was requested" in out.stderr
    )
    assert not team.audit_log(ALICE).exists()  # no request, no grant
    assert json.loads(team.run(ALICE, "list", "--json").stdout) == []
