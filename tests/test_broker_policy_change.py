"""A running broker serves the policy as it is on disk now: a role renamed in its policy file
is gone at the next call and the new name works, without a restart (Broker._warm_up runs
Environment.refresh_policy before every call)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.broker_world import POLICY, BrokerWorld, own_world

pytestmark = pytest.mark.slow

ACCOUNT = "333300004444"  # a world of its own: moto's state is shared by the whole process
ALICE = "alice@example.com"


@pytest.fixture(scope="module")
def world(tmp_path_factory, pd_certs) -> Iterator[BrokerWorld]:
    policy = POLICY.replace("444455556666", ACCOUNT)
    root = tmp_path_factory.mktemp("policy-change")
    with own_world(root, pd_certs, account=ACCOUNT, policy=policy) as w, w.serving():
        yield w


def test_a_role_renamed_in_the_policy_takes_effect_at_the_next_call(world, enforcing) -> None:
    world.on_call(ALICE)
    out = world.run(ALICE, "request", "prod-readonly", "--reason", "INC-1", "--json")
    assert out.returncode == 0, out.stderr

    policy = world.broker_dir / "policies" / "team.toml"
    renamed = policy.with_name(".team.toml.new")
    renamed.write_text(policy.read_text().replace("prod-readonly", "prod-viewer"))
    os.replace(renamed, policy)  # as an editor or a deploy writes it

    out = world.run(ALICE, "request", "prod-readonly", "--reason", "INC-2", "--fresh", "--json")
    assert out.returncode == 2 and "prod-readonly" in out.stderr, (out.returncode, out.stderr)
    out = world.run(ALICE, "request", "prod-viewer", "--reason", "INC-3", "--json")
    assert out.returncode == 0, out.stderr
