"""Break-glass: issued at once with a capped duration, loudly (webhook, audit), and reviewed
afterwards by an approver who is not the requester. The installed CLI per person against
moto's server and the PagerDuty simulator; a local webhook receiver stands for the channel."""

from __future__ import annotations

import json
import textwrap
import uuid
from datetime import datetime

import pytest

from jitctl.policy.load import check_policy
from tests.conftest import notify_to
from tests.harness import Team
from tests.world import ALICE, BOB, CAROL, DAVE

POLICY = """
version = 1

[groups]
sre = ["bob@example.com", "carol@example.com"]

[roles.prod-admin]
arn = "arn:aws:iam::123456789012:role/prod-admin"
max_duration = "2h"

[roles.prod-admin.approval]
approvers = ["group:sre"]

[roles.prod-admin.break_glass]
max_duration = "30m"

[roles.prod-readonly]
arn = "arn:aws:iam::123456789012:role/prod-readonly"

[roles.prod-readonly.approval]
approvers = ["group:sre"]
"""


@pytest.fixture
def team_policy() -> str:
    return POLICY


@pytest.fixture(params=["sqlite", "dynamodb"])
def team(request, team, webhook) -> Team:
    """Both store backends keep the review; the channel is the local webhook receiver."""
    if request.param == "dynamodb":
        team.use_store(f'[store]\nbackend = "dynamodb"\ntable = "jitctl-{uuid.uuid4().hex[:8]}"\n')
    notify_to(team, webhook)
    if request.param == "dynamodb":
        assert team.run(ALICE, "init").returncode == 0
    return team


def break_glass(team: Team, *extra: str) -> dict:
    out = team.run(
        ALICE, "request", "prod-admin", "--break-glass", "--reason", "INC-1 db down", "--json",
        *extra,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_break_glass_issues_at_once_capped_and_tells_every_approver(team, webhook):
    doc = break_glass(team, "--duration", "1h")
    assert doc["status"] == "issued" and doc["approval"] == "break_glass"
    assert doc["review"] == "unreviewed" and doc["approvers"] == []
    assert doc["duration_seconds"] == 1800  # capped to break_glass.max_duration, and said so
    assert any("at most 30m" in note for note in doc["notes"])
    issued = datetime.fromisoformat(doc["issued_at"])
    expires = datetime.fromisoformat(doc["credentials_expire_at"])
    assert 1790 <= (expires - issued).total_seconds() <= 1810
    assert team.consumer_arn(ALICE, "jit-prod-admin").endswith("assumed-role/prod-admin/" + ALICE)

    (post,) = webhook.posts
    assert "BREAK-GLASS" in post["text"] and f"jitctl review {doc['request_id']}" in post["text"]
    assert BOB in post["text"] and CAROL in post["text"]
    records = {r["event"]: r for r in team.audit_records(ALICE)}
    assert list(records) == ["requested", "auto_approved", "break_glass", "issued"]
    assert records["requested"]["break_glass"] is True
    assert records["auto_approved"]["approval"] == "break_glass"
    assert records["requested"]["duration_seconds"] == 3600  # asked; granted 1800
    assert records["auto_approved"]["duration_seconds"] == 1800
    assert records["break_glass"]["notified"] == [BOB, CAROL]
    assert records["issued"]["approval"] == "break_glass"


def test_break_glass_for_exactly_its_cap_is_not_said_to_be_cut(team):
    """30m asked, 30m allowed: granted as asked, with no note that it was cut."""
    doc = break_glass(team, "--duration", "30m")
    assert doc["duration_seconds"] == 1800
    assert not any("at most" in note for note in doc["notes"]), doc["notes"]


def test_review_is_refused_to_the_requester_and_done_by_an_approver(team):
    rid = break_glass(team)["request_id"]
    own = team.run(ALICE, "review", rid, "--reason", "all fine")
    assert own.returncode == 3, own.stderr
    assert "someone else must review it" in own.stderr and "Traceback" not in own.stderr
    assert f"approvers: {BOB}, {CAROL}" in own.stderr  # who can review it instead
    stranger = team.run(DAVE, "review", rid)
    assert stranger.returncode == 3 and "may not review" in stranger.stderr

    waiting = team.run(BOB, "list", "--unreviewed", "--json")
    assert [r["request_id"] for r in json.loads(waiting.stdout)] == [rid]
    doctor = json.loads(team.run(BOB, "doctor", "--json").stdout)
    (check,) = [c for c in doctor["checks"] if c["name"] == "break-glass review"]
    assert check["status"] == "warn" and rid in check["detail"]

    out = team.run(BOB, "review", rid, "--reason", "checked CloudTrail", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["review"] == "reviewed" and doc["reviewed_by"] == BOB
    assert doc["review_reason"] == "checked CloudTrail"
    stored = json.loads(team.run(CAROL, "status", rid, "--json").stdout)
    assert stored["review"] == "reviewed" and stored["reviewed_at"]
    (record,) = team.audit_records(BOB)
    assert record["event"] == "reviewed" and record["request_id"] == rid
    assert json.loads(team.run(BOB, "list", "--unreviewed", "--json").stdout) == []
    doctor = json.loads(team.run(BOB, "doctor", "--json").stdout)
    (check,) = [c for c in doctor["checks"] if c["name"] == "break-glass review"]
    assert check["status"] == "pass"
    again = team.run(CAROL, "review", rid)
    assert again.returncode == 2 and "already reviewed by bob@example.com" in again.stderr


def test_a_role_without_break_glass_refuses_it(team, webhook):
    out = team.run(ALICE, "request", "prod-readonly", "--break-glass", "--reason", "INC-2")
    assert out.returncode == 3
    assert out.stderr.count("\n") <= 2 and "does not allow --break-glass" in out.stderr
    assert not team.credentials_file(ALICE).exists() and webhook.posts == []
    records = team.audit_records(ALICE)  # the attempt is on the record
    assert [r["event"] for r in records] == ["requested", "denied"]
    assert records[0]["break_glass"] is True and "break-glass" in records[1]["why"]
    assert json.loads(team.run(BOB, "list", "--json").stdout) == []


def test_only_break_glass_grants_are_reviewed(team):
    out = team.run(ALICE, "request", "prod-admin", "--reason", "INC-3", "--no-wait")
    assert out.returncode == 0, out.stderr
    refused = team.run(BOB, "review", out.stdout.strip())
    assert refused.returncode == 2 and "not a break-glass grant" in refused.stderr


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ('max_duration = "30m"', "needs an approval table"),
        ('max_duraton = "30m"', "unknown key"),
        ('max_duration = "5m"', "max_duration must be between 15m and 12h"),
    ],
)
def test_break_glass_policy_mistakes_name_the_line(tmp_path, change, problem):
    text = textwrap.dedent(POLICY).replace('max_duration = "30m"', change)
    if problem.startswith("needs"):
        text = text.replace('[roles.prod-admin.approval]\napprovers = ["group:sre"]\n', "")
    file = tmp_path / "p.toml"
    file.write_text(text)
    (error,) = check_policy(file).errors
    assert f"{file}:" in str(error) and "break_glass" in str(error)
    assert problem in str(error).lower() or problem in str(error)


