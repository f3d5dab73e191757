"""A cancel whose approvers' page cannot be resolved: the cancel stands and the requester is
told (the sweep resolves the page later). tests/incident_world's team: a role whose pending
requests page its approvers, against the PagerDuty simulator."""

from __future__ import annotations

from jitctl.lifecycle import flow
from jitctl.lifecycle.service import LocalService
from tests import incident_world
from tests.incident_world import ALICE, act_as

role_uid, team_policy, team = (
    incident_world.role_uid,
    incident_world.team_policy,
    incident_world.team,
)


def test_a_cancel_whose_page_cannot_be_resolved_says_so(team, monkeypatch):
    env = act_as(monkeypatch, team, ALICE)
    req = flow.submit(env, role_name="db-paged", reason="INC-26 page", duration=None).request
    [page] = [i for i in team.pd.incidents.incidents.values() if i["key"] == req.request_id]
    team.pd.fail_next(500, count=3, path=f"/incidents/{page['id']}")
    env = act_as(monkeypatch, team, ALICE)
    shown: list[str] = []
    env.on_warning = shown.append
    assert LocalService(env).cancel(req.request_id).status == "cancelled"
    assert any("could not resolve" in w for w in shown), shown
