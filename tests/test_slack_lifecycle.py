"""The request's Slack message through the lifecycle in-process, in direct mode (a SQLite store
and a bot token on this machine): posted while a request waits, updated by the sweep's expiry
and by a CLI decision, on a clock the test sets."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from jitctl import models
from jitctl.context import Environment
from jitctl.lifecycle.decisions import approve, cancel, deny
from jitctl.lifecycle.sweep import sweep
from jitctl.models import AccessRequest, Caller
from jitctl.slack.announce import sync
from tests import slacksim
from tests.conftest import FixedClock
from tests.slacksim import SlackSim

NOW = datetime(2026, 12, 1, 4, 0, tzinfo=UTC)
ALICE, BOB = "alice@example.com", "bob@example.com"
POLICY = """
version = 1
[roles.ops]
arn = "arn:aws:iam::123456789012:role/ops"
[roles.ops.approval]
approvers = ["bob@example.com"]
approve_from = ["cli", "slack"]
slack_channel = "C0JIT"
"""


@pytest.fixture
def slack(pd_certs) -> Iterator[SlackSim]:
    with SlackSim(pd_certs) as sim:
        yield sim


@pytest.fixture
def environ(tmp_path, slack, pd_certs) -> dict[str, str]:
    (tmp_path / "p.toml").write_text(textwrap.dedent(POLICY))
    (tmp_path / "config.toml").write_text(
        f'policy = "p.toml"\n[store]\npath = "{tmp_path / "store.db"}"\n'
        f'[audit]\npath = "{tmp_path / "audit.jsonl"}"\n'
        f'[slack]\napi_url = "{slack.api_url}"\nca_bundle = "{pd_certs.ca}"\n'
    )
    return {
        "JITCTL_CONFIG": str(tmp_path / "config.toml"),
        "JITCTL_SLACK_BOT_TOKEN": slacksim.TOKEN,
    }


def env_for(environ: dict[str, str], clock: FixedClock, person: str) -> Environment:
    caller = Caller(f"arn:aws:iam::123456789012:user/{person}", "123456789012", person)
    return Environment(environ=environ, clock=clock, _caller=caller)


def waiting(env: Environment) -> AccessRequest:
    req = AccessRequest(
        request_id="r-slack1",
        role="ops",
        requester=ALICE,
        requester_arn=env.caller.arn,
        reason="<!here> INC-1",
        duration_seconds=3600,
        status=models.PENDING,
        created_at=NOW,
        expires_at=NOW + timedelta(minutes=30),
    )
    env.store.create(req)
    assert sync(env, req) is None
    return req


def test_the_sweeps_expiry_updates_the_message(environ, slack):
    clock = FixedClock(NOW)
    req = waiting(env_for(environ, clock, ALICE))
    (msg,) = slack.naming(req.request_id)
    assert msg.buttons and "&lt;!here&gt; INC-1" in msg.shown
    clock.advance(31 * 60)
    report = sweep(env_for(environ, clock, "jitctl-broker"))
    assert report.expired == [req.request_id] and report.problems == []
    assert not msg.buttons and "Expired before a decision" in msg.shown


def test_a_cli_approval_in_direct_mode_updates_the_message(environ, slack):
    clock = FixedClock(NOW)
    req = waiting(env_for(environ, clock, ALICE))
    (msg,) = slack.naming(req.request_id)
    updated, warnings = approve(env_for(environ, clock, BOB), req.request_id, reason=None)
    assert updated.status == models.APPROVED and warnings == []
    assert not msg.buttons and "Approved by bob@example.com" in msg.shown


def test_no_token_here_means_nothing_is_posted(environ, slack):
    del environ["JITCTL_SLACK_BOT_TOKEN"]
    waiting(env_for(environ, FixedClock(NOW), ALICE))
    assert slack.calls == []


def test_a_cli_denial_in_direct_mode_updates_the_message(environ, slack):
    clock = FixedClock(NOW)
    req = waiting(env_for(environ, clock, ALICE))
    (msg,) = slack.naming(req.request_id)
    updated, warnings = deny(env_for(environ, clock, BOB), req.request_id, reason="not now")
    assert updated.status == models.DENIED and warnings == []
    assert not msg.buttons and "Denied by bob@example.com" in msg.shown


def test_a_cancel_whose_message_slack_will_not_update_is_shown_as_a_warning(environ, slack):
    """cancel returns the request alone, so Slack's trouble reaches the user through the
    host's on_warning (jitctl prints it), and the cancel itself stands."""
    clock = FixedClock(NOW)
    alice = env_for(environ, clock, ALICE)
    req = waiting(alice)
    shown: list[str] = []
    alice.on_warning = shown.append
    slack.down.add("chat.update")
    assert cancel(alice, req.request_id).status == models.CANCELLED
    assert len(shown) == 1 and "could not update the request's Slack message" in shown[0]
