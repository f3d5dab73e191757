"""Slack approvals, step one: the policy keys (approve_from, slack_channel, slack: identities),
the [slack] config, and the one decision rule refusing a channel a role does not take."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jitctl import models
from jitctl.config.settings import load_config
from jitctl.context import Environment
from jitctl.errors import ConfigError, Denied, ExitCode, PolicyError
from jitctl.lifecycle.decisions import channel_fields, check_may_decide
from jitctl.models import AccessRequest, Caller
from jitctl.policy.load import load_policy
from jitctl.sanitize import slack_text

ALICE, BOB = "alice@example.com", "bob@example.com"
BASE = """
version = 1
[identities]
"slack:U0BOB" = "bob@example.com"
"arn:aws:iam::123456789012:user/ci" = "ci@example.com"
[roles.ops]
arn = "arn:aws:iam::123456789012:role/ops"
[roles.ops.approval]
approvers = ["bob@example.com"]
{extra}
"""


def policy(tmp_path: Path, extra: str = ""):
    path = tmp_path / "p.toml"
    path.write_text(textwrap.dedent(BASE.format(extra=extra)))
    return load_policy(path)


def test_approve_from_defaults_to_the_cli_alone(tmp_path):
    rule = policy(tmp_path).roles["ops"].approval
    assert rule.approve_from == ("cli",) and rule.slack_channel is None


def test_approve_from_and_slack_channel_are_read(tmp_path):
    rule = policy(tmp_path, 'approve_from = ["slack"]\nslack_channel = "C0123"').roles["ops"]
    assert rule.approval.approve_from == ("slack",)
    assert rule.approval.slack_channel == "C0123"


@pytest.mark.parametrize("value", ['["email"]', "[]", '"slack"', '["cli", 3]'])
def test_an_unknown_or_malformed_approve_from_is_a_policy_error(tmp_path, value):
    with pytest.raises(PolicyError) as info:
        policy(tmp_path, f"approve_from = {value}")
    assert "approve_from" in info.value.message
    assert info.value.exit_code == ExitCode.USAGE


def test_slack_identities_are_kept_apart_from_principal_arns(tmp_path):
    p = policy(tmp_path)
    assert p.slack_person("U0BOB") == BOB and p.slack_person("U0NOBODY") is None
    assert "slack:U0BOB" not in p.identity.mapping  # never an AWS principal's person
    assert p.identity.mapping["arn:aws:iam::123456789012:user/ci"] == "ci@example.com"


def test_a_malformed_slack_identity_is_a_policy_error(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(BASE.format(extra="").replace("slack:U0BOB", "slack:bob"))
    with pytest.raises(PolicyError, match="Slack user id"):
        load_policy(path)


def _config(tmp_path: Path, text: str, **environ: str):
    cfg = tmp_path / "config.toml"
    cfg.write_text(text)
    return load_config({"JITCTL_CONFIG": str(cfg), **environ}).slack


def test_slack_config_reads_secrets_urls_and_the_environment_wins(tmp_path):
    text = (
        '[slack]\nbot_token = "xoxb-file"\nsigning_secret = "file"\n'
        'api_url = "https://127.0.0.1:9/api/"\nca_bundle = "ca.pem"\n'
    )
    slack = _config(tmp_path, text, JITCTL_SLACK_SIGNING_SECRET="from-env")
    assert slack.bot_token == "xoxb-file" and slack.signing_secret == "from-env"
    assert slack.api_url == "https://127.0.0.1:9/api" and slack.ca_bundle == tmp_path / "ca.pem"
    assert "xoxb-file" not in repr(slack) and "from-env" not in repr(slack)


@pytest.mark.parametrize(
    "text",
    ['[slack]\nbot_tokn = "x"\n', '[slack]\napi_url = "http://slack.example.com/api"\n'],
)
def test_slack_config_mistakes_are_config_errors(tmp_path, text):
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, text)
    assert info.value.exit_code == ExitCode.USAGE


def _pending() -> AccessRequest:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    return AccessRequest(
        request_id="r-1",
        role="ops",
        requester=ALICE,
        requester_arn="arn:aws:iam::123456789012:user/alice@example.com",
        reason="x",
        duration_seconds=3600,
        status=models.PENDING,
        created_at=now,
        expires_at=now + timedelta(minutes=30),
    )


def _env(p, caller: Caller) -> Environment:
    return Environment(environ={}, _policy=p, _caller=caller)


CLI_BOB = Caller("arn:aws:iam::123456789012:user/bob@example.com", "123456789012", BOB)
SLACK_BOB = Caller("slack:U0BOB", "", BOB, channel="slack")


def test_the_cli_may_not_decide_a_role_that_takes_slack_decisions_only(tmp_path):
    p = policy(tmp_path, 'approve_from = ["slack"]')
    with pytest.raises(Denied) as info:
        check_may_decide(_env(p, CLI_BOB), _pending())
    assert "may not come from cli" in info.value.message and "Slack" in info.value.hint
    check_may_decide(_env(p, SLACK_BOB), _pending())  # the same approver from Slack may


def test_slack_may_not_decide_a_role_that_does_not_list_it(tmp_path):
    p = policy(tmp_path)
    with pytest.raises(Denied, match="may not come from slack"):
        check_may_decide(_env(p, SLACK_BOB), _pending())
    check_may_decide(_env(p, CLI_BOB), _pending())


ON_CALL_ONLY = """approve_from = ["cli", "slack"]
[roles.pager]
arn = "arn:aws:iam::123456789012:role/pager"
[roles.pager.on_call]
escalation_policies = ["PEPAGER"]
"""


@pytest.mark.parametrize(
    ("caller", "why"),
    [
        (CLI_BOB, f"you ({BOB}) may not decide requests for role 'pager'"),
        # a role without [approval] takes decisions (reviews) from the CLI alone
        (
            SLACK_BOB,
            "decisions on role 'pager' may not come from slack: its policy takes "
            "them from cli only",
        ),
    ],
    ids=["cli", "slack"],
)
def test_nobody_decides_a_role_without_an_approval_table_from_any_channel(tmp_path, caller, why):
    """An on-call-only role's requests are never a peer's to decide: exit 3 (not a crash on
    the missing table), whichever channel asks; from the CLI it names no approvers."""
    pending = replace(_pending(), role="pager")
    with pytest.raises(Denied) as info:
        check_may_decide(_env(policy(tmp_path, ON_CALL_ONLY), caller), pending)
    assert info.value.exit_code == ExitCode.DENIED
    assert info.value.message == why
    if caller is CLI_BOB:
        assert info.value.hint == "approvers: none now"


def test_decisions_say_which_channel_they_came_from(tmp_path):
    p = policy(tmp_path)
    assert channel_fields(_env(p, CLI_BOB)) == {"channel": "cli"}
    assert channel_fields(_env(p, SLACK_BOB)) == {"channel": "slack", "slack_user": "U0BOB"}


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("<!channel> deploy", "&lt;!channel&gt; deploy"),
        ("ping <@U0BOSS>", "ping &lt;@U0BOSS&gt;"),
        ("<https://evil.example|docs> & more", "&lt;https://evil.example|docs&gt; &amp; more"),
        ("line\nbreak\x1b[31m", "line break"),
    ],
)
def test_peoples_text_is_escaped_for_slack(raw, shown):
    assert slack_text(raw) == shown


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/respond",  # wherever a payload points
        "http://hooks.slack.com/actions/T/1/x",  # not https
        "https://hooks.slack.com.evil.example/actions",
    ],
)
def test_ephemeral_replies_go_only_to_slacks_own_hosts(tmp_path, url):
    from jitctl.slack import api

    cfg = tmp_path / "config.toml"
    cfg.write_text('[slack]\napi_url = "https://slack.com/api"\n')
    env = Environment(environ={"JITCTL_CONFIG": str(cfg)})
    with pytest.raises(api.SlackError, match="refusing a response_url"):
        api.respond(env, url, "no")
