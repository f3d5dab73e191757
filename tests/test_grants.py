"""Live grants are derived when read: expiry and revocation cutoffs, never a stored flag."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from jitctl.lifecycle.grants import live
from jitctl.models import AccessRequest

NOW = datetime(2026, 11, 28, 4, 0, tzinfo=UTC)
ALICE = "alice@example.com"


def grant(rid: str, *, issued_ago: int, lasts: int, role: str = "prod-readonly", **kw):
    issued = NOW - timedelta(minutes=issued_ago)
    return AccessRequest(
        request_id=rid,
        role=role,
        requester=kw.pop("requester", ALICE),
        requester_arn="arn:aws:iam::123456789012:user/alice@example.com",
        reason="INC-1",
        duration_seconds=3600,
        status=kw.pop("status", "issued"),
        created_at=issued,
        expires_at=issued + timedelta(minutes=30),
        issued_at=issued,
        credentials_expire_at=issued + timedelta(minutes=lasts),
        **kw,
    )


def test_expired_grants_are_not_live():
    fresh, old = grant("r-fresh", issued_ago=10, lasts=60), grant("r-old", issued_ago=90, lasts=60)
    assert [r.request_id for r in live([fresh, old], NOW)] == ["r-fresh"]


def test_a_revocation_ends_the_persons_earlier_grants_on_that_role_only():
    earlier = grant("r-earlier", issued_ago=20, lasts=60)
    revoked = grant(
        "r-revoked",
        issued_ago=15,
        lasts=60,
        status="revoked",
        revoked_at=NOW - timedelta(minutes=5),
    )
    later = grant("r-later", issued_ago=2, lasts=60)
    other_role = grant("r-admin", issued_ago=20, lasts=60, role="prod-admin")
    other_person = grant("r-bob", issued_ago=20, lasts=60, requester="bob@example.com")
    got = live([earlier, revoked, later, other_role, other_person], NOW)
    assert {r.request_id for r in got} == {"r-later", "r-admin", "r-bob"}


def test_jitctl_grants_lists_live_grants_and_says_so_when_none(tmp_path, moto_server, pd_sim):

    from tests.harness import own_role_team

    team = own_role_team(tmp_path, moto_server, pd_sim, "grants")
    empty = team.run(ALICE, "grants")
    assert empty.returncode == 0 and "no live grants" in empty.stderr
    team.on_call(ALICE, 3)
    done = team.run(ALICE, "request", "prod-readonly", "--reason", "INC-5", "--json")
    assert done.returncode == 0, done.stderr
    rid = json.loads(done.stdout)["request_id"]
    out = team.run(ALICE, "grants", "--json")
    assert out.returncode == 0, out.stderr
    (row,) = json.loads(out.stdout)
    assert row["request_id"] == rid and row["approval"] == "on_call"
    assert 0 < row["ends_in_seconds"] <= 3600 and row["ends_at"] == row["credentials_expire_at"]
    revoked = team.run(ALICE, "revoke", rid, "--reason", "done")
    assert revoked.returncode == 0, revoked.stderr
    assert json.loads(team.run(ALICE, "grants", "--json").stdout) == []
