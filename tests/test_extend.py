"""`jitctl extend`: more time on a live grant, as a request of its own (direct mode).

The extension is decided by the role's rules as they are when it is asked for (on call: at
once; else the approvers), is bounded by the role's max_total from the grant's first issue and
by an on-call shift's end, and arrives as a new session in the profile that holds the grant.
Refusals (someone else's grant, a grant not live, past max_total) are exit 3 and change nothing.
"""

from __future__ import annotations

import configparser
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from jitctl.context import Environment
from jitctl.errors import Denied
from jitctl.lifecycle.service import LocalService
from jitctl.timeutil import parse_rfc3339
from tests.conftest import FixedClock
from tests.harness import Team, existing_role, iam_keys

ALICE, BOB = "alice@example.com", "bob@example.com"
ROLE = "ext-ro"
POLICY = """
version = 1

[groups]
sre = ["bob@example.com", "carol@example.com"]

[roles.ext-ro]
arn = "arn:aws:iam::123456789012:role/IAMROLE"
max_duration = "1h"
max_total = "1h45m"
session_policy = "readonly.json"

[roles.ext-ro.on_call]
escalation_policies = ["PEPEXT"]

[roles.ext-ro.approval]
approvers = ["group:sre"]
"""
SLACK = timedelta(seconds=90)  # AWS stamps an expiry a moment after jitctl planned it


@pytest.fixture
def iam_role(moto_server) -> Iterator[str]:
    """An IAM role of this test's own in moto's shared server (revoke writes its deny there)."""
    name = f"ext-{uuid.uuid4().hex[:10]}"
    with existing_role(moto_server, name):
        yield name


@pytest.fixture
def team_policy(iam_role: str) -> str:
    return POLICY.replace("IAMROLE", iam_role)


def on_call(team: Team, person: str, hours: float = 4) -> None:
    now = datetime.now(UTC)
    end = now + timedelta(hours=hours)
    team.pd.add_oncall(team.pd_user(person), "PEPEXT", 1, start=now - timedelta(hours=1), end=end)


