"""`jitctl doctor` on a Slack-deciding broker: auth.test against the Slack simulator, and the
signing secret's presence."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator

import pytest

from jitctl.context import Environment
from jitctl.doctor.report import FAIL, PASS, Doctor
from jitctl.doctor.slack import slack_checks
from tests import slacksim
from tests.slacksim import SlackSim

POLICY = """
version = 1
[roles.ops]
arn = "arn:aws:iam::123456789012:role/ops"
[roles.ops.approval]
approvers = ["bob@example.com"]
approve_from = {channels}
"""


@pytest.fixture
def slack(pd_certs) -> Iterator[SlackSim]:
    with SlackSim(pd_certs) as sim:
        yield sim


def doctor(tmp_path, slack, pd_certs, channels='["slack"]', **environ: str) -> dict[str, tuple]:
    (tmp_path / "p.toml").write_text(textwrap.dedent(POLICY.format(channels=channels)))
    (tmp_path / "config.toml").write_text(
        f'policy = "p.toml"\n[slack]\napi_url = "{slack.api_url}"\nca_bundle = "{pd_certs.ca}"\n'
    )
    env = Environment(environ={"JITCTL_CONFIG": str(tmp_path / "config.toml"), **environ})
    d = Doctor(env)
    for name, check in slack_checks(env):
        d.run(name, check)
    return {c.name: (c.status, c.detail) for c in d.checks}


def test_a_working_token_and_a_present_secret_pass(tmp_path, slack, pd_certs):
    checks = doctor(
        tmp_path,
        slack,
        pd_certs,
        JITCTL_SLACK_BOT_TOKEN=slacksim.TOKEN,
        JITCTL_SLACK_SIGNING_SECRET="s",
    )
    assert checks["slack bot token"][0] == PASS and "U0JITCTL" in checks["slack bot token"][1]
    assert checks["slack signing secret"][0] == PASS
    assert [c.method for c in slack.calls] == ["auth.test"]


def test_a_wrong_token_and_a_missing_secret_fail(tmp_path, slack, pd_certs):
    checks = doctor(tmp_path, slack, pd_certs, JITCTL_SLACK_BOT_TOKEN="xoxb-wrong")
    assert checks["slack bot token"] == (FAIL, "Slack auth.test failed: invalid_auth")
    assert checks["slack signing secret"][0] == FAIL


def test_nothing_is_checked_where_nothing_uses_slack(tmp_path, slack, pd_certs):
    (tmp_path / "p.toml").write_text(textwrap.dedent(POLICY.format(channels='["cli"]')))
    (tmp_path / "config.toml").write_text('policy = "p.toml"\n')
    env = Environment(environ={"JITCTL_CONFIG": str(tmp_path / "config.toml")})
    assert slack_checks(env) == []
