"""`jitctl request` end to end: the installed CLI against moto's server and the PagerDuty simulator."""

from __future__ import annotations

import configparser
import json
from datetime import UTC, datetime, timedelta

import pytest

from jitctl.timeutil import parse_rfc3339
from tests.harness import Team

ALICE = "alice@example.com"


def on_call(team: Team, email: str, level: int = 1, ep: str = "PEP1234", hours: float = 6) -> None:
    team.on_call(email, hours, policy=ep, level=level)


def test_on_call_gets_working_scoped_credentials(team):
    on_call(team, ALICE)
    out = team.run(ALICE, "request", "prod-readonly", "--reason", "INC-123 db latency")
    assert out.returncode == 0, out.stderr
    assert "fast-tracked: on call, PEP1234 level 1" in out.stderr
    assert out.stdout == ""  # human text goes to stderr

    # A separate AWS client using only the profile jitctl wrote is the assumed-role session.
    arn = team.consumer_arn(ALICE, "jit-prod-readonly")
    assert arn == "arn:aws:sts::123456789012:assumed-role/prod-readonly/alice@example.com"
    ini = configparser.ConfigParser()
    ini.read(team.credentials_file(ALICE))
    creds = ini["jit-prod-readonly"]
    expires = parse_rfc3339(creds["x_security_token_expires"])
    assert timedelta(minutes=55) < expires - datetime.now(UTC) <= timedelta(hours=1)

    events = [r["event"] for r in team.audit_records(ALICE)]
    assert events == ["requested", "auto_approved", "issued"]
    assert team.run(ALICE, "audit", "verify").returncode == 0


def test_no_wait_prints_the_id_on_the_fast_path_too(team):
    """Scripts keep `id=$(jitctl request ... --no-wait)` to revoke later: whoever is on call
    must get the id as well (the contract: issued at once or pending)."""
    on_call(team, ALICE)
    out = team.run(ALICE, "request", "prod-readonly", "--reason", "INC-7", "--no-wait")
    assert out.returncode == 0, out.stderr
    ini = configparser.ConfigParser()
    ini.read(team.credentials_file(ALICE))
    assert out.stdout == ini["jit-prod-readonly"]["x_jitctl_request_id"] + "\n"


def test_json_output_has_the_contract_fields_and_no_secrets(team):
    on_call(team, ALICE)
    out = team.run(
        ALICE,
        "request",
        "prod-readonly",
        "--reason",
        "INC-9",
        "--duration",
        "30m",
        "--json",
        "--profile",
        "oncall",
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    for field in (
        "request_id",
        "role",
        "requester",
        "status",
        "reason",
        "created_at",
        "expires_at",
        "approval",
        "approvers",
    ):
        assert field in doc
    assert (doc["role"], doc["requester"], doc["status"], doc["approval"]) == (
        "prod-readonly",
        ALICE,
        "issued",
        "on_call",
    )
    assert doc["profile"] == "oncall" and doc["on_call"]["escalation_policy_id"] == "PEP1234"
    assert doc["created_at"].endswith("Z") and doc["expires_at"].endswith("Z")
    ini = configparser.ConfigParser()
    ini.read(team.credentials_file(ALICE))
    secret = ini["oncall"]["aws_secret_access_key"]
    token = ini["oncall"]["aws_session_token"]
    assert secret not in out.stdout + out.stderr and token not in out.stdout + out.stderr
    audit_text = team.audit_log(ALICE).read_text()
    assert secret not in audit_text and token not in audit_text
    remaining = parse_rfc3339(doc["credentials_expire_at"]) - datetime.now(UTC)
    assert timedelta(minutes=25) < remaining <= timedelta(minutes=30)


def test_shift_ending_soon_bounds_the_session(team):
    on_call(team, ALICE, hours=0.5)  # 30 minutes left; asking for 2h
    out = team.run(
        ALICE, "request", "prod-readonly", "--reason", "INC-1", "--duration", "2h", "--json"
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    remaining = parse_rfc3339(doc["credentials_expire_at"]) - datetime.now(UTC)
    assert timedelta(minutes=25) < remaining <= timedelta(minutes=30)
    assert any("on-call shift" in note for note in doc["notes"])


@pytest.mark.parametrize(
    ("setup", "why"),
    [
        (lambda t: on_call(t, ALICE, level=2), "level"),
        (lambda t: on_call(t, ALICE, ep="POTHER"), "not on call"),
        (lambda t: t.pd_user(ALICE), "not on call"),
    ],
    ids=["level-above-max", "other-policy", "not-on-call"],
)
def test_not_on_call_needs_approval(team, setup, why):
    setup(team)
    out = team.run(ALICE, "request", "prod-readonly", "--reason", "INC-2", "--no-wait")
    assert out.returncode == 0, out.stderr  # recorded as pending, waiting for a peer
    assert "approval" in out.stderr.lower()
    assert not team.credentials_file(ALICE).exists()


def test_pagerduty_down_fails_closed(team):
    on_call(team, ALICE)
    team.pd.fail_next(500, count=50)
    out = team.run(ALICE, "request", "prod-readonly", "--reason", "INC-3", "--no-wait", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["status"] == "pending" and "PagerDuty" in doc["fast_path"]
    assert not team.credentials_file(ALICE).exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["request", "prod-readonly"], "reason is required"),
        (["request", "prod-readonly", "--reason", "  "], "reason is required"),
        (["request", "prod-readonly", "--reason", "x" * 1001], "limit is 1000"),
        (["request", "prod-readonly", "--reason", "x", "--duration", "3h"], "at most 2h"),
        (["request", "prod-readonly", "--reason", "x", "--duration", "soon"], "invalid duration"),
        (["request", "prod-redonly", "--reason", "x"], "did you mean 'prod-readonly'"),
    ],
)
def test_bad_input_is_exit_2_with_one_line(team, args, fragment):
    out = team.run(ALICE, *args)
    assert out.returncode == 2, out.stderr
    assert fragment in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_unmapped_caller_is_refused_with_how_to_map(team):
    out = team.run("ci-runner", "request", "prod-readonly", "--reason", "deploy")
    assert out.returncode == 2
    assert "arn:aws:iam::123456789012:user/ci-runner" in out.stderr and "[identities]" in out.stderr


