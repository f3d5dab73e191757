"""One approval, one grant: the issue claim in both store backends, and the re-issue through
the core (bounded by the first issue's planned end, earlier sessions cut off first)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jitctl import models
from jitctl.context import Environment
from jitctl.errors import Denied, ExitCode, TimedOut, Unavailable
from jitctl.lifecycle.decisions import approve
from jitctl.lifecycle.flow import issue, submit
from jitctl.store.claims import CLAIM_LEASE, IssueInProgress
from jitctl.store.step import TransitionError
from jitctl.wiring import choose_service
from tests.conftest import FixedClock
from tests.harness import existing_role
from tests.test_store import BOB, T0, ddb, dynamo, make_req, sqlite  # noqa: F401

ALICE = "alice@example.com"
HOUR = timedelta(hours=1)


def approved_in(store_: Any) -> str:
    req = make_req()
    store_.create(req)
    store_.approve(req.request_id, BOB, now=T0)
    return req.request_id


# ---------------------------------------------------------------- the store's claim


@pytest.fixture(params=["sqlite", "dynamo"], ids=["sqlite", "dynamodb"])
def backend(request: pytest.FixtureRequest) -> Any:
    """Each test runs on both backends (tests.test_store's fixtures)."""
    return request.getfixturevalue(request.param)


def test_of_two_racing_claims_exactly_one_wins(backend: Any) -> None:
    rid = approved_in(backend)
    barrier = threading.Barrier(2)
    won: list[int] = []
    lost: list[Exception] = []

    def claim() -> None:
        barrier.wait()
        try:
            won.append(backend.claim_issue(rid, now=T0, planned_end=T0 + HOUR).issue_attempt)
        except IssueInProgress as exc:
            lost.append(exc)

    threads = [threading.Thread(target=claim) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert won == [1] and len(lost) == 1
    assert lost[0].exit_code == ExitCode.UNAVAILABLE and "being issued" in lost[0].message


def test_a_claim_is_left_to_its_issuer_for_its_lease_then_taken_over_once(backend: Any) -> None:
    rid = approved_in(backend)
    backend.claim_issue(rid, now=T0, planned_end=T0 + HOUR)
    with pytest.raises(IssueInProgress, match="wait .* issues again after"):
        backend.claim_issue(rid, now=T0 + CLAIM_LEASE / 2, planned_end=T0 + 2 * HOUR)
    later = T0 + CLAIM_LEASE
    second = backend.claim_issue(rid, now=later, planned_end=later + HOUR)
    assert (second.issue_attempt, second.reissued_after) == (2, ["interrupted"])
    assert second.planned_end == T0 + HOUR  # the first issue's, not the later one's
    # the first issuer comes back: its credentials are not recorded, whoever it is
    with pytest.raises(TransitionError, match="issue 1 was superseded"):
        backend.mark_issued(rid, now=later, credentials_expire_at=T0 + HOUR, attempt=1)
    with pytest.raises(Denied, match="already issued again once after an interrupted issue"):
        backend.claim_issue(rid, now=later + CLAIM_LEASE, planned_end=later + HOUR)
    done = backend.mark_issued(rid, now=later, credentials_expire_at=T0 + HOUR, attempt=2)
    assert (done.status, done.issue_attempt, done.issued_attempt) == (models.ISSUED, 2, 2)
    with pytest.raises(TransitionError, match="already issued"):
        backend.claim_issue(rid, now=later + 2 * CLAIM_LEASE, planned_end=later + HOUR)


def test_each_kind_of_failure_buys_one_reissue(backend: Any) -> None:
    rid = approved_in(backend)
    backend.claim_issue(rid, now=T0, planned_end=T0 + HOUR)
    backend.mark_issue_failed(rid, attempt=1, kind="assume_failed")
    assert backend.claim_issue(rid, now=T0, planned_end=T0 + HOUR).issue_attempt == 2
    backend.mark_issued(rid, now=T0, credentials_expire_at=T0 + HOUR, attempt=2)
    backend.mark_delivery_failed(rid, now=T0)
    third = backend.claim_issue(rid, now=T0, planned_end=T0 + HOUR)
    assert third.reissued_after == ["assume_failed", "delivery_failed"]
    backend.mark_issue_failed(rid, attempt=3, kind="assume_failed")
    with pytest.raises(Denied, match="after a failed AssumeRole"):
        backend.claim_issue(rid, now=T0, planned_end=T0 + HOUR)
    assert backend.get(rid).issue_attempt == 3


def test_a_failed_delivery_is_reported_once_however_often_the_requester_says_so(
    backend: Any,
) -> None:
    rid = approved_in(backend)
    for attempt in (1, 2):
        backend.claim_issue(rid, now=T0, planned_end=T0 + HOUR)
        backend.mark_issued(rid, now=T0, credentials_expire_at=T0 + HOUR, attempt=attempt)
        if attempt == 1:
            backend.mark_delivery_failed(rid, now=T0)
    with pytest.raises(Denied, match="not issued a third time"):
        backend.mark_delivery_failed(rid, now=T0)
    with pytest.raises(TransitionError, match="already issued"):
        backend.claim_issue(rid, now=T0, planned_end=T0 + HOUR)


def test_a_released_claim_gives_its_failure_back_and_keeps_its_number(backend: Any) -> None:
    rid = approved_in(backend)
    backend.claim_issue(rid, now=T0, planned_end=T0 + HOUR)
    backend.mark_issued(rid, now=T0, credentials_expire_at=T0 + HOUR, attempt=1)
    backend.mark_delivery_failed(rid, now=T0)
    backend.claim_issue(rid, now=T0, planned_end=T0 + HOUR)
    released = backend.release_claim(rid, attempt=2)
    assert (released.issue_failure, released.reissued_after) == ("delivery_failed", [])
    # the next claim is number 3: tag values are never reused, so 2 stays cut off too
    assert backend.claim_issue(rid, now=T0, planned_end=T0 + HOUR).issue_attempt == 3


def test_only_approved_or_issued_requests_are_claimed(backend: Any) -> None:
    req = make_req()
    backend.create(req)
    with pytest.raises(TransitionError, match="is pending, not approved"):
        backend.claim_issue(req.request_id, now=T0, planned_end=T0 + HOUR)


# ---------------------------------------------------------------- through the core


def env_at(team, user: str, at: datetime) -> Environment:
    return Environment(service_factory=choose_service, environ=team.env(user), clock=FixedClock(at))


def assume_role_calls(env: Environment) -> list[dict]:
    seen: list[dict] = []
    env.aws.client("sts").meta.events.register(
        "provide-client-params.sts.AssumeRole", lambda params, **_: seen.append(dict(params))
    )
    return seen


def peer_approved(team, monkeypatch, start: datetime, duration: timedelta) -> str:
    """Alice's request, approved by Bob; boto3 acts as Alice afterwards."""
    team.pd_user(ALICE)
    team.act_as(monkeypatch, ALICE)
    alice = env_at(team, ALICE, start)
    req = submit(alice, role_name="prod-readonly", reason="INC-7", duration=duration).request
    team.act_as(monkeypatch, BOB)
    approve(env_at(team, BOB, start), req.request_id, reason=None)
    team.act_as(monkeypatch, ALICE)
    return req.request_id


def denies(statement: dict, context: dict[str, str]) -> bool:
    """IAM's evaluation of one Deny * statement whose conditions are StringEquals only (what
    AWS does and moto does not): every key present in the request and matching."""
    if statement.get("Effect") != "Deny":
        return False
    for operator, conditions in statement.get("Condition", {}).items():
        assert operator == "StringEquals", operator
        for key, wanted in conditions.items():
            values = [wanted] if isinstance(wanted, str) else wanted
            if context.get(key) not in values:
                return False
    return True


def tag_of(call: dict) -> str:
    return {t["Key"]: t["Value"] for t in call["Tags"]}["jitctl:issue"]


def test_a_reissue_cuts_off_the_first_set_alone_and_never_ends_later(team, monkeypatch):
    monkeypatch.setattr("jitctl.revocation.iam.SETTLE_SECONDS", 0.0)
    start = datetime.now(UTC).replace(microsecond=0)
    rid = peer_approved(team, monkeypatch, start, HOUR)
    with existing_role(team.moto, "prod-readonly") as iam:
        first_env = env_at(team, ALICE, start)
        first_calls = assume_role_calls(first_env)
        first = issue(first_env, first_env.store.get(rid), evidence=None)
        first_env.service.delivery_failed(rid, "disk full")
        later = env_at(team, ALICE, start + timedelta(minutes=25))
        calls = assume_role_calls(later)
        second = issue(later, later.store.get(rid), evidence=None)
        doc = iam.get_role_policy(RoleName="prod-readonly", PolicyName="jitctl-revocations")
    assert [c["DurationSeconds"] for c in first_calls + calls] == [3600, 35 * 60 - 2]
    assert second.credentials.expiration <= first.credentials.expiration
    assert [c["TransitiveTagKeys"] for c in calls] == [["jitctl:issue"]]
    statements = doc["PolicyDocument"]["Statement"]
    key = "aws:PrincipalTag/jitctl:issue"
    first_tag, second_tag = tag_of(first_calls[0]), tag_of(calls[0])
    assert (first_tag, second_tag) == (f"{rid}.1", f"{rid}.2")
    # What CloudTrail ties every call of the session to: the request, this issue, how it was
    # approved and by whom (empty tags are left out).
    tags = {t["Key"]: t["Value"] for t in first_calls[0]["Tags"]}
    assert tags == {
        "jitctl:request-id": rid,
        "jitctl:issue": f"{rid}.1",
        "jitctl:approval": "peer",
        "jitctl:approvers": BOB,
    }
    assert any(denies(s, {key: first_tag}) for s in statements)
    assert not any(denies(s, {key: second_tag}) for s in statements)
    assert not any(denies(s, {key: "r-other.1"}) for s in statements)  # nobody else's
    assert not any(denies(s, {}) for s in statements)  # sessions without the tag


def test_a_reissue_with_under_15_minutes_left_is_refused_and_assumes_nothing(team, monkeypatch):
    monkeypatch.setattr("jitctl.revocation.iam.SETTLE_SECONDS", 0.0)
    start = datetime.now(UTC).replace(microsecond=0)
    rid = peer_approved(team, monkeypatch, start, timedelta(minutes=20))
    env = env_at(team, ALICE, start)
    issue(env, env.store.get(rid), evidence=None)
    env.service.delivery_failed(rid, "disk full")
    later = env_at(team, ALICE, start + timedelta(minutes=10))
    calls = assume_role_calls(later)
    with pytest.raises(TimedOut, match="planned to end at"):
        issue(later, later.store.get(rid), evidence=None)
    assert calls == []
    stored = later.store.get(rid)  # released: the failure is still there to use
    assert (stored.issue_failure, stored.reissued_after) == ("delivery_failed", [])


def test_a_reissue_with_exactly_15_minutes_left_is_issued_for_15_minutes(team, monkeypatch):
    """STS's shortest session is 900 s: with exactly that left (and the slack for AWS starting
    the session's clock a moment later) the re-issue is made, for exactly that long."""
    from jitctl.lifecycle.reissue import SLACK_SECONDS

    monkeypatch.setattr("jitctl.revocation.iam.SETTLE_SECONDS", 0.0)
    start = datetime.now(UTC).replace(microsecond=0)
    rid = peer_approved(team, monkeypatch, start, timedelta(minutes=20))
    with existing_role(team.moto, "prod-readonly"):
        env = env_at(team, ALICE, start)
        issue(env, env.store.get(rid), evidence=None)
        env.service.delivery_failed(rid, "disk full")
        left = 900 + SLACK_SECONDS
        later = env_at(team, ALICE, start + timedelta(minutes=20) - timedelta(seconds=left))
        calls = assume_role_calls(later)
        again = issue(later, later.store.get(rid), evidence=None)
    assert [c["DurationSeconds"] for c in calls] == [900]
    assert again.request.issue_attempt == 2


def test_a_cut_off_that_cannot_be_written_issues_nothing_and_can_be_retried(team, monkeypatch):
    monkeypatch.setattr("jitctl.revocation.iam.SETTLE_SECONDS", 0.0)
    start = datetime.now(UTC).replace(microsecond=0)
    rid = peer_approved(team, monkeypatch, start, HOUR)
    env = env_at(team, ALICE, start)
    issue(env, env.store.get(rid), evidence=None)
    env.service.delivery_failed(rid, "disk full")
    later = env_at(team, ALICE, start + timedelta(minutes=1))
    calls = assume_role_calls(later)
    with pytest.raises(Unavailable, match="jitctl-revocations"):  # no such role in IAM
        issue(later, later.store.get(rid), evidence=None)
    assert calls == []  # fail closed: no second set while the first may be live
    from jitctl.audit.log import read_records

    failed = [
        r["error"]
        for r in read_records(later.audit.path)
        if r["event"] == "issue_failed" and r.get("request_id") == rid
    ]
    assert len(failed) == 1 and failed[0].startswith("cannot cut off earlier sets: ")
    with existing_role(team.moto, "prod-readonly"):
        again = issue(later, later.store.get(rid), evidence=None)
    assert (again.request.issue_attempt, tag_of(calls[0])) == (3, f"{rid}.3")


def test_ctrl_c_after_assume_role_is_recorded_so_the_next_wait_cuts_it_off_at_once(
    team, monkeypatch
):
    """The session exists, the issuer was interrupted before recording it: the failure is in
    the store at once, so the next issue need not wait out the claim's lease."""
    import jitctl.aws

    monkeypatch.setattr("jitctl.revocation.iam.SETTLE_SECONDS", 0.0)
    start = datetime.now(UTC).replace(microsecond=0)
    rid = peer_approved(team, monkeypatch, start, HOUR)
    real = jitctl.aws.assume_role

    def then_ctrl_c(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt

    env = env_at(team, ALICE, start)
    calls = assume_role_calls(env)
    with monkeypatch.context() as patch:
        patch.setattr(jitctl.aws, "assume_role", then_ctrl_c)
        with pytest.raises(KeyboardInterrupt):
            issue(env, env.store.get(rid), evidence=None)
    assert env.store.get(rid).issue_failure == "interrupted"
    with existing_role(team.moto, "prod-readonly") as iam:
        again = issue(env, env.store.get(rid), evidence=None)  # same moment: no lease passed
        doc = iam.get_role_policy(RoleName="prod-readonly", PolicyName="jitctl-revocations")
    assert again.request.issue_attempt == 2 and tag_of(calls[1]) == f"{rid}.2"
    key = "aws:PrincipalTag/jitctl:issue"
    assert any(denies(s, {key: tag_of(calls[0])}) for s in doc["PolicyDocument"]["Statement"])


def test_an_issue_another_run_holds_is_refused_audited_and_assumes_nothing(team, monkeypatch):
    """Two runs of Alice's `wait` at once: the one that finds the claim taken gets no
    credentials, says who holds it and until when, and the audit trail records the refusal."""
    from jitctl.audit.log import read_records

    start = datetime.now(UTC).replace(microsecond=0)
    rid = peer_approved(team, monkeypatch, start, HOUR)
    env = env_at(team, ALICE, start)
    env.store.claim_issue(rid, now=start, planned_end=start + HOUR)  # the other run's claim
    calls = assume_role_calls(env)
    with pytest.raises(IssueInProgress) as info:
        issue(env, env.store.get(rid), evidence=None)
    assert calls == []
    assert info.value.exit_code == ExitCode.UNAVAILABLE
    refused = [
        r
        for r in read_records(env.audit.path)
        if r["event"] == "issue_refused" and r.get("request_id") == rid
    ]
    assert [r["why"] for r in refused] == [info.value.message]


def test_an_issue_superseded_while_assuming_hands_out_nothing_and_says_so(team, monkeypatch):
    """Alice's run is taken for dead (its claim's lease ran out) while AWS answers it, and a
    second run claims the issue: the first run's credentials are not recorded or returned,
    its error is the store's, and the audit trail names the key it dropped."""
    from jitctl.audit.log import read_records

    start = datetime.now(UTC).replace(microsecond=0)
    rid = peer_approved(team, monkeypatch, start, HOUR)
    env = env_at(team, ALICE, start)
    other = env_at(team, ALICE, start + CLAIM_LEASE)

    def taken_over(**_: Any) -> None:  # the second run, once AWS has answered the first
        other.store.claim_issue(rid, now=start + CLAIM_LEASE, planned_end=start + 2 * HOUR)

    env.aws.client("sts").meta.events.register("after-call.sts.AssumeRole", taken_over)
    with pytest.raises(TransitionError, match="issue 1 was superseded"):
        issue(env, env.store.get(rid), evidence=None)
    dropped = [
        r
        for r in read_records(env.audit.path)
        if r["event"] == "issue_failed" and r.get("request_id") == rid
    ]
    assert len(dropped) == 1 and dropped[0]["access_key_id"].startswith("ASIA")
    assert "superseded" in dropped[0]["error"]
    assert [r["event"] for r in read_records(env.audit.path) if r.get("request_id") == rid].count(
        "issued"
    ) == 1  # the record that came first stands; the store's state says it never took
    assert env.store.get(rid).status == models.APPROVED
