"""The incident fast track and `request --incident`, against the PagerDuty simulator over
HTTPS and moto's server: who counts as working an incident, what the request, the session
tags and the audit keep, the re-read before issuing, the timeline notes, and PagerDuty
trouble failing closed."""

from __future__ import annotations

import json

import pytest

from jitctl import models
from jitctl.errors import Denied, ExitCode
from jitctl.lifecycle import flow
from jitctl.lifecycle.service import LocalService
from tests import incident_world
from tests.incident_world import ALICE, BOB, OTHER, SERVICE, act_as, events

# The shared world's fixtures: roles of this test's own, services and users seeded.
role_uid, team_policy, team = (
    incident_world.role_uid,
    incident_world.team_policy,
    incident_world.team,
)


def submit(env, role="prod-incident", incident=None):
    return flow.submit(env, role_name=role, reason="INC db down", duration=None, incident=incident)


def test_assigned_is_fast_tracked_with_evidence_everywhere(team, monkeypatch):
    inc = team.pd.incidents.add(SERVICE, "db down", assigned=(team.pd_user(ALICE),))
    env = act_as(monkeypatch, team, ALICE)
    sent: list[dict] = []  # what botocore really sends (moto itself ignores session tags)
    env.aws.client("sts").meta.events.register(
        "provide-client-params.sts.AssumeRole", lambda params, **_: sent.append(dict(params))
    )
    out = LocalService(env).request("prod-incident", "INC db down", None)
    req = out.issued.request
    assert req.status == models.ISSUED and req.approval == models.INCIDENT
    assert req.incident["id"] == inc and req.incident["how"] == "assigned"
    assert req.incident["title"] == "db down" and req.incident["service"] == SERVICE
    assert env.store.get(req.request_id).incident["number"] == req.incident["number"]
    records = {r["event"]: r for r in team.audit_records(ALICE)}
    assert records["auto_approved"]["approval"] == "incident"
    assert records["auto_approved"]["incident"]["id"] == inc
    assert records["issued"]["incident"]["id"] == inc
    (params,) = sent
    tags = {t["Key"]: t["Value"] for t in params["Tags"]}
    assert tags["jitctl:incident"] == f"{inc}/{req.incident['number']}/{SERVICE}"
    assert tags["jitctl:approval"] == "incident"
    # Re-read before issuing: GET /incidents/{id} after the list.
    assert team.pd.requests(f"/incidents/{inc}")


def test_acknowledged_but_reassigned_is_fast_tracked(team, monkeypatch):
    inc = team.pd.incidents.add(
        SERVICE,
        "disk full",
        assigned=(team.pd_user(BOB),),
        acknowledged=(team.pd_user(ALICE),),
        status="acknowledged",
    )
    env = act_as(monkeypatch, team, ALICE)
    submitted = submit(env)
    assert submitted.fast_tracked and submitted.request.incident["how"] == "acknowledged"
    assert submitted.request.incident["id"] == inc


def test_only_a_responder_is_not_fast_tracked(team, monkeypatch):
    team.pd.incidents.add(
        SERVICE, "db down", assigned=(team.pd_user(BOB),), responders=(team.pd_user(ALICE),)
    )
    env = act_as(monkeypatch, team, ALICE)
    submitted = submit(env)
    assert submitted.request.status == models.PENDING and submitted.request.incident is None
    assert "works no open incident" in submitted.request.fast_path_reason


def test_resolved_incidents_and_other_services_do_not_count(team, monkeypatch):
    alice = team.pd_user(ALICE)
    team.pd.incidents.add(SERVICE, "old", assigned=(alice,), status="resolved")
    team.pd.incidents.add(OTHER, "elsewhere", assigned=(alice,))
    env = act_as(monkeypatch, team, ALICE)
    assert submit(env).request.status == models.PENDING
    lists = [r for r in team.pd.requests("/incidents") if r.method == "GET"]
    assert lists and all(r.query.get("service_ids[]") == [SERVICE] for r in lists)
    assert all(r.query.get("date_range") == ["all"] for r in lists)
    assert set(lists[0].query["statuses[]"]) == {"triggered", "acknowledged"}


def test_more_incidents_than_one_page(team, monkeypatch):
    bob = team.pd_user(BOB)
    for n in range(130):  # acknowledged by Bob; Alice acknowledged the 118th only
        acks = (bob, team.pd_user(ALICE)) if n == 117 else (bob,)
        team.pd.incidents.add(SERVICE, f"inc {n}", acknowledged=acks, status="acknowledged")
    env = act_as(monkeypatch, team, ALICE)
    submitted = submit(env)
    assert submitted.fast_tracked and submitted.request.incident["title"] == "inc 117"
    offsets = [r.query.get("offset", ["0"])[0] for r in team.pd.requests("/incidents")]
    assert len(offsets) >= 3  # the assigned query, then the acknowledged one, page by page
    assert "100" in offsets  # the second page (of 100, the most PagerDuty serves) was read


def test_incident_flag_for_an_incident_the_requester_is_not_on(team):
    inc = team.pd.incidents.add(SERVICE, "bob's", assigned=(team.pd_user(BOB),))
    team.pd_user(ALICE)
    out = team.run(ALICE, "request", "prod-readonly", "--reason", "x", "--incident", inc)
    assert out.returncode == ExitCode.DENIED, out.stderr
    assert "neither assigned to nor acknowledged" in out.stderr and "Traceback" not in out.stderr
    assert events(team, ALICE)[-2:] == ["requested", "denied"]


def test_incident_flag_with_a_malformed_id_is_a_usage_error(team):
    out = team.run(ALICE, "request", "prod-readonly", "--reason", "x", "--incident", "../users")
    assert out.returncode == ExitCode.USAGE and "not a PagerDuty incident id" in out.stderr


