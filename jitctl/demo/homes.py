"""Where a team's people live: one home directory each under the team's root, and an IAM user
with access keys. The demo's team (``team.py``) and the tests' team (``tests/harness.py``) are
both built from these, so a test exercises the same files the demo shows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class Homes:
    """Where a team's people keep their files under its root: one home each, none of it real."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    def home(self, name: str) -> Path:
        return self.root / "home" / name

    def credentials_file(self, name: str) -> Path:
        return self.home(name) / ".aws" / "credentials"

    def aws_config_file(self, name: str) -> Path:
        return self.home(name) / ".aws" / "config"

    def audit_log(self, name: str) -> Path:
        return self.home(name) / "audit.jsonl"

    def home_env(self, name: str) -> dict[str, str]:
        """The variables that keep a process run as ``name`` inside ``name``'s home."""
        home = self.home(name)
        return {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_STATE_HOME": str(home / ".local" / "state"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.credentials_file(name)),
            "AWS_CONFIG_FILE": str(self.aws_config_file(name)),
            "JITCTL_CONFIG": str(self.config),
            "JITCTL_AUDIT_LOG": str(self.audit_log(name)),
            # Each person's credential cache of their own, even when their shell exports
            # only AWS_* and JITCTL_* (the demo's persona files: one OS account for all).
            "JITCTL_CACHE_DIR": str(home / ".cache" / "jitctl"),
        }


def create_person(
    iam: Any, user: str, policy: dict[str, Any] | None = None, policy_name: str = "jitctl-caller"
) -> dict[str, str]:
    """An IAM user (made if missing) with a new access key, as environment variables."""
    try:
        iam.create_user(UserName=user)
    except iam.exceptions.EntityAlreadyExistsException:
        pass  # a second key for the same person (the tests' world reuses users)
    if policy is not None:
        doc = json.dumps(policy)
        iam.put_user_policy(UserName=user, PolicyName=policy_name, PolicyDocument=doc)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return {
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
    }
