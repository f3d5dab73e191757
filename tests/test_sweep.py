"""`jitctl sweep`: grants tied to an incident end when it resolves (end_with_incident), the
same way `jitctl revoke` ends them, in direct mode and through the broker; and only then."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from jitctl import models
from jitctl.errors import ExitCode
from jitctl.lifecycle import flow
from jitctl.lifecycle.service import LocalService
from jitctl.lifecycle.sweep import sweep
from jitctl.revocation.policy import POLICY_NAME
from tests import incident_world
from tests.incident_world import ALICE, BOB, CAROL, OTHER, SERVICE, act_as
from tests.world import export

role_uid, team_policy, team = (
    incident_world.role_uid,
    incident_world.team_policy,
    incident_world.team,
)


def fast_tracked(team, monkeypatch) -> tuple[str, str]:
    """Alice works an incident on PSVC1 and gets prod-incident at once: (request, incident)."""
    inc = team.pd.incidents.add(SERVICE, "db down", assigned=(team.pd_user(ALICE),))
    out = LocalService(act_as(monkeypatch, team, ALICE)).request("prod-incident", "INC-1", None)
    assert out.issued is not None and out.issued.request.approval == models.INCIDENT
    return out.issued.request.request_id, inc


def revocations(team, role_uid: str) -> dict:
    iam = team.admin_client("iam")
    try:
        doc = iam.get_role_policy(RoleName=f"inc-{role_uid}", PolicyName=POLICY_NAME)
    except iam.exceptions.NoSuchEntityException:
        return {}
    return doc["PolicyDocument"]


def test_sweep_revokes_after_the_incident_resolves_and_only_then(team, monkeypatch, role_uid):
    request_id, inc = fast_tracked(team, monkeypatch)
    env = act_as(monkeypatch, team, CAROL)  # the operator's scheduled run
    report = sweep(env)
    assert not report.revoked and not report.problems
    assert env.store.get(request_id).status == models.ISSUED and not revocations(team, role_uid)
    team.pd.incidents.set_status(inc, "acknowledged")
    assert not sweep(env).revoked  # acknowledged is still open
    team.pd.incidents.set_status(inc, "resolved")
    report = sweep(env)
    assert report.revoked == [{"request_id": request_id, "incident": inc}]
    req = env.store.get(request_id)
    assert req.status == models.REVOKED and req.revoked_by == "pagerduty"
    assert inc in req.revoked_reason and "resolved" in req.revoked_reason
    statement = revocations(team, role_uid)["Statement"][0]
    assert statement["Effect"] == "Deny"
    assert json.dumps(statement).count("alice") >= 1  # the requester's SourceIdentity
    [record] = [r for r in team.audit_records(CAROL) if r["event"] == "revoked"]
    assert record["actor"] == "pagerduty" and record["incident"]["id"] == inc
    assert record["run_by"].endswith(f"user/{CAROL}") and record["request_id"] == request_id
    granted, revoked = team.pd.incidents.notes_of(inc)
    assert "was granted" in granted and "was revoked by pagerduty" in revoked
    assert request_id in revoked
    assert not sweep(env).revoked  # once


def test_a_grant_tied_without_end_with_incident_outlives_it(team, monkeypatch):
    inc = team.pd.incidents.add(OTHER, "cache", assigned=(team.pd_user(ALICE),))
    env = act_as(monkeypatch, team, ALICE)
    req = flow.submit(env, role_name="prod-readonly", reason="x", duration=None, incident=inc)
    assert req.request.incident["end_with_incident"] is False
    LocalService(act_as(monkeypatch, team, BOB)).approve(req.request.request_id, None)
    LocalService(act_as(monkeypatch, team, ALICE)).issue(req.request.request_id)
    team.pd.incidents.set_status(inc, "resolved")
    assert not sweep(act_as(monkeypatch, team, CAROL)).revoked


def test_a_requester_who_rewrites_the_stored_flag_is_still_cut_off(team, monkeypatch):
    """Direct mode: the store is the requester's to write. The policy decides, not the record."""
    import sqlite3

    request_id, inc = fast_tracked(team, monkeypatch)
    db = sqlite3.connect(team.root / "requests.db")
    query = "SELECT body FROM requests WHERE request_id = ?"
    body = json.loads(db.execute(query, (request_id,)).fetchone()[0])
    body["incident"]["end_with_incident"] = False
    db.execute("UPDATE requests SET body = ? WHERE request_id = ?", (json.dumps(body), request_id))
    db.commit()
    db.close()
    team.pd.incidents.set_status(inc, "resolved")
    assert sweep(act_as(monkeypatch, team, CAROL)).revoked == [
        {"request_id": request_id, "incident": inc}
    ]


