"""Shared by the incident, paging and sweep tests: a policy with incident-bound and paged
roles over IAM roles of the test's own in moto, and helpers to act as someone in-process."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from jitctl.context import Environment
from tests.harness import POLICY, Team

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"
SERVICE, OTHER, PAGE_SERVICE = "PSVC1", "PSVC2", "PSVCAPPROVE"
EXTRA = """
[roles.prod-incident]
arn = "arn:aws:iam::123456789012:role/inc-{uid}"
max_duration = "1h"

[roles.prod-incident.incident]
services = ["PSVC1"]
end_with_incident = true

[roles.prod-incident.approval]
approvers = ["group:sre"]
page_service = "PSVCAPPROVE"

[roles.db-paged]
arn = "arn:aws:iam::123456789012:role/paged-{uid}"

[roles.db-paged.approval]
approvers = ["group:sre"]
request_ttl = "15m"
page_service = "PSVCAPPROVE"

[roles.db-paged.break_glass]
max_duration = "30m"
"""


def policy_text(uid: str) -> str:
    base = POLICY.replace("role/prod-readonly", f"role/ro-{uid}")
    return base.replace("role/prod-admin", f"role/admin-{uid}") + EXTRA.format(uid=uid)


@pytest.fixture
def role_uid() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def team_policy(role_uid: str) -> str:
    return policy_text(role_uid)


@pytest.fixture
def team(team: Team, role_uid: str) -> Team:
    """The harness team, its roles created in moto, PagerDuty services and users seeded, and
    a PagerDuty ``from`` address for writes."""
    iam = team.admin_client("iam")
    for name in (f"ro-{role_uid}", f"admin-{role_uid}", f"inc-{role_uid}", f"paged-{role_uid}"):
        iam.create_role(RoleName=name, AssumeRolePolicyDocument="{}", MaxSessionDuration=43200)
    for service in (SERVICE, OTHER, PAGE_SERVICE):
        team.pd.add_service(service, "PEP9")
    for person in (ALICE, BOB, CAROL, "ops@example.com"):
        team.pd_user(person)
    team.config.write_text(
        team.config.read_text().replace("[pagerduty]\n", '[pagerduty]\nfrom = "ops@example.com"\n')
    )
    return team


def act_as(monkeypatch: Any, team: Team, user: str, clock: Any = None) -> Environment:
    """``team.act_as`` (tests/world.World), under the name these modules know."""
    return team.act_as(monkeypatch, user, clock)


def events(team: Team, user: str) -> list[str]:
    return [r["event"] for r in team.audit_records(user)]
