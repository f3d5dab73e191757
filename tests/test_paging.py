"""Paging approvers (``[approval] page_service``) against the PagerDuty simulator: one page
per pending request (incident key = request id), resolved on every way a request ends, and a
paging failure that is audited and shown but never blocks."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from jitctl import models
from jitctl.lifecycle import flow
from jitctl.lifecycle.service import LocalService
from jitctl.lifecycle.sweep import sweep
from jitctl.oncall import paging
from tests import incident_world
from tests.conftest import FixedClock
from tests.incident_world import ALICE, BOB, PAGE_SERVICE, act_as, events

role_uid, team_policy, team = (
    incident_world.role_uid,
    incident_world.team_policy,
    incident_world.team,
)


def pending(env, reason="INC-7 replica lag"):
    return flow.submit(env, role_name="db-paged", reason=reason, duration=None)


def page_of(team, request_id):
    book = team.pd.incidents.incidents
    return [inc for inc in book.values() if inc["key"] == request_id]


def test_a_pending_request_pages_once(team, monkeypatch):
    env = act_as(monkeypatch, team, ALICE)
    submitted = pending(env, reason="INC-7 \x1b[31mred[/] lag")
    req = submitted.request
    assert not submitted.warnings
    [page] = page_of(team, req.request_id)
    assert page["service"] == PAGE_SERVICE and page["status"] == "triggered"
    assert ALICE in page["title"] and "db-paged" in page["title"]
    assert req.request_id in page["title"] and "\x1b" not in page["title"]
    stored = env.store.get(req.request_id).page
    assert stored == {"service": PAGE_SERVICE, "id": page["id"], "status": "open"}
    [post] = [r for r in team.pd.requests("/incidents") if r.method == "POST"]
    assert post.status == 201
    # Asked again (a retry, a second process): the incident key finds the open page.
    assert paging.page(env, env.store.get(req.request_id), "again") is None
    assert len(page_of(team, req.request_id)) == 1
    assert events(team, ALICE).count("paged") == 2  # both name the same incident
    assert {r.get("incident") for r in team.audit_records(ALICE) if r["event"] == "paged"} == {
        page["id"]
    }


@pytest.mark.parametrize("how", ["approve", "deny", "cancel"])
def test_the_page_is_resolved_when_the_request_ends(team, monkeypatch, how):
    req = pending(act_as(monkeypatch, team, ALICE)).request
    if how == "cancel":
        env = act_as(monkeypatch, team, ALICE)
        LocalService(env).cancel(req.request_id)
    else:
        env = act_as(monkeypatch, team, BOB)
        service = LocalService(env)
        decided, warnings = getattr(service, how)(req.request_id, "seen it")
        assert not warnings
    [page] = page_of(team, req.request_id)
    assert page["status"] == "resolved"
    assert env.store.get(req.request_id).page["status"] == "resolved"
    resolved = [r for r in team.audit_records(ALICE if how == "cancel" else BOB)]
    assert [r["incident"] for r in resolved if r["event"] == "page_resolved"] == [page["id"]]


def test_an_expired_request_has_its_page_resolved_by_sweep(team, monkeypatch):
    clock = FixedClock(datetime.now(UTC))
    req = pending(act_as(monkeypatch, team, ALICE, clock)).request
    clock.advance(16 * 60)  # past the role's 15m request_ttl
    env = act_as(monkeypatch, team, BOB, clock)
    report = sweep(env)
    assert report.expired == [req.request_id] and report.pages_resolved == [req.request_id]
    assert env.store.get(req.request_id).status == models.EXPIRED
    [page] = page_of(team, req.request_id)
    assert page["status"] == "resolved"
    again = sweep(env)  # nothing left to do
    assert not again.expired and not again.pages_resolved and not again.problems


def test_a_paging_failure_is_audited_shown_and_does_not_block(team, monkeypatch):
    team.pd.fail_next(500, count=10, path="/incidents")
    env = act_as(monkeypatch, team, ALICE)
    submitted = pending(env)
    assert submitted.request.status == models.PENDING
    assert any("could not open the PagerDuty page" in w for w in submitted.warnings)
    failed = [r for r in team.audit_records(ALICE) if r["event"] == "page_failed"]
    assert failed and failed[0]["service"] == PAGE_SERVICE and "500" in failed[0]["error"]
    decided, _ = LocalService(act_as(monkeypatch, team, BOB)).approve(
        submitted.request.request_id, None
    )
    assert decided.status == models.APPROVED  # the decision never waited on PagerDuty


def test_a_failed_resolve_is_retried_by_sweep(team, monkeypatch):
    req = pending(act_as(monkeypatch, team, ALICE)).request
    [page] = page_of(team, req.request_id)
    team.pd.fail_next(500, count=3, path=f"/incidents/{page['id']}")  # every attempt of one try
    _, warnings = LocalService(act_as(monkeypatch, team, BOB)).deny(req.request_id, "no")
    assert any("could not resolve" in w for w in warnings)
    assert page_of(team, req.request_id)[0]["status"] == "triggered"
    report = sweep(act_as(monkeypatch, team, BOB))
    assert report.pages_resolved == [req.request_id]
    assert page_of(team, req.request_id)[0]["status"] == "resolved"


def test_the_cli_shows_a_paging_failure(team):
    team.pd.fail_next(401, count=10, path="/incidents")
    out = team.run(ALICE, "request", "db-paged", "--reason", "INC-8", "--no-wait")
    assert out.returncode == 0, out.stderr
    assert "could not open the PagerDuty page" in out.stderr and out.stdout.startswith("r-")


def test_a_second_open_page_with_the_same_key_is_refused_by_pagerduty(team, monkeypatch):
    env = act_as(monkeypatch, team, ALICE)
    req = pending(env).request
    from jitctl.oncall import incidents as pd

    again = pd.open_page(env.pagerduty, PAGE_SERVICE, "dup", req.request_id, ALICE)
    assert again == env.store.get(req.request_id).page["id"]  # the open one, found by key
    posts = [r.status for r in team.pd.requests("/incidents") if r.method == "POST"]
    assert posts == [201, 400]  # the simulator refused the duplicate, as PagerDuty does
    assert len(page_of(team, req.request_id)) == 1


def test_break_glass_pages_and_the_page_rings_until_the_review(team, monkeypatch):
    env = act_as(monkeypatch, team, ALICE)
    req = flow.submit(
        env, role_name="db-paged", reason="INC-9 outage", duration=None, break_glass=True
    ).request
    assert req.approval == models.BREAK_GLASS
    [page] = page_of(team, req.request_id)
    assert "BREAK-GLASS" in page["title"] and f"jitctl review {req.request_id}" in page["title"]
    assert page["status"] == "triggered"
    report = sweep(act_as(monkeypatch, team, BOB))  # granted, but nobody has looked yet
    assert req.request_id not in report.pages_resolved
    assert page_of(team, req.request_id)[0]["status"] == "triggered"
    LocalService(act_as(monkeypatch, team, BOB)).review(req.request_id, "seen: the outage")
    assert page_of(team, req.request_id)[0]["status"] == "resolved"
    assert "page_resolved" in events(team, BOB)