def test_pagerduty_down_revokes_nothing_and_the_cli_exits_5(team, monkeypatch):
    request_id, inc = fast_tracked(team, monkeypatch)
    team.pd.incidents.set_status(inc, "resolved")
    team.pd.fail_next(500, count=3, path=f"/incidents/{inc}")  # each attempt of one run
    out = team.run(CAROL, "sweep", "--json")
    assert out.returncode == ExitCode.UNAVAILABLE, out.stderr
    doc = json.loads(out.stdout)
    assert not doc["revoked"] and any("500" in p for p in doc["problems"])
    out = team.run(CAROL, "sweep", "--json")  # PagerDuty back: the next run finishes it
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["revoked"] == [{"request_id": request_id, "incident": inc}]
    assert "Traceback" not in out.stderr


# ------------------------------------------------------------------ through the broker

SWEEP_ACCOUNT = "555566667777"


@pytest.fixture(scope="module")
def world(tmp_path_factory, pd_certs) -> Iterator:
    """test_broker_e2e's world, with prod-readonly also on the incident fast track."""
    from tests.broker_world import own_world

    # An account of its own: test_broker_e2e's world lives in this process's moto state too.
    with own_world(tmp_path_factory.mktemp("broker"), pd_certs, account=SWEEP_ACCOUNT) as w:
        w.pd.add_service(SERVICE, "PEP9")
        policy = w.broker_dir / "policies" / "team.toml"
        policy.write_text(
            policy.read_text()
            + '\n[roles.prod-readonly.incident]\nservices = ["PSVC1"]\nend_with_incident = true\n'
        )
        with w.serving():
            yield w


@pytest.mark.slow
def test_incident_fast_track_and_sweep_through_the_broker(world, enforcing):
    inc = world.pd.incidents.add(SERVICE, "db down", assigned=(world.pd_ids[ALICE],))
    out = world.run(ALICE, "request", "prod-readonly", "--reason", "INC-2", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["approval"] == "incident" and doc["incident"]["id"] == inc
    out = world.run(BOB, "sweep", "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["revoked"] == [], out.stderr
    world.pd.incidents.set_status(inc, "resolved")
    out = world.run(BOB, "sweep", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["revoked"] == [{"request_id": doc["request_id"], "incident": inc}]
    status = json.loads(world.run(ALICE, "status", doc["request_id"], "--json").stdout)
    assert status["status"] == "revoked" and status["revoked_by"] == "pagerduty"
    shown = world.run(ALICE, "status", doc["request_id"]).stdout
    assert re.search(rf"incident\s+{inc} #1 db down \(access ends with it\)", shown), shown
    broker_log = world.broker_dir / "audit.jsonl"
    records = [json.loads(line) for line in broker_log.read_text().splitlines()]
    [revoked] = [r for r in records if r["event"] == "revoked"]
    assert revoked["actor"] == "pagerduty" and revoked["incident"]["id"] == inc
    assert len(world.pd.incidents.notes_of(inc)) == 2  # granted, revoked


@pytest.mark.slow
def test_the_lambda_housekeeping_event_sweeps_as_the_broker(world, enforcing, monkeypatch):
    from jitctl.broker import aws_lambda

    inc = world.pd.incidents.add(SERVICE, "disk", assigned=(world.pd_ids[CAROL],))
    out = world.run(CAROL, "request", "prod-readonly", "--reason", "INC-3", "--json")
    assert out.returncode == 0, out.stderr
    request_id = json.loads(out.stdout)["request_id"]
    world.pd.incidents.set_status(inc, "resolved")
    export(monkeypatch, world.broker_env())  # as the broker
    monkeypatch.setattr(aws_lambda, "_broker", None)
    answer = aws_lambda.handler({"jitctl": "housekeeping"})
    assert answer["ok"] is True
    assert {"request_id": request_id, "incident": inc} in answer["report"]["revoked"]


def test_sweep_without_a_pagerduty_token_is_a_setup_error_not_an_outage(team, monkeypatch):
    """Issue 21 item 9: no retry fixes a missing token, so the scheduler sees exit 2 (as any
    command without its token does), not 5; the sweep still does what needs no PagerDuty."""
    fast_tracked(team, monkeypatch)
    env = team.env(CAROL, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    del env["JITCTL_PAGERDUTY_TOKEN"]
    out = team.run(CAROL, "sweep", "--json", env=env)
    assert out.returncode == 2, out.stderr
    report = json.loads(out.stdout)
    assert report["exit_code"] == 2 and "no PagerDuty token" in report["problems"][0]
    assert "sweep finished with" in out.stderr
    assert team.run(CAROL, "sweep").returncode == 0  # with its token: nothing left to fix
