"""Shared by the incident, paging and sweep tests: a policy with incident-bound and paged
roles over IAM roles of the test's own in moto, and helpers to act as someone in-process."""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import pytest

from jitctl.context import Environment
from jitctl.wiring import choose_service
from tests.harness import POLICY, Team, iam_keys

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
    iam = boto3.client("iam", endpoint_url=team.moto, region_name="us-east-1", **_admin())
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


def _admin() -> dict[str, str]:
    return {"aws_access_key_id": "AKIAADMIN", "aws_secret_access_key": "x"}


def act_as(monkeypatch: Any, team: Team, user: str, clock: Any = None) -> Environment:
    """boto3 reads the process environment: point it at this user, and give an Environment."""
    for key, value in team.env(user).items():
        if key.startswith(("AWS_", "JITCTL_", "XDG_")) or key == "HOME":
            monkeypatch.setenv(key, value)
    for key, value in iam_keys(team.moto, user).items():
        monkeypatch.setenv(key, value)
    # assembled as the CLI host does (jitctl.wiring): its service is the one the config names
    if clock is None:
        return Environment(service_factory=choose_service, environ=team.env(user))
    return Environment(service_factory=choose_service, environ=team.env(user), clock=clock)


def events(team: Team, user: str) -> list[str]:
    return [r["event"] for r in team.audit_records(user)]
