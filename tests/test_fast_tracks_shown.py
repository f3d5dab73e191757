"""Issue 21 item 1: every view of a role names both of its fast tracks, the on-call one and
the incident one (`policy explain`, its `--json`, `doctor`, `roles`), and none says a role with
an incident fast track is never fast-tracked."""

from __future__ import annotations

import json

from tests import incident_world
from tests.incident_world import ALICE, SERVICE

role_uid, team_policy, team = (
    incident_world.role_uid,
    incident_world.team_policy,
    incident_world.team,
)


def test_policy_explain_names_the_incident_fast_track(team):
    out = team.run(ALICE, "policy", "explain", "prod-incident")
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    fast_track = text.split("Fast track")[1].split("Approval")[0]
    assert "never" not in fast_track, text
    assert f"open PagerDuty incident on service {SERVICE}" in text
    assert "access ends when the incident resolves" in text
    both = " ".join(team.run(ALICE, "policy", "explain", "prod-readonly").stdout.split())
    assert "whoever is on call now in PagerDuty for escalation policy PEP1234" in both
    none = " ".join(team.run(ALICE, "policy", "explain", "prod-admin").stdout.split())
    assert "never: neither an on_call nor an incident rule" in none


def test_doctor_and_roles_check_the_incident_fast_track(team):
    for_doctor = team.run(ALICE, "doctor", "--json")
    checks = {c["name"]: c for c in json.loads(for_doctor.stdout)["checks"]}
    check = checks["fast track: prod-incident"]
    assert "no on-call fast track" not in check["detail"]
    assert (
        check["detail"]
        == f"not now: incident fast track: {ALICE} works no open incident on the role's services {SERVICE}"
    )
    roles = {r["role"]: r for r in json.loads(team.run(ALICE, "roles", "--json").stdout)}
    assert roles["prod-incident"]["has_fast_track"] and roles["prod-incident"]["fast_tracks"] == [
        "incident"
    ]
    assert not roles["prod-incident"]["fast_track"]
    assert "approval (no open incident on its services)" in team.run(ALICE, "roles").stdout

    team.pd.incidents.add(SERVICE, "db down", assigned=(team.pd_user(ALICE),))
    roles = {r["role"]: r for r in json.loads(team.run(ALICE, "roles", "--json").stdout)}
    assert (
        roles["prod-incident"]["fast_track"] and "working incident" in roles["prod-incident"]["why"]
    )
    assert roles["prod-admin"]["fast_tracks"] == [] and not roles["prod-admin"]["fast_track"]
    checks = {
        c["name"]: c for c in json.loads(team.run(ALICE, "doctor", "--json").stdout)["checks"]
    }
    assert checks["fast track: prod-incident"]["detail"].startswith("incident fast track: working")
