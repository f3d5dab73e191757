"""The request's Slack message through the lifecycle in-process, in direct mode (a SQLite store
and a bot token on this machine): posted while a request waits, updated by the sweep's expiry
and by a CLI decision (even one landing while chat.postMessage is under way), on a clock the
test sets; a break-glass grant's message and its review."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jitctl import models
from jitctl.audit.log import read_records
from jitctl.context import Environment
from jitctl.errors import Denied
from jitctl.lifecycle.break_glass import review
from jitctl.lifecycle.decisions import approve, cancel, deny
from jitctl.lifecycle.flow import issue, peer_problem
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

[roles.glass]
arn = "arn:aws:iam::123456789012:role/glass"
[roles.glass.break_glass]
max_duration = "1h"
[roles.glass.approval]
approvers = ["bob@example.com"]
approve_from = ["slack"]
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


def alices(env: Environment, **changes: Any) -> AccessRequest:
    """Alice's request on ops, pending, as the store keeps it (``changes`` on top)."""
    base: dict[str, Any] = {
        "request_id": "r-slack1",
        "role": "ops",
        "requester": ALICE,
        "requester_arn": env.caller.arn,
        "reason": "<!here> INC-1",
        "duration_seconds": 3600,
        "status": models.PENDING,
        "created_at": NOW,
        "expires_at": NOW + timedelta(minutes=30),
    }
    return AccessRequest(**{**base, **changes})


def waiting(env: Environment) -> AccessRequest:
    req = alices(env)
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


def test_an_approval_is_rechecked_against_where_the_role_takes_decisions_from_now(
    environ, slack, tmp_path
):
    """Each approval keeps where it came from; issuing re-checks it against approve_from as
    the policy says then. bob approved from the CLI; the policy then takes decisions from
    Slack only, and his approval no longer counts."""
    clock = FixedClock(NOW)
    req = waiting(env_for(environ, clock, ALICE))
    updated, _ = approve(env_for(environ, clock, BOB), req.request_id, reason=None)
    assert updated.approved_from == {BOB: "cli"}
    alice = env_for(environ, clock, ALICE)
    assert peer_problem(alice, alice.policy.role("ops"), updated) is None  # counts as it is
    policy = tmp_path / "p.toml"
    policy.write_text(policy.read_text().replace('["cli", "slack"]', '["slack"]'))
    alice = env_for(environ, clock, ALICE)
    with pytest.raises(Denied, match="bob@example.com approved from cli, and role 'ops' no longer"):
        issue(alice, alice.store.get(req.request_id, now=NOW), evidence=None)
    records = read_records(tmp_path / "audit.jsonl")
    refused = [r for r in records if r["event"] == "issue_refused"]
    assert len(refused) == 1 and "approved from cli" in refused[0]["why"]


def test_a_review_is_a_decision_and_comes_from_where_the_role_takes_them(environ, slack):
    """glass takes decisions from Slack only: bob, its approver, may not review a break-glass
    grant from the CLI; the same review signed in through Slack is recorded."""
    clock = FixedClock(NOW)
    alice = env_for(environ, clock, ALICE)
    # approved with break-glass, as `request --break-glass` creates it before issuing
    glass = alices(alice, request_id="r-glass1", role="glass", status=models.APPROVED)
    alice.store.create(replace(glass, approval=models.BREAK_GLASS, decided_at=NOW))
    with pytest.raises(Denied, match="may not come from cli"):
        review(env_for(environ, clock, BOB), "r-glass1", reason="seen")
    assert alice.store.get("r-glass1", now=NOW).reviewed_at is None
    by_slack = Caller("slack:U0BOB", "", BOB, channel="slack")
    env = Environment(environ=environ, clock=clock, _caller=by_slack)
    assert review(env, "r-glass1", reason="seen").reviewed_by == BOB


def test_a_decision_landing_while_the_message_is_posted_is_shown_at_once(environ, slack):
    """The race: bob approves after chat.postMessage posted but before the store knows where
    it went (his approval's own update finds no message). The poster reads the request back."""
    clock = FixedClock(NOW)
    decided: list[AccessRequest] = []

    def bob_approves(args: dict) -> None:
        decided.append(approve(env_for(environ, clock, BOB), "r-slack1", reason=None)[0])

    slack.before["chat.postMessage"] = bob_approves
    req = waiting(env_for(environ, clock, ALICE))
    assert [d.status for d in decided] == [models.APPROVED]  # it did land in between
    (msg,) = slack.naming(req.request_id)
    assert not msg.buttons and "Approved by bob@example.com" in msg.shown
    assert msg.updates == 1