def test_broken_policy_is_exit_2_naming_the_key(team):
    (team.policy_dir / "extra.toml").write_text(
        'version = 1\n[roles.x]\narn = "arn:aws:iam::123456789012:role/x"\nmax_duraton = "1h"\n'
    )
    out = team.run(ALICE, "request", "prod-readonly", "--reason", "x")
    assert out.returncode == 2
    assert "extra.toml" in out.stderr and "max_duration" in out.stderr


def test_edited_audit_record_fails_verification(team):
    on_call(team, ALICE)
    assert team.run(ALICE, "request", "prod-readonly", "--reason", "INC-4").returncode == 0
    log = team.audit_log(ALICE)
    lines = log.read_text().splitlines()
    record = json.loads(lines[0])
    record["reason"] = "nothing to see"
    lines[0] = json.dumps(record)
    log.write_text("\n".join(lines) + "\n")
    out = team.run(ALICE, "audit", "verify")
    assert out.returncode == 6
    assert ":1:" in out.stderr


def test_the_first_hint_after_a_grant_gives_the_role_where_it_is_printed(team):
    """Run verbatim by the AWS CLI (from PyPI) in the environment jitctl ran in, which holds
    the base user's keys in AWS_ACCESS_KEY_ID, as `jitctl demo --serve` exports them."""
    import re
    import shutil
    import subprocess

    aws = shutil.which("aws")
    if aws is None:
        pytest.skip("the AWS CLI is not installed (pip install awscli)")
    on_call(team, ALICE)
    env = team.env(ALICE, AWS_DEFAULT_REGION="us-east-1")  # the AWS CLI v1 reads only this one
    assert env["AWS_ACCESS_KEY_ID"]
    out = team.run(ALICE, "request", "prod-readonly", "--reason", "INC-7", env=env)
    assert out.returncode == 0, out.stderr
    hint = re.search(r"try: (.+)$", out.stderr, re.MULTILINE)
    assert hint is not None, out.stderr
    assert "AWS_ACCESS_KEY_ID is set here" in out.stderr  # and says why AWS_PROFILE would not do
    ran = subprocess.run(
        ["sh", "-c", hint.group(1)], env=env, capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    arn = json.loads(ran.stdout)["Arn"]
    assert arn == "arn:aws:sts::123456789012:assumed-role/prod-readonly/alice@example.com"


def test_without_a_pagerduty_token_the_request_waits_for_a_peer(team):
    """The fast track fails closed (the reason shown); peer approval still works."""
    on_call(team, ALICE)  # with a token she would be fast-tracked
    env = team.env(ALICE, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    del env["JITCTL_PAGERDUTY_TOKEN"]
    out = team.run(ALICE, "request", "prod-readonly", "--reason", "INC-8", "--no-wait", env=env)
    assert out.returncode == 0, out.stderr
    request_id = out.stdout.strip()
    assert "approval needed for prod-readonly: no PagerDuty token" in out.stderr
    assert "JITCTL_PAGERDUTY_TOKEN" in out.stderr
    status = json.loads(team.run(ALICE, "status", request_id, "--json", env=env).stdout)
    assert status["status"] == "pending"
    assert team.run("bob@example.com", "approve", request_id).returncode == 0
    done = team.run(ALICE, "wait", request_id, env=env)
    assert done.returncode == 0, done.stderr
    assert team.consumer_arn(ALICE, "jit-prod-readonly").endswith("prod-readonly/alice@example.com")