def run_json(team: Team, person: str, *args: str) -> dict:
    out = team.run(person, *args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def granted(team: Team, *extra: str) -> dict:
    """Alice's grant of ext-ro for 1h, on call."""
    on_call(team, ALICE)
    return run_json(team, ALICE, "request", ROLE, "--reason", "INC-1", "--duration", "1h", *extra)


def profile(team: Team, person: str, name: str) -> dict[str, str]:
    ini = configparser.RawConfigParser()
    ini.read(team.credentials_file(person))
    return dict(ini[name])


def when(doc: dict, key: str = "ends_at") -> datetime:
    return parse_rfc3339(doc[key])


def near(a: datetime, b: datetime) -> bool:
    return abs(a - b) <= SLACK


def test_an_on_call_extension_is_issued_at_once_into_the_same_profile(team: Team) -> None:
    grant = granted(team)
    first_key = profile(team, ALICE, f"jit-{ROLE}")["aws_access_key_id"]
    ext = run_json(
        team, ALICE, "extend", grant["request_id"], "--by", "30m", "--reason", "INC-1 on"
    )
    assert ext["extends"] == grant["request_id"] and ext["request_id"] != grant["request_id"]
    assert ext["status"] == "issued" and ext["approval"] == "on_call"
    new_end = when(grant) + timedelta(minutes=30)
    assert near(when(ext), new_end), (ext["ends_at"], grant["ends_at"])
    # the same profile, new keys ending later; still marked as the grant's
    written = profile(team, ALICE, f"jit-{ROLE}")
    assert written["aws_access_key_id"] != first_key
    assert written["x_jitctl_request_id"] == grant["request_id"]
    assert near(parse_rfc3339(written["x_security_token_expires"]), new_end)
    assert team.consumer_arn(ALICE, f"jit-{ROLE}").startswith("arn:aws:sts::123456789012:")
    # the grant shows its new end; `grants` lists it once
    status = run_json(team, ALICE, "status", grant["request_id"])
    assert near(when(status), new_end) and status["extensions"] == [ext["request_id"]]
    (listed,) = run_json(team, ALICE, "grants")
    assert listed["request_id"] == grant["request_id"] and near(when(listed), new_end)
    # credential-process hands out the new session
    out = team.run(ALICE, "credential-process", ROLE)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["AccessKeyId"] == written["aws_access_key_id"]
    assert near(parse_rfc3339(doc["Expiration"]), new_end)
    # audited, in an unbroken chain
    (record,) = [r for r in team.audit_records(ALICE) if r["event"] == "extended"]
    assert record["extends"] == grant["request_id"] and record["request_id"] == ext["request_id"]
    assert team.run(ALICE, "audit", "verify").returncode == 0


def test_an_extension_past_max_total_is_refused_and_changes_nothing(team: Team) -> None:
    grant = granted(team)
    rid = grant["request_id"]
    before = run_json(team, ALICE, "list")
    out = team.run(ALICE, "extend", rid, "--by", "1h", "--reason", "INC-1 more")
    assert out.returncode == 3, out.stderr
    assert "max_total" in out.stderr and "at most 45m" in out.stderr
    assert run_json(team, ALICE, "list") == before
    assert run_json(team, ALICE, "status", rid)["ends_at"] == grant["ends_at"]
    # what fits still works: 1h + 45m is the role's max_total
    ext = run_json(team, ALICE, "extend", rid, "--by", "45m", "--reason", "INC-1 more")
    assert ext["status"] == "issued"
    assert near(when(ext), when(grant) + timedelta(minutes=45))


def test_not_on_call_the_extension_waits_for_an_approver(team: Team) -> None:
    grant = granted(team, "--profile", "work")
    rid = grant["request_id"]
    team.pd.rotate(team.pd_user(BOB), "PEPEXT")  # bob takes over: alice is off call now
    out = team.run(ALICE, "extend", rid, "--by", "30m", "--reason", "INC-1 later", "--no-wait")
    assert out.returncode == 0, out.stderr
    ext_id = out.stdout.strip()
    pending = run_json(team, ALICE, "status", ext_id)
    assert pending["status"] == "pending" and pending["extends"] == rid
    assert run_json(team, ALICE, "status", rid)["ends_at"] == grant["ends_at"]
    # an approver may approve it, but not extend alice's grant themselves
    before = run_json(team, BOB, "list")
    theirs = team.run(BOB, "extend", rid, "--by", "30m", "--reason", "helping")
    assert theirs.returncode == 3 and f"belongs to {ALICE}" in theirs.stderr
    assert run_json(team, BOB, "list") == before
    approved = team.run(BOB, "approve", ext_id, "--yes")
    assert approved.returncode == 0, approved.stderr
    done = run_json(team, ALICE, "wait", ext_id)
    assert done["status"] == "issued" and done["approval"] == "peer"
    assert done["approvers"] == [BOB] and done["extends"] == rid
    written = profile(team, ALICE, "work")
    new_end = when(grant) + timedelta(minutes=30)
    assert near(parse_rfc3339(written["x_security_token_expires"]), new_end)
    assert written["x_jitctl_request_id"] == rid
    assert near(when(run_json(team, ALICE, "status", rid)), new_end)


def test_a_revoked_grant_cannot_be_extended(team: Team) -> None:
    grant = granted(team)
    rid = grant["request_id"]
    assert team.run(ALICE, "revoke", rid, "--reason", "done").returncode == 0
    before = run_json(team, ALICE, "list")
    out = team.run(ALICE, "extend", rid, "--by", "15m", "--reason", "INC-1 again")
    assert out.returncode == 3 and "not live (revoked)" in out.stderr, out.stderr
    assert run_json(team, ALICE, "list") == before


# ------------------------------------------------------------------ in-process, on a set clock


def service(team: Team, monkeypatch, clock: FixedClock) -> LocalService:
    """Alice's LocalService on ``clock``, with her keys and files (boto3 reads the process env)."""
    env = team.env(ALICE) | iam_keys(team.moto, ALICE)
    for key, value in env.items():
        if key.startswith(("AWS_", "JITCTL_", "XDG_")) or key == "HOME":
            monkeypatch.setenv(key, value)
    return LocalService(Environment(environ=env, clock=clock))


def test_an_expired_grant_cannot_be_extended(team: Team, monkeypatch) -> None:
    clock = FixedClock(datetime.now(UTC))
    on_call(team, ALICE)
    local = service(team, monkeypatch, clock)
    grant = local.request(ROLE, "INC-2", timedelta(minutes=30)).request
    clock.advance(31 * 60)
    with pytest.raises(Denied, match="not live \\(expired\\)"):
        local.extend(grant.request_id, timedelta(minutes=15), "INC-2 more")
    assert [
        r.request_id for r in local.list(pending_only=False, mine=True, role=None, limit=9)
    ] == [grant.request_id]


def test_the_on_call_shift_bounds_an_on_call_extension(team: Team, monkeypatch) -> None:
    clock = FixedClock(datetime.now(UTC))
    on_call(team, ALICE, hours=70 / 60)  # the shift ends 10 minutes after the grant would
    local = service(team, monkeypatch, clock)
    grant = local.request(ROLE, "INC-3", timedelta(hours=1)).request
    outcome = local.extend(grant.request_id, timedelta(minutes=45), "INC-3 more")
    assert outcome.issued is not None
    shift_end = clock.now() + timedelta(minutes=70)
    assert near(outcome.issued.credentials.expiration, shift_end)
    assert any("on-call shift" in note for note in outcome.issued.notes)
    assert near(local.get(grant.request_id).extended_until, shift_end)


def pending_extension(team: Team, rid: str, by: str) -> str:
    out = team.run(ALICE, "extend", rid, "--by", by, "--reason", "INC-4 more", "--no-wait")
    assert out.returncode == 0, out.stderr
    ext_id = out.stdout.strip()
    assert team.run(BOB, "approve", ext_id, "--yes").returncode == 0
    return ext_id


def test_max_total_is_checked_again_when_an_extension_takes_effect(team: Team) -> None:
    """Two extensions that each fit when asked for: the second would pass max_total once the
    first has taken effect, and is refused then (exit 3)."""
    rid = granted(team)["request_id"]
    team.pd.rotate(team.pd_user(BOB), "PEPEXT")
    first, second = pending_extension(team, rid, "45m"), pending_extension(team, rid, "45m")
    assert team.run(ALICE, "wait", first).returncode == 0
    out = team.run(ALICE, "wait", second)
    assert out.returncode == 3 and "no later than grant" in out.stderr, out.stderr
    assert run_json(team, ALICE, "status", second)["status"] == "approved"
    assert run_json(team, ALICE, "status", rid)["extensions"] == [first]


def test_a_grant_revoked_while_its_extension_waits_is_not_extended(team: Team) -> None:
    rid = granted(team)["request_id"]
    team.pd.rotate(team.pd_user(BOB), "PEPEXT")
    ext_id = pending_extension(team, rid, "30m")
    assert team.run(ALICE, "revoke", rid, "--reason", "done early").returncode == 0
    out = team.run(ALICE, "wait", ext_id)
    assert out.returncode == 3 and "not live (revoked)" in out.stderr, out.stderr
    assert run_json(team, ALICE, "status", ext_id)["status"] == "approved"  # never issued


def test_max_total_below_max_duration_is_a_policy_error(team: Team) -> None:
    limits = run_json(team, ALICE, "policy", "explain", ROLE)["limits"]
    assert limits["max_total"] == "1h45m" and limits["max_total_seconds"] == 6300
    policy = team.policy_dir / "team.toml"
    policy.write_text(policy.read_text().replace('max_total = "1h45m"', 'max_total = "45m"'))
    out = team.run(ALICE, "policy", "validate")
    assert out.returncode == 2, out.stderr
    assert "max_total 45m is shorter than max_duration 1h" in out.stdout + out.stderr


def test_the_store_extends_only_a_grant_still_issued(team: Team, monkeypatch) -> None:
    """The last guard of an extension racing a revocation: the grant's new end is recorded
    only while it is issued, else its new credentials are never handed out."""
    from jitctl.store.base import TransitionError

    on_call(team, ALICE)
    local = service(team, monkeypatch, FixedClock(datetime.now(UTC)))
    rid = local.request(ROLE, "INC-5", timedelta(minutes=30)).request.request_id
    local.revoke(rid, "done")
    until = datetime.now(UTC) + timedelta(hours=1)
    with pytest.raises(TransitionError, match="revoked, not issued"):
        local.env.store.mark_extended(rid, extension="r-later", until=until)
    assert local.get(rid).extended_until is None


def test_the_new_session_keeps_the_grants_policy_identity_and_tags(team: Team, monkeypatch) -> None:
    """What botocore sends (moto ignores SourceIdentity and tags): the extension's AssumeRole
    is the grant's, tagged with the grant it extends; the old session is left alone."""
    on_call(team, ALICE)
    local = service(team, monkeypatch, FixedClock(datetime.now(UTC)))
    sent: list[dict] = []
    local.env.aws.client("sts").meta.events.register(
        "provide-client-params.sts.AssumeRole", lambda params, **_: sent.append(dict(params))
    )
    grant = local.request(ROLE, "INC-6", timedelta(minutes=30)).request
    ext = local.extend(grant.request_id, timedelta(minutes=30), "INC-6 more").issued.request
    first, second = sent
    for key in ("RoleArn", "RoleSessionName", "SourceIdentity", "Policy"):
        assert second[key] == first[key], key
    tags = [{t["Key"]: t["Value"] for t in params["Tags"]} for params in sent]
    assert tags[1].pop("jitctl:extends") == grant.request_id and "jitctl:extends" not in tags[0]
    assert tags[1].pop("jitctl:request-id") == ext.request_id
    assert tags[0].pop("jitctl:request-id") == grant.request_id
    assert {k: v for k, v in tags[1].items() if k != "jitctl:issue"} == {
        k: v for k, v in tags[0].items() if k != "jitctl:issue"
    }
    assert abs(second["DurationSeconds"] - 3600) <= 90  # 30m left + 30m more
    events = [r["event"] for r in team.audit_records(ALICE)]
    assert "cut_off" not in events and "revoked" not in events  # the old session runs on
