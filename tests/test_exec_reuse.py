"""`jitctl exec ROLE` reuses your cached grant for ROLE while it has 5+ minutes left (audited as
``reused``, not a new request); `--fresh` requests anew; a grant that is not live, not yours or
about to end is never reused. Broker mode: the broker checks the grant and writes the record."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jitctl.context import Environment
from jitctl.credentials.reuse import reuse_cached
from jitctl.wiring import choose_service
from tests.conftest import FixedClock
from tests.harness import Team, own_role_team

ALICE, BOB = "alice@example.com", "bob@example.com"
SHOW_KEY = "import os; print(os.environ['AWS_ACCESS_KEY_ID'])"


@pytest.fixture
def team(tmp_path, moto_server, pd_sim) -> Team:
    """The harness team over an IAM role of this test's own (revoke writes a deny policy on
    it), with Alice on call."""
    team = own_role_team(tmp_path, moto_server, pd_sim, "reuse")
    team.on_call(ALICE, 3)
    return team


def exec_key(team: Team, *flags: str, user: str = ALICE):
    """Run `jitctl exec` printing the child's access key id; (key, completed process)."""
    out = team.run(
        user,
        "exec",
        "prod-readonly",
        "--reason",
        "INC-9",
        *flags,
        "--",
        sys.executable,
        "-c",
        SHOW_KEY,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip(), out


def events(team: Team, user: str = ALICE) -> list[tuple[str, str]]:
    return [(r["event"], r["request_id"]) for r in team.audit_records(user)]


def requests_of(team: Team, user: str = ALICE) -> list[str]:
    out = team.run(user, "list", "--mine", "--json")
    return [r["request_id"] for r in json.loads(out.stdout)]


def test_a_second_exec_reuses_the_grant_and_the_audit_says_so(team):
    first, _ = exec_key(team)
    (rid,) = requests_of(team)
    second, out = exec_key(team)
    assert second == first and requests_of(team) == [rid]  # no new request
    assert f"reusing grant {rid}" in out.stderr
    assert events(team)[-1] == ("reused", rid)
    assert [e for e, _ in events(team)].count("requested") == 1
    record = team.audit_records(ALICE)[-1]
    assert record["person"] == ALICE and record["actor"].endswith(f"user/{ALICE}")


def test_fresh_requests_anew_and_the_next_exec_reuses_the_newer_grant(team):
    first, _ = exec_key(team)
    fresh, _ = exec_key(team, "--fresh")
    assert fresh != first and len(requests_of(team)) == 2
    again, _ = exec_key(team)
    assert again == fresh and events(team)[-1][0] == "reused"


def test_a_grant_revoked_by_an_approver_is_not_reused(team):
    """Bob (an approver) revokes Alice's grant; her local cache still holds it, but it is
    dead in AWS: exec must ask for a new one instead of handing the child dead keys."""
    first, _ = exec_key(team)
    (rid,) = requests_of(team)
    done = team.run(BOB, "revoke", rid, "--reason", "rotate")
    assert done.returncode == 0, done.stderr
    second, out = exec_key(team)
    assert second != first and "not reusing" in out.stderr
    assert ("reused", rid) not in events(team)
    assert len(requests_of(team)) == 2


def test_a_request_grant_is_reused_by_exec(team):
    done = team.run(ALICE, "request", "prod-readonly", "--reason", "INC-9", "--json")
    assert done.returncode == 0, done.stderr
    rid = json.loads(done.stdout)["request_id"]
    exec_key(team)
    assert requests_of(team) == [rid] and events(team)[-1] == ("reused", rid)


def env_for(team: Team, user: str, monkeypatch, now: datetime | None = None) -> Environment:
    return team.act_as(monkeypatch, user, FixedClock(now or datetime.now(UTC)))


def test_a_grant_with_under_5_minutes_left_is_not_reused(team, monkeypatch):
    exec_key(team)
    env = env_for(team, ALICE, monkeypatch)
    cached = env.credential_cache.load("prod-readonly")
    assert cached is not None
    grant, why = reuse_cached(env, "prod-readonly")
    assert grant is not None and why is None
    late = env_for(team, ALICE, monkeypatch, cached.creds.expiration - timedelta(minutes=4))
    grant, why = reuse_cached(late, "prod-readonly")
    assert grant is None and "under" in why
    assert [e for e, _ in events(team)].count("reused") == 1  # only the live check audited


def test_another_persons_cached_grant_is_not_theirs_to_use(team, monkeypatch):
    """Bob runs exec as the same OS user where Alice's grant is cached (a shared jump host):
    the cache is keyed by who AWS says the caller is, so he finds nothing to reuse, and even a
    record planted in his own slot is refused by the core; nothing is recorded as a use."""
    from keyring.backends import fail

    from jitctl.credentials.cache import CredentialCache

    exec_key(team)
    alices = env_for(team, ALICE, monkeypatch).credential_cache.load("prod-readonly")
    assert alices is not None
    shared = team.env(ALICE)["JITCTL_CACHE_DIR"]
    env_for(team, BOB, monkeypatch)  # boto3 acts as Bob
    env = Environment(service_factory=choose_service, environ={**team.env(BOB), "JITCTL_CACHE_DIR": shared})
    assert env.credential_cache.load("prod-readonly") is None
    assert reuse_cached(env, "prod-readonly") == (None, None)
    owner = env.credential_cache.owner
    planted = CredentialCache(owner, fail.Keyring(), cache_dir=Path(shared))
    planted.store("prod-readonly", alices.creds, alices.request_id, person=ALICE)
    grant, why = reuse_cached(env, "prod-readonly")
    assert grant is None and "belongs to alice@example.com" in why
    assert "reused" not in [e for e, _ in events(team)]


def test_credential_process_answers_the_caller_under_the_config_and_nobody_else(team):
    """One OS account, one cache directory: Alice's grant goes to Alice under the config it
    was issued under; Bob, another config, or no config at all get nothing."""
    key, _ = exec_key(team)
    shared = team.env(ALICE)["JITCTL_CACHE_DIR"]
    out = team.run(ALICE, "credential-process", "prod-readonly")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["AccessKeyId"] == key
    bob = team.run(
        BOB, "credential-process", "prod-readonly", env=team.env(BOB, JITCTL_CACHE_DIR=shared)
    )
    assert bob.returncode == 4 and key not in bob.stdout, bob.stderr
    other = team.root / "other.toml"
    other.write_text(team.config.read_text().replace("requests.db", "other.db"))
    moved = team.run(
        ALICE, "credential-process", "prod-readonly", env=team.env(ALICE, JITCTL_CONFIG=str(other))
    )
    assert moved.returncode == 4 and key not in moved.stdout, moved.stderr
    bare = {k: v for k, v in team.env(ALICE).items() if k != "JITCTL_CONFIG"}
    none = team.run(ALICE, "credential-process", "prod-readonly", env=bare)
    assert none.returncode == 2 and key not in none.stdout
    assert "no jitctl config" in none.stderr and "Traceback" not in none.stderr


def test_request_reuses_the_live_grant_unless_fresh(team):
    """Issue 21 item 12: `request` hands out the live grant again (a new profile or an env
    form of it) instead of a new one; --fresh, --break-glass and --incident ask anew."""
    exec_key(team)
    (rid,) = requests_of(team)
    again = team.run(ALICE, "request", "prod-readonly", "--reason", "INC-12", "--no-wait")
    assert again.returncode == 0, again.stderr
    assert again.stdout == rid + "\n" and f"reusing grant {rid}" in again.stderr
    assert requests_of(team) == [rid] and events(team)[-1] == ("reused", rid)
    env = team.run(ALICE, "request", "prod-readonly", "--reason", "x", "--format", "env")
    assert env.returncode == 0 and "AWS_SESSION_TOKEN" in env.stdout and requests_of(team) == [rid]
    longer = team.run(ALICE, "request", "prod-readonly", "--reason", "x", "--duration", "2h")
    assert longer.returncode == 0 and "has under the 2h asked" in longer.stderr
    fresh = team.run(ALICE, "request", "prod-readonly", "--reason", "INC-12", "--fresh")
    assert fresh.returncode == 0 and len(requests_of(team)) == 3


def test_a_reuse_records_the_reason_given_for_it(team):
    """Issue 21 item 5: the `reused` record says why this use happened."""
    exec_key(team)
    (rid,) = requests_of(team)
    exec_key(team, "--reason", "INC-9 other")
    [*_, reused] = team.audit_records(ALICE)
    assert (reused["event"], reused["request_id"], reused["reason"]) == (
        "reused",
        rid,
        "INC-9 other",
    )