def glass_grant(env: Environment) -> AccessRequest:
    """A break-glass grant on ops as flow records it (approved at once), announced."""
    req = alices(
        env,
        request_id="r-glass1",
        reason="<!channel> INC-2 db down",
        duration_seconds=1800,
        status=models.APPROVED,
        approval=models.BREAK_GLASS,
        decided_at=NOW,
        decided_by=ALICE,
    )
    env.store.create(req)
    assert sync(env, req) is None
    return req


def test_a_break_glass_message_has_review_and_no_decision_and_shows_the_review(environ, slack):
    clock = FixedClock(NOW)
    req = glass_grant(env_for(environ, clock, ALICE))
    (msg,) = slack.naming(req.request_id)
    assert [(b["action_id"], b["value"]) for b in msg.buttons] == [("jitctl_review", "r-glass1")]
    assert "BREAK-GLASS" in msg.text and "alice@example.com" in msg.text and "30 min" in msg.text
    assert "&lt;!channel&gt; INC-2" in msg.shown and "<!channel>" not in msg.shown
    reviewed = review(env_for(environ, clock, BOB), req.request_id, "looked fine")
    assert reviewed.reviewed_by == BOB
    assert not msg.buttons and "Reviewed by bob@example.com" in msg.shown
    assert "looked fine" in msg.shown


def test_the_sweep_says_when_a_break_glass_grant_ran_out_once_and_retries_slack(environ, slack):
    clock = FixedClock(NOW)
    env = env_for(environ, clock, ALICE)
    req = glass_grant(env)
    env.store.claim_issue(req.request_id, now=NOW, planned_end=NOW + timedelta(minutes=30))
    issued = env.store.mark_issued(
        req.request_id, now=NOW, credentials_expire_at=NOW + timedelta(minutes=30), attempt=1
    )
    assert sync(env, issued) is None
    (msg,) = slack.naming(req.request_id)
    assert "issued, ends 2026-12-01T04:30:00Z" in msg.shown
    broker = env_for(environ, clock, "jitctl-broker")
    clock.advance(29 * 60)
    assert sweep(broker).problems == [] and "ended" not in msg.shown  # not yet over
    clock.advance(2 * 60)
    slack.down.add("chat.update")
    try:
        problems = sweep(broker).problems  # Slack down: said, and left to the next sweep
    finally:
        slack.down.clear()
    assert [p for p in problems if p.startswith("r-glass1:") and "chat.update" in p]
    assert "ended" not in msg.shown
    assert sweep(broker).problems == []
    assert "issued, ended 2026-12-01T04:30:00Z" in msg.shown
    assert [b["action_id"] for b in msg.buttons] == ["jitctl_review"]  # still to be reviewed
    updates = msg.updates
    assert sweep(broker).problems == [] and msg.updates == updates  # said once


def test_a_review_posts_nothing_where_the_announcement_failed(environ, slack):
    clock = FixedClock(NOW)
    alice = env_for(environ, clock, ALICE)
    grant = alices(alice, request_id="r-glass1", status=models.APPROVED, decided_at=NOW)
    alice.store.create(replace(grant, approval=models.BREAK_GLASS))  # never announced
    assert review(env_for(environ, clock, BOB), "r-glass1", reason=None).reviewed_by == BOB
    assert slack.calls_to("chat.postMessage") == []
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


def test_a_review_whose_message_slack_will_not_update_is_shown_as_a_warning(environ, slack):
    """review returns the request alone: Slack's trouble reaches bob through on_warning, and
    the review itself stands."""
    clock = FixedClock(NOW)
    req = glass_grant(env_for(environ, clock, ALICE))
    bob = env_for(environ, clock, BOB)
    shown: list[str] = []
    bob.on_warning = shown.append
    slack.down.add("chat.update")
    assert review(bob, req.request_id, reason=None).reviewed_by == BOB
    assert len(shown) == 1 and "could not update the request's Slack message" in shown[0]
