"""identity_center roles: a permission set assigned in an account instead of AssumeRole, with
moto's sso-admin and identitystore and the team harness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jitctl import models
from jitctl.context import Environment
from jitctl.lifecycle.flow import issue, submit
from jitctl.lifecycle.service import LocalService
from tests.conftest import FixedClock
from tests.harness import Team
from tests.idc_world import IdcWorld
from tests.test_flow import use_identity

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"


def environment(team: Team, user: str, clock) -> Environment:
    return Environment(environ=team.env(user), clock=clock)


@pytest.fixture
def world(team: Team) -> IdcWorld:
    return IdcWorld(team)


def on_call(team: Team, email: str) -> None:
    now = datetime.now(UTC)
    team.pd.add_oncall(team.pd_user(email), "PEP1234", 1, start=now - timedelta(hours=1), end=None)


def test_on_call_request_assigns_and_lists(team, world, monkeypatch):
    alice = world.user(ALICE)
    on_call(team, ALICE)
    use_identity(monkeypatch, team, ALICE)
    env = environment(team, ALICE, FixedClock(datetime.now(UTC)))
    submitted = submit(env, role_name="sso-admin", reason="INC-1", duration=timedelta(minutes=5))
    assert submitted.fast_tracked
    done = issue(env, submitted.request, evidence=submitted.on_call.evidence)
    assert done.credentials is None
    assert world.holders() == [alice]
    doc = models.public_dict(done.request)
    assert (doc["kind"], doc["account"], doc["permission_set"]) == (
        "identity_center", world.account, world.name,
    )  # fmt: skip
    assert doc["assignment"] == "present" and doc["status"] == "issued"
    assert any("aws sso login" in n for n in done.notes)
    assert [g.request_id for g in LocalService(env).grants()] == [done.request.request_id]
    events = [r["event"] for r in team.audit_records(ALICE)]
    assert events[-2:] == ["assigned", "issued"]