# ------------------------------------------------------------------ through the broker

BROKER_ACCOUNT = "777788889999"  # a world of its own: moto's state is shared per process
BROKER_POLICY = """
version = 1

[groups]
sre = ["bob@example.com"]

[roles.prod-admin]
arn = "arn:aws:iam::777788889999:role/jit-prod-admin"
max_duration = "2h"

[roles.prod-admin.approval]
approvers = ["group:sre", "oncall:PEPSEC"]

[roles.prod-admin.break_glass]
max_duration = "30m"
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory, pd_certs):
    """A broker over its own moto server and PagerDuty simulator; requesters hold no AWS
    permissions and the role trusts the broker alone."""
    from tests.broker_world import own_world, trust_broker_only

    root = tmp_path_factory.mktemp("broker-glass")
    with own_world(root, pd_certs, account=BROKER_ACCOUNT, policy=BROKER_POLICY) as w:
        w.iam.create_role(
            RoleName="jit-prod-admin", AssumeRolePolicyDocument=trust_broker_only(w.broker_arn)
        )
        with w.serving():
            yield w


@pytest.mark.slow
def test_on_call_approval_break_glass_and_review_through_the_broker(world, enforcing):
    world.pd.rotate(world.pd_ids[CAROL], "PEPSEC")  # carol approves by being on call
    out = world.run(ALICE, "request", "prod-admin", "--reason", "INC-4 replica", "--no-wait")
    assert out.returncode == 0, out.stderr
    rid = out.stdout.strip()
    assert CAROL in out.stderr  # the pending message names who is on call now
    approved = world.run(CAROL, "approve", rid, "--yes")
    assert approved.returncode == 0, approved.stderr
    issued = world.run(ALICE, "wait", rid, "--json")
    assert issued.returncode == 0, issued.stderr
    assert json.loads(issued.stdout)["approvers"] == [CAROL]

    glass = world.run(
        ALICE, "request", "prod-admin", "--break-glass", "--reason", "INC-5 outage", "--json"
    )
    assert glass.returncode == 0, glass.stderr
    doc = json.loads(glass.stdout)
    assert doc["approval"] == "break_glass" and doc["review"] == "unreviewed"
    assert doc["duration_seconds"] == 1800
    own = world.run(ALICE, "review", doc["request_id"])
    assert own.returncode == 3, own.stderr
    waiting = json.loads(world.run(BOB, "list", "--unreviewed", "--json").stdout)
    assert [r["request_id"] for r in waiting] == [doc["request_id"]]
    done = world.run(BOB, "review", doc["request_id"], "--reason", "seen", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["reviewed_by"] == BOB
    trail = world.run(BOB, "audit", "log", "--request", doc["request_id"], "--json")
    events = [r["event"] for r in json.loads(trail.stdout)]
    assert {"break_glass", "issued", "reviewed"} <= set(events)
