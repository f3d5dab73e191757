"""The core flow in-process, with a clock the tests control; and the CLI run in-process."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from jitctl import models
from jitctl.cli.main import run
from jitctl.context import Environment
from jitctl.errors import Denied, ExitCode, TimedOut
from jitctl.lifecycle.flow import submit
from jitctl.lifecycle.request_rules import STS_MIN_SECONDS, session_seconds
from jitctl.lifecycle.waiting import FIRST_INTERVAL, MAX_INTERVAL, next_interval, wait_for_decision
from tests.conftest import FixedClock
from tests.harness import Team

ALICE, BOB = "alice@example.com", "bob@example.com"
NOW = datetime(2026, 11, 21, 4, 0, tzinfo=UTC)


def use_identity(monkeypatch, team: Team, user: str) -> None:
    """The older name of ``team.act_as`` (tests/world.World), for modules that import it."""
    team.act_as(monkeypatch, user)


def environment(team: Team, user: str, clock) -> Environment:
    return Environment(environ=team.env(user), clock=clock)


@pytest.mark.parametrize(
    ("duration", "shift_left", "expected", "noted"),
    [
        (3600, None, 3600, False),
        (3600, 7200, 3600, False),
        (3600, 1800, 1800, True),
        (3600, 300, STS_MIN_SECONDS, True),  # never under STS's minimum; said so
        (3600, -60, STS_MIN_SECONDS, True),
    ],
)
def test_session_seconds(duration, shift_left, expected, noted):
    end = NOW + timedelta(seconds=shift_left) if shift_left is not None else None
    seconds, note = session_seconds(timedelta(seconds=duration), end, NOW)
    assert seconds == expected
    assert (note is not None) == noted


def test_backoff_starts_brisk_and_is_capped():
    interval, elapsed, seen = FIRST_INTERVAL, 0.0, []
    while elapsed < 120:
        seen.append(interval)
        elapsed += interval
        interval = next_interval(interval, elapsed)
    assert seen[0] == FIRST_INTERVAL and all(i == FIRST_INTERVAL for i in seen[:15])
    assert max(seen) == MAX_INTERVAL and seen[-1] == MAX_INTERVAL


def test_pending_request_expires_and_cannot_be_approved(team, monkeypatch):
    team.act_as(monkeypatch, ALICE)
    clock = FixedClock(datetime.now(UTC))
    env = environment(team, ALICE, clock)
    submitted = submit(env, role_name="prod-readonly", reason="INC-1", duration=None)
    req = submitted.request
    assert req.status == models.PENDING and "no PagerDuty user" in submitted.on_call.reason

    def sleep(seconds: float) -> None:  # the wait's sleeps move our clock, not the real one
        clock.advance(seconds * 60)

    with pytest.raises(TimedOut) as info:
        wait_for_decision(env, req.request_id, timeout=None, sleep=sleep)
    assert info.value.exit_code == ExitCode.TIMEOUT and "expired" in info.value.message
    assert env.store.get(req.request_id).status == models.EXPIRED
    assert [r["event"] for r in team.audit_records(ALICE)][-1] == "expired"

    team.act_as(monkeypatch, BOB)
    out = run(["approve", req.request_id, "--yes"])
    assert out == ExitCode.TIMEOUT  # it expired before a decision (issue 21 item 9)


def test_on_call_only_role_refuses_when_not_on_call(team, monkeypatch):
    policy = team.policy_dir / "team.toml"
    policy.write_text(
        policy.read_text().replace(
            '[roles.prod-readonly.approval]\napprovers = ["group:sre"]\nrequest_ttl = "30m"\n', ""
        )
    )
    team.act_as(monkeypatch, ALICE)
    env = environment(team, ALICE, FixedClock(datetime.now(UTC)))
    with pytest.raises(Denied, match="on-call only"):
        submit(env, role_name="prod-readonly", reason="INC-2", duration=None)


def test_cli_in_process_fast_path_and_verify(team, monkeypatch, capsys):
    now = datetime.now(UTC)
    team.pd.add_oncall(team.pd_user(ALICE), "PEP1234", 1, start=now - timedelta(hours=1), end=None)
    team.act_as(monkeypatch, ALICE)
    assert run(["request", "prod-readonly", "--reason", "INC-3", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "issued" and doc["on_call"]["end"] is None  # permanent on-call
    assert run(["audit", "verify", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["records"] == 3