def test_incident_flag_ties_a_peer_approved_grant_and_notes_it(team, monkeypatch):
    inc = team.pd.incidents.add(OTHER, "cache storm", assigned=(team.pd_user(ALICE),))
    env = act_as(monkeypatch, team, ALICE)
    submitted = submit(env, role="prod-readonly", incident=inc)
    req = submitted.request
    assert req.status == models.PENDING and req.incident["id"] == inc  # other service: no fast
    LocalService(act_as(monkeypatch, team, BOB)).approve(req.request_id, None)
    issued = LocalService(act_as(monkeypatch, team, ALICE)).issue(req.request_id)
    assert issued.request.status == models.ISSUED and not issued.notes
    [note] = team.pd.incidents.notes_of(inc)
    assert f"{ALICE} was granted AWS role prod-readonly until" in note
    assert req.request_id in note and "reason: INC db down" in note and "approval: peer" in note
    [post] = [r for r in team.pd.requests(f"/incidents/{inc}/notes") if r.method == "POST"]
    assert post.status == 201


def test_a_failed_note_is_audited_and_does_not_block(team, monkeypatch):
    inc = team.pd.incidents.add(SERVICE, "db down", assigned=(team.pd_user(ALICE),))
    team.pd.fail_next(500, count=5, path=f"/incidents/{inc}/notes")
    env = act_as(monkeypatch, team, ALICE)
    out = LocalService(env).request("prod-incident", "INC db down", None)
    assert out.issued.request.status == models.ISSUED
    assert any("could not add a note" in n for n in out.issued.notes)
    failed = [r for r in team.audit_records(ALICE) if r["event"] == "incident_note_failed"]
    assert failed and failed[0]["incident"] == inc and "500" in failed[0]["error"]


def test_an_incident_resolved_before_issuing_no_longer_fast_tracks(team, monkeypatch):
    inc = team.pd.incidents.add(SERVICE, "db down", assigned=(team.pd_user(ALICE),))
    env = act_as(monkeypatch, team, ALICE)
    submitted = submit(env)
    assert submitted.fast_tracked
    team.pd.incidents.set_status(inc, "resolved")
    with pytest.raises(Denied, match="no longer fast-tracks"):
        flow.issue(env, submitted.request, evidence=None)
    assert events(team, ALICE)[-1] == "issue_refused"


@pytest.mark.parametrize("fault", ["401", "429", "500", "hang"])
def test_pagerduty_trouble_fails_closed_and_peers_still_approve(team, monkeypatch, fault):
    team.pd.incidents.add(SERVICE, "db down", assigned=(team.pd_user(ALICE),))
    if fault == "hang":
        team.pd.hang_next(5, count=10, path="/incidents")
    else:
        team.pd.fail_next(int(fault), count=10, reset=30, path="/incidents")
    env = act_as(monkeypatch, team, ALICE)
    submitted = submit(env)
    req = submitted.request
    assert req.status == models.PENDING and req.incident is None
    assert "incident check failed" in req.fast_path_reason
    LocalService(act_as(monkeypatch, team, BOB)).approve(req.request_id, None)
    issued = LocalService(act_as(monkeypatch, team, ALICE)).issue(req.request_id)
    assert issued.request.status == models.ISSUED and issued.request.approval == models.PEER


def test_the_cli_fast_tracks_and_shows_the_incident(team):
    inc = team.pd.incidents.add(SERVICE, "db down", assigned=(team.pd_user(ALICE),))
    out = team.run(ALICE, "request", "prod-incident", "--reason", "INC-9", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["approval"] == "incident" and doc["incident"]["id"] == inc
    assert doc["incident"]["end_with_incident"] is True
    assert "secret" not in out.stdout.lower()
    assert len(team.pd.incidents.notes_of(inc)) == 1


def test_an_unknown_incident_is_refused(team, monkeypatch):
    env = act_as(monkeypatch, team, ALICE)
    with pytest.raises(Denied, match="PagerDuty has no incident PNOPE"):
        submit(env, role="prod-readonly", incident="PNOPE")


def test_notes_are_sent_from_the_configured_address_which_pagerduty_requires(team, monkeypatch):
    inc = team.pd.incidents.add(SERVICE, "db down", assigned=(team.pd_user(ALICE),))
    LocalService(act_as(monkeypatch, team, ALICE)).request("prod-incident", "INC-5", None)
    [note] = team.pd.incidents.notes[inc]
    assert note["user"]["summary"] == "ops@example.com"  # [pagerduty] from, not the requester
    # The simulator, like PagerDuty, refuses a write without a known user's From.
    assert post_note(team, inc, None) == 400 and post_note(team, inc, "x@y.z") == 400
    assert post_note(team, inc, BOB) == 201
    assert len(team.pd.incidents.notes_of(inc)) == 2


def post_note(team, inc: str, sender: str | None) -> int:
    import ssl
    import urllib.error
    import urllib.request

    headers = {"Authorization": f"Token token={team.pd.token}", "Content-Type": "application/json"}
    if sender:
        headers["From"] = sender
    body = json.dumps({"note": {"content": "by hand"}}).encode()
    req = urllib.request.Request(f"{team.pd.url}/incidents/{inc}/notes", body, headers)
    context = ssl.create_default_context(cafile=str(team.pd.ca_bundle))
    try:
        with urllib.request.urlopen(req, context=context, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_policy_explain_shows_the_incident_track_and_the_page_service(team, monkeypatch):
    from jitctl.policy.explain import explain

    doc = explain(act_as(monkeypatch, team, ALICE).policy, "prod-incident")
    assert doc["incident_fast_track"] == {"services": [SERVICE], "end_with_incident": True}
    assert doc["approval"]["page_service"] == "PSVCAPPROVE"
