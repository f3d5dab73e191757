"""A small team for end-to-end tests: policy files, a config, IAM users in moto, PagerDuty users
in the simulator, and the installed `jitctl` run as a subprocess for any one of them.

Built from the demo's world (``jitctl.demo.team``): the same home layout per person and the same
way of making IAM users, so the tests exercise what the demo shows. What differs is the tests'
own: a SQLite store, people created when first used, and the installed `jitctl` on PATH."""

from __future__ import annotations

import json
import subprocess
import textwrap
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3

from jitctl.demo.homes import create_person
from jitctl.demo.team import write_config
from tests.conftest import clean_env
from tests.pdsim import PagerDutySim
from tests.world import World

ACCOUNT = "123456789012"
POLICY = """
version = 1

[identities]
"arn:aws:iam::123456789012:user/ci-bot" = "ci-bot@example.com"

[groups]
sre = ["bob@example.com", "carol@example.com"]

[roles.prod-readonly]
arn = "arn:aws:iam::123456789012:role/prod-readonly"
max_duration = "2h"
session_policy = "readonly.json"

[roles.prod-readonly.on_call]
escalation_policies = ["PEP1234"]
max_escalation_level = 1

[roles.prod-readonly.approval]
approvers = ["group:sre"]
request_ttl = "30m"

[roles.prod-admin]
arn = "arn:aws:iam::123456789012:role/prod-admin"
max_duration = "1h"

[roles.prod-admin.approval]
approvers = ["group:sre"]
min_approvals = 2
"""
SESSION_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["s3:List*", "s3:Get*"], "Resource": "*"}],
}

# The tests' store table, exactly: tests that switch backends replace this text (use_store).
SQLITE_STORE = '[store]\nbackend = "sqlite"\npath = "requests.db"\n'
ADMIN_KEYS = {"aws_access_key_id": "AKIAADMIN", "aws_secret_access_key": "x"}  # moto, auth off
_keys: dict[tuple[str, str], dict[str, str]] = {}  # (endpoint, user) -> access key env


def iam_keys(endpoint: str, user: str) -> dict[str, str]:
    """Access keys of an IAM user in moto (created once per server)."""
    if (endpoint, user) not in _keys:
        iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1", **ADMIN_KEYS)
        _keys[(endpoint, user)] = create_person(iam, user)
    return _keys[(endpoint, user)]


def own_role_team(root: Path, moto: str, pd: PagerDutySim, prefix: str) -> Team:
    """The team, its prod-readonly an IAM role of its own in moto (revoke writes a deny policy
    on it, and moto's server is shared by every test)."""
    role = f"{prefix}-{uuid.uuid4().hex[:8]}"
    team = Team(root, moto, pd, policy=POLICY.replace("role/prod-readonly", f"role/{role}"))
    team.admin_client("iam").create_role(RoleName=role, AssumeRolePolicyDocument="{}")
    return team


@contextmanager
def existing_role(endpoint: str, name: str) -> Iterator[Any]:
    """IAM role ``name`` made in moto for one test (a re-issue writes its inline deny policy,
    and IAM refuses that on a role that does not exist), removed afterwards; yields an IAM
    client. moto's server is shared: nothing of it outlives the test."""
    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1", **ADMIN_KEYS)
    iam.create_role(RoleName=name, AssumeRolePolicyDocument="{}", MaxSessionDuration=43200)
    try:
        yield iam
    finally:
        for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
            iam.delete_role_policy(RoleName=name, PolicyName=policy)
        iam.delete_role(RoleName=name)


class Team(World):
    """The direct-mode world: a shared config and SQLite store (``use_store`` for another)."""

    def __init__(self, root: Path, moto: str, pd: PagerDutySim, policy: str = POLICY) -> None:
        super().__init__(root, moto, pd)
        self.admin = ADMIN_KEYS
        self.policy_dir = root / "policies"
        self.policy_dir.mkdir(parents=True)
        (self.policy_dir / "team.toml").write_text(textwrap.dedent(policy))
        (self.policy_dir / "readonly.json").write_text(json.dumps(SESSION_POLICY))
        write_config(root, pd, SQLITE_STORE, timeout="3s")
        self.pd_users: dict[str, str] = {}

    def use_store(self, store: str) -> None:
        """Replace the config's ``[store]`` table (SQLITE_STORE) with ``store``; a config that
        no longer holds it fails here rather than silently testing SQLite twice."""
        text = self.config.read_text()
        assert SQLITE_STORE in text, "the config's [store] table is not the harness's"
        self.config.write_text(text.replace(SQLITE_STORE, store))

    def pd_user(self, email: str) -> str:
        if email not in self.pd_users:
            self.pd_users[email] = self.pd.add_user(email)
        return self.pd_users[email]

    pd_id = pd_user

    def aws_keys(self, user: str) -> dict[str, str]:
        return iam_keys(self.moto, user)

    def env(self, user: str, **extra: str) -> dict[str, str]:
        return super().env(user, **{"JITCTL_PAGERDUTY_TOKEN": self.pd.token or "", **extra})

    def consumer_arn(self, user: str, profile: str) -> str:
        """A separate AWS client, configured only by the profile jitctl wrote: who is it?"""
        import sys

        env = clean_env(
            AWS_PROFILE=profile,
            AWS_SHARED_CREDENTIALS_FILE=str(self.credentials_file(user)),
            AWS_CONFIG_FILE=str(self.aws_config_file(user)),
            AWS_ENDPOINT_URL=self.moto,
            AWS_REGION="us-east-1",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_EC2_METADATA_DISABLED="true",
        )
        code = "import boto3; print(boto3.client('sts').get_caller_identity()['Arn'])"
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def audit_records(self, user: str) -> list[dict[str, Any]]:
        path = self.audit_log(user)
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
