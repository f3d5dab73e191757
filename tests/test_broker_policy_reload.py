"""The broker reads its policy again when the files change: a reviewed change takes effect
with the next call, without a restart, and a policy that no longer loads fails closed.

A long-lived `broker serve` that kept the policy it started with would let an approver
removed an hour ago keep approving, and a decision re-checked "against the policy now" would
be re-checked against an old one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broker_world import POLICY, BrokerWorld, own_world

pytestmark = pytest.mark.slow
ACCOUNT = "333300004444"
ALICE, BOB, CAROL = (f"{n}@example.com" for n in ("alice", "bob", "carol"))


@pytest.fixture(scope="module")
def world(tmp_path_factory, pd_certs) -> Iterator[BrokerWorld]:
    policy = POLICY.replace("444455556666", ACCOUNT)
    with own_world(
        tmp_path_factory.mktemp("reload"), pd_certs, account=ACCOUNT, policy=policy
    ) as w:
        with w.serving():
            yield w


@pytest.fixture
def team_toml(world) -> Iterator[Path]:
    path = world.broker_dir / "policies" / "team.toml"
    kept = path.read_text()
    yield path
    path.write_text(kept)


def pending(world: BrokerWorld) -> str:
    out = world.run(ALICE, "request", "prod-readonly", "--reason", "INC-7 reload", "--no-wait")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_an_approver_removed_from_the_policy_may_no_longer_approve(world, team_toml):
    rid = pending(world)
    team_toml.write_text(team_toml.read_text().replace('"bob@example.com", ', ""))
    out = world.run(BOB, "approve", rid, "--yes")
    assert out.returncode == 3, out.stderr
    assert "may not decide requests for role 'prod-readonly'" in out.stderr
    assert world.run(CAROL, "approve", rid, "--yes").returncode == 0  # still an approver


def test_a_policy_that_no_longer_loads_fails_closed_and_recovers_once_fixed(world, team_toml):
    rid = pending(world)
    good = team_toml.read_text()
    team_toml.write_text(good.replace("[roles.prod-readonly.approval]", "[roles.prod-readonly"))
    out = world.run(CAROL, "approve", rid, "--yes")
    assert out.returncode == 2, out.stderr
    assert "team.toml" in out.stderr and "Traceback" not in out.stderr
    status = world.run(ALICE, "status", rid, "--json")
    assert status.returncode == 2  # nothing answers from the old policy meanwhile
    team_toml.write_text(good)
    out = world.run(CAROL, "approve", rid, "--yes")
    assert out.returncode == 0, out.stderr

