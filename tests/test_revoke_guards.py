"""Revocation's side effects that guard nothing in AWS but tell people: the approvers'
channel hears of a revocation once, from the revoker, and a second `revoke` (which re-asserts
the deny) does not announce it again. The roles, the team acting as bob and the issued
request are tests/test_revoke.py's; the webhook is conftest's receiver.
"""

from __future__ import annotations

import pytest

from tests import test_revoke as revoking
from tests.conftest import notify_to

# That module's fixtures: roles of this test's own in moto, and the team acting as bob.
role_uid = revoking.role_uid
team_policy = revoking.team_policy
team = revoking.team


def revoked_posts(webhook) -> list[dict]:
    return [p for p in webhook.posts if "revoked" in str(p)]


def test_a_revocation_is_announced_once_by_its_revoker(team, webhook):
    from jitctl.revocation.revoke import revoke

    notify_to(team, webhook)
    env = revoking.env_at(team, revoking.NOW)
    rid = revoking.issued(env, revoking.ALICE)
    done = revoke(env, rid, reason="the incident is over", settle=0)
    assert not done.already_revoked
    (post,) = revoked_posts(webhook)
    assert rid in str(post) and revoking.BOB in str(post) and "the incident is over" in str(post)
    again = revoke(env, rid, reason="once more", settle=0)
    assert again.already_revoked
    assert len(revoked_posts(webhook)) == 1


def test_a_revocation_not_in_force_says_when_the_grant_was_issued(team):
    """Someone deletes the deny right after it is written: the error says which grant is
    still live (its issue time), not the cutoff a new grant would need."""
    from jitctl.aws import AwsClients
    from jitctl.context import Environment
    from jitctl.revocation.revoke import RevocationNotInForce, revoke
    from jitctl.timeutil import rfc3339
    from tests.conftest import FixedClock

    class Clients(AwsClients):
        def client(self, service, *, region=None):
            real = super().client(service, region=region)
            return revoking.RemovedBehindOurBack(real, team.ro_name) if service == "iam" else real

    clients = Clients()
    env = Environment(
        environ=team.env(revoking.BOB),
        clock=FixedClock(revoking.NOW),
        aws_factory=lambda: clients,
    )
    rid = revoking.issued(env, revoking.ALICE)
    issued_at = env.store.get(rid).issued_at
    with pytest.raises(RevocationNotInForce) as info:
        revoke(env, rid, reason="gone again", settle=0)
    assert f"the grant was issued at {rfc3339(issued_at)}" in info.value.message


def test_revoking_again_once_every_session_has_expired_writes_nothing(team):
    """A second revoke re-asserts the first one's cutoff. Exactly 12 hours (the longest
    session) after that cutoff every session it covered has ended: nothing is written."""
    from datetime import timedelta

    from jitctl.revocation.policy import MAX_SESSION
    from jitctl.revocation.revoke import revoke

    env = revoking.env_at(team, revoking.NOW)
    rid = revoking.issued(env, revoking.ALICE)
    first = revoke(env, rid, reason="done", settle=0)
    assert first.statement_written
    just_before = revoke(
        revoking.env_at(team, first.cutoff + MAX_SESSION - timedelta(seconds=1)),
        rid,
        reason="still",
        settle=0,
    )
    assert just_before.already_revoked and "nothing to deny" not in " ".join(just_before.notes)
    at_the_end = revoke(
        revoking.env_at(team, first.cutoff + MAX_SESSION), rid, reason="again", settle=0
    )
    assert at_the_end.already_revoked and not at_the_end.statement_written
    assert "nothing to deny" in " ".join(at_the_end.notes)
