"""A process that serves many calls (the broker) loads its policy once, and again as soon as a
file of it changes (Environment.refresh_policy, jitctl.policy.fresh): unchanged, it is not read
again; changed (a role renamed, a file added, a session policy edited), the next call has the
new one; broken, every call fails until it is fixed, none is served by the old one."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from jitctl.context import Environment
from jitctl.errors import JitctlError
from jitctl.wiring import choose_service

POLICY = """
version = 1

[roles.{name}]
arn = "arn:aws:iam::123456789012:role/jit-prod-readonly"
max_duration = "1h"
{extra}
[roles.{name}.approval]
approvers = ["bob@example.com"]
"""


def write_policy(policies: Path, name: str = "prod-readonly", extra: str = "") -> None:
    (policies / "team.toml").write_text(POLICY.format(name=name, extra=extra))


@pytest.fixture
def env(tmp_path: Path) -> Environment:
    policies = tmp_path / "policies"
    policies.mkdir()
    write_policy(policies)
    config = tmp_path / "config.toml"
    config.write_text('policy = "policies"\n')
    environ = {"JITCTL_CONFIG": str(config), "HOME": str(tmp_path / "home")}
    return Environment(environ=environ, service_factory=choose_service)


def test_an_unchanged_policy_is_not_read_again(env: Environment) -> None:
    env.refresh_policy()
    loaded = env.policy
    for _ in range(3):
        env.refresh_policy()
    assert env.policy is loaded


def test_a_changed_file_takes_effect_at_the_next_call(env: Environment, tmp_path: Path) -> None:
    env.refresh_policy()
    assert set(env.policy.roles) == {"prod-readonly"}
    # Same size, same second: only the inode/ctime/mtime in ns tell it apart (a rename over it,
    # as editors and `git checkout` do).
    replacement = tmp_path / "policies" / ".team.toml.new"
    replacement.write_text(POLICY.format(name="prod-readwrit", extra=""))
    os.replace(replacement, tmp_path / "policies" / "team.toml")
    env.refresh_policy()
    assert set(env.policy.roles) == {"prod-readwrit"}


def test_a_file_added_to_the_directory_counts(env: Environment, tmp_path: Path) -> None:
    env.refresh_policy()
    more = POLICY.format(name="staging", extra="").replace("version = 1\n", "")
    (tmp_path / "policies" / "more.toml").write_text("version = 1\n" + more)
    env.refresh_policy()
    assert set(env.policy.roles) == {"prod-readonly", "staging"}


def test_an_edited_session_policy_file_counts(env: Environment, tmp_path: Path) -> None:
    session = tmp_path / "policies" / "read.json"
    document = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:Get*",
                                                         "Resource": "*"}]}
    session.write_text(json.dumps(document))
    write_policy(tmp_path / "policies", extra='session_policy = "read.json"\n')
    env.refresh_policy()
    assert "s3:Get*" in (env.policy.role("prod-readonly").session_policy or "")
    document["Statement"][0]["Action"] = "s3:List*"
    session.write_text(json.dumps(document))
    env.refresh_policy()
    assert "s3:List*" in (env.policy.role("prod-readonly").session_policy or "")


def test_a_broken_policy_fails_every_call_until_fixed(env: Environment, tmp_path: Path) -> None:
    env.refresh_policy()
    (tmp_path / "policies" / "team.toml").write_text("version = 1\n[roles.prod-readonly]\n")
    for _ in range(2):  # not once, then the old policy again
        with pytest.raises(JitctlError):
            env.refresh_policy()
        with pytest.raises(JitctlError):
            _ = env.policy
    write_policy(tmp_path / "policies", name="fixed")
    env.refresh_policy()
    assert set(env.policy.roles) == {"fixed"}


def test_a_policy_that_is_one_file_is_followed_too(tmp_path: Path) -> None:
    """`policy = "team.toml"` (a file, not a directory): an edit reaches the next call."""
    write_policy(tmp_path)
    config = tmp_path / "config.toml"
    config.write_text('policy = "team.toml"\n')
    env = Environment(environ={"JITCTL_CONFIG": str(config)}, service_factory=choose_service)
    assert set(env.refresh_policy().roles) == {"prod-readonly"}
    write_policy(tmp_path, name="prod-audit")
    assert set(env.refresh_policy().roles) == {"prod-audit"}


def test_a_policy_that_disappears_fails_closed_in_one_line(env: Environment, tmp_path: Path) -> None:
    """The policy directory removed under a running broker: the next call is exit 2 naming
    it (not a crash, and not the policy it had)."""
    env.refresh_policy()
    gone = tmp_path / "policies"
    (gone / "team.toml").unlink()
    gone.rmdir()
    with pytest.raises(JitctlError) as info:
        env.refresh_policy()
    assert info.value.exit_code == 2 and "policies" in info.value.message
