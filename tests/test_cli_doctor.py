"""`jitctl doctor`, `whoami`, `roles` end to end."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

ALICE = "alice@example.com"


def checks(out) -> dict[str, dict]:
    return {c["name"]: c for c in json.loads(out.stdout)["checks"]}


def test_doctor_all_good_and_fast_track_status(team):
    end = datetime.now(UTC) + timedelta(hours=3)
    team.pd.add_oncall(team.pd_user(ALICE), "PEP1234", 1, start=None, end=end)
    out = team.run(ALICE, "doctor", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    c = checks(out)
    assert c["person"]["detail"] == ALICE
    assert c["pagerduty token"]["detail"] == "from $JITCTL_PAGERDUTY_TOKEN"
    assert c["keyring"]["status"] == "skip"  # the token comes from the environment
    assert (
        c["fast track: prod-readonly"]["status"] == "pass"
        and "PEP1234" in c["fast track: prod-readonly"]["detail"]
    )
    assert c["fast track: prod-admin"]["status"] == "skip"
    assert c["audit log"]["status"] == "pass"
    human = team.run(ALICE, "doctor")
    assert human.returncode == 0 and "✓" in human.stdout


def test_doctor_names_the_first_failure_and_the_fix(team):
    team.pd_user(ALICE)
    out = team.run("ci-runner", "doctor", "--json")  # an IAM user no rule maps to a person
    assert out.returncode == 2
    c = checks(out)
    assert c["aws caller"]["status"] == "pass"
    assert c["person"]["status"] == "fail" and "[identities]" in c["person"]["fix"]
    assert c["pagerduty user"]["status"] == "skip"


def test_doctor_reports_a_tampered_audit_log(team):
    team.pd_user(ALICE)
    log = team.audit_log(ALICE)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text('{"not": "a record"}\n')
    out = team.run(ALICE, "doctor", "--json")
    assert out.returncode == 6
    assert checks(out)["audit log"]["status"] == "fail"


def test_doctor_pagerduty_down(team):
    team.pd_user(ALICE)
    team.pd.fail_next(500, count=100)
    out = team.run(ALICE, "doctor", "--json")
    assert out.returncode == 5
    assert checks(out)["pagerduty user"]["status"] == "fail"


def test_whoami_lists_current_on_calls(team):
    now = datetime.now(UTC)
    uid = team.pd_user(ALICE)
    team.pd.add_oncall(
        uid, "PEP1234", 2, start=now - timedelta(hours=1), end=now + timedelta(hours=2)
    )
    team.pd.add_oncall(uid, "POTHER", 1, start=now + timedelta(days=1), end=now + timedelta(days=2))
    out = team.run(ALICE, "whoami", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["principal"] == "arn:aws:iam::123456789012:user/alice@example.com"
    assert doc["person"] == ALICE and doc["pagerduty_user"]["id"] == uid
    assert [(o["escalation_policy"]["id"], o["level"]) for o in doc["on_calls"]] == [("PEP1234", 2)]


def test_roles_shows_what_would_fast_track(team):
    team.on_call(ALICE, 2)
    out = team.run(ALICE, "roles", "--json")
    assert out.returncode == 0, out.stderr
    rows = {r["role"]: r for r in json.loads(out.stdout)}
    assert rows["prod-readonly"]["fast_track"] is True and rows["prod-readonly"]["fast_track_until"]
    assert rows["prod-admin"]["fast_track"] is False and rows["prod-admin"]["min_approvals"] == 2
    human = team.run(ALICE, "roles")
    assert "fast track until" in human.stdout


TWO_FAST_TRACKS = """
version = 1

[roles.prod-readonly]
arn = "arn:aws:iam::123456789012:role/prod-readonly"

[roles.prod-readonly.on_call]
escalation_policies = ["PEP1234"]

[roles.prod-logs]
arn = "arn:aws:iam::123456789012:role/prod-logs"

[roles.prod-logs.on_call]
schedules = ["PSCHED1"]

[roles.prod-metrics]
arn = "arn:aws:iam::123456789012:role/prod-metrics"

[roles.prod-metrics.on_call]
escalation_policies = ["PEP1234"]
max_escalation_level = 1
"""


def test_one_command_looks_the_user_up_once(tmp_path, moto_server, pd_sim):
    """doctor and roles ask PagerDuty about every fast-track role: one session per command
    means one /users lookup and one /oncalls read, not one per role."""
    from tests.harness import Team

    team = Team(tmp_path, moto_server, pd_sim, policy=TWO_FAST_TRACKS)
    end = datetime.now(UTC) + timedelta(hours=3)
    team.pd.add_oncall(team.pd_user(ALICE), "PEP1234", 1, start=None, end=end)
    for command in (["roles", "--json"], ["doctor", "--json"], ["whoami", "--json"]):
        before_users, before_oncalls = (
            len(pd_sim.requests("/users")),
            len(pd_sim.requests("/oncalls")),
        )
        out = team.run(ALICE, *command)
        assert out.returncode == 0, out.stdout + out.stderr
        assert len(pd_sim.requests("/users")) - before_users == 1, command
        assert len(pd_sim.requests("/oncalls")) - before_oncalls == 1, command
    rows = {r["role"]: r for r in json.loads(team.run(ALICE, "roles", "--json").stdout)}
    assert rows["prod-readonly"]["fast_track"] and rows["prod-metrics"]["fast_track"]
    assert not rows["prod-logs"]["fast_track"]


def test_doctor_never_passes_a_keyring_that_just_failed_the_token_lookup(team):
    env = team.env(ALICE, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    del env["JITCTL_PAGERDUTY_TOKEN"]
    out = team.run(ALICE, "doctor", "--json", env=env)
    assert out.returncode == 2, out.stderr
    c = checks(out)
    assert c["pagerduty token"]["status"] == "fail"
    assert (
        c["keyring"]["status"] == "fail" and "no usable keyring backend" in c["keyring"]["detail"]
    )
    assert "JITCTL_PAGERDUTY_TOKEN" in c["keyring"]["fix"]


def test_doctor_without_a_config_file_warns_and_counts_in_good_grammar(team):
    env = team.env(ALICE, JITCTL_POLICY=str(team.policy_dir))
    del env["JITCTL_CONFIG"]  # the default path under XDG_CONFIG_HOME does not exist
    out = team.run(ALICE, "doctor", "--json", env=env)
    c = checks(out)
    assert c["config"]["status"] == "warn" and "no config file" in c["config"]["detail"]
    assert "not set" not in c["config"]["detail"] and "JITCTL_CONFIG" in c["config"]["fix"]
    assert c["policy"]["status"] == "pass"  # a warning does not hold back what needs it
    assert c["policy"]["detail"] == f"2 roles from 1 file ({team.policy_dir})"
    assert "! config" in team.run(ALICE, "doctor", env=env).stdout


def test_roles_and_whoami_say_pagerduty_rejected_the_token_not_not_on_call(team):
    team.pd_user(ALICE)
    env = team.env(ALICE, JITCTL_PAGERDUTY_TOKEN="not-the-token")
    roles = team.run(ALICE, "roles", env=env)
    assert roles.returncode == 0, roles.stderr
    assert "not on call" not in roles.stdout + roles.stderr
    assert "PagerDuty cannot tell" in roles.stdout
    assert "pagerduty: PagerDuty rejected the token (401)" in roles.stderr
    doc = {r["role"]: r for r in json.loads(team.run(ALICE, "roles", "--json", env=env).stdout)}
    assert "(401)" in doc["prod-readonly"]["pagerduty_error"]
    assert doc["prod-admin"]["pagerduty_error"] is None  # no fast track: nothing to tell
    who = team.run(ALICE, "whoami", env=env)
    assert who.returncode == 0 and "PagerDuty rejected the token (401)" in who.stdout


def test_roles_and_whoami_without_a_token_report_it_and_exit_0(team):
    env = team.env(ALICE, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    del env["JITCTL_PAGERDUTY_TOKEN"]
    who = team.run(ALICE, "whoami", env=env)
    assert who.returncode == 0, who.stderr
    assert "pagerduty  no PagerDuty token" in who.stdout
    roles = team.run(ALICE, "roles", env=env)
    assert roles.returncode == 0, roles.stderr
    assert "PagerDuty cannot tell" in roles.stdout and "no PagerDuty token" in roles.stderr
