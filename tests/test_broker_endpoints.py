"""Every broker endpoint that decides something, called through the broker's HTTP API (and the
CLI where it has a command), by the person it is for and by someone it is not for.

One broker world for the module (tests/broker_world.py: moto with IAM enforcement on, the
PagerDuty simulator, `jitctl broker serve` as a subprocess); dave is a fourth person who is
neither a requester here nor an approver. Calls carry a proof signed with the caller's own keys
(tests/test_broker_e2e.signed), exactly what `jitctl` sends.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jitctl.errors import ExitCode
from tests.broker_world import TABLE, BrokerWorld, own_world
from tests.test_broker_e2e import _enforcement_off, send, signed
from tests.world import export

pytestmark = pytest.mark.slow
ENDPOINTS_ACCOUNT = "444400004444"

ALICE, BOB, CAROL, DAVE = (f"{n}@example.com" for n in ("alice", "bob", "carol", "dave"))


@pytest.fixture(scope="module")
def world(tmp_path_factory, pd_certs) -> Iterator[BrokerWorld]:
    # an account of its own: moto's state is shared per process
    with own_world(tmp_path_factory.mktemp("endpoints"), pd_certs, account=ENDPOINTS_ACCOUNT) as w:
        w.user(DAVE)  # no AWS permissions, not in the policy's groups
        with w.serving():
            yield w


@pytest.fixture(autouse=True)
def _enforced(enforcing) -> None:
    """moto's IAM enforcement on for every test here (conftest.enforcing)."""


def call(world: BrokerWorld, person: str, method: str, path: str, doc: Any = None):
    body = b"" if doc is None else json.dumps(doc).encode()
    return send(world, method, path, signed(world, person, method, path, body), body)


def pending_for(world: BrokerWorld, person: str, reason: str) -> str:
    # --fresh: a live grant of the person's from an earlier test would be handed out again
    out = world.run(person, "request", "prod-readonly", "--reason", reason, "--no-wait", "--fresh")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def approved_for(world: BrokerWorld, person: str, reason: str) -> str:
    rid = pending_for(world, person, reason)
    decided = world.run(CAROL, "approve", rid, "--yes")
    assert decided.returncode == 0, decided.stderr
    return rid


def record(world: BrokerWorld, rid: str) -> dict[str, Any]:
    status, doc = call(world, CAROL, "GET", f"/v1/requests/{rid}")
    assert status == 200, doc
    return doc["request"]


def denied(status: int, doc: dict[str, Any], *words: str) -> None:
    assert status == 403, doc
    assert doc["error"]["exit_code"] == ExitCode.DENIED
    for word in words:
        assert word in doc["error"]["message"], doc


# ------------------------------------------------------------------ whose request it is


def test_bob_cannot_wait_for_issue_or_report_on_alices_request(world):
    rid = approved_for(world, ALICE, "INC-26 alice")
    path = f"/v1/requests/{rid}"
    denied(*call(world, BOB, "GET", f"{path}/wait?seconds=0"), f"belongs to {ALICE}")
    denied(*call(world, BOB, "POST", f"{path}/issue"), f"belongs to {ALICE}")
    taken = world.run(BOB, "wait", rid, "--json")
    assert taken.returncode == ExitCode.DENIED, taken.stderr
    assert json.loads(taken.stdout)["error"]["exit_code"] == ExitCode.DENIED  # no credentials
    assert not (world.root / "home" / BOB / ".aws" / "credentials").exists()
    assert record(world, rid)["status"] == "approved"
    # Its owner waits and gets it: the request was usable all along.
    mine = world.run(ALICE, "wait", rid, "--json")
    assert mine.returncode == 0, mine.stderr
    assert json.loads(mine.stdout)["status"] == "issued"
    # Once issued, bob can neither mark its delivery failed (which would let it be issued
    # again) nor reuse it.
    denied(*call(world, BOB, "POST", f"{path}/delivery-failed", {"error": "x"}), ALICE)
    assert record(world, rid).get("delivery_failed_at") is None
    denied(*call(world, BOB, "POST", f"{path}/reuse"), f"belongs to {ALICE}")
    status, doc = call(world, ALICE, "POST", f"{path}/reuse")
    assert status == 200 and doc["request"]["request_id"] == rid
    # Alice's own report of a failed delivery is recorded and audited, and lets her wait
    # for the credentials once more.
    status, doc = call(world, ALICE, "POST", f"{path}/delivery-failed", {"error": "disk full"})
    assert (status, doc) == (200, {})  # a JSON object, as every answer (the client checks)
    assert record(world, rid)["delivery_failed_at"] is not None
    status, doc = call(world, ALICE, "GET", f"/v1/audit?request={rid}")
    assert status == 200, doc
    failed = [r for r in doc["records"] if r["event"] == "delivery_failed"]
    assert len(failed) == 1 and failed[0]["error"] == "disk full"
    reused = [r for r in doc["records"] if r["event"] == "reused"]
    assert [r["person"] for r in reused] == [ALICE]  # her use was recorded; bob's refused
    again = world.run(ALICE, "wait", rid, "--json")
    assert again.returncode == 0, again.stderr


def test_a_pending_request_is_denied_not_revoked(world):
    rid = pending_for(world, ALICE, "INC-26 not yet")
    status, doc = call(world, BOB, "POST", f"/v1/requests/{rid}/revoke", {"reason": "no"})
    assert status == 400 and "not issued: there is no grant to revoke" in doc["error"]["message"]
    assert doc["error"]["hint"] == "deny a pending request instead"
    assert world.run(ALICE, "cancel", rid).returncode == 0


def test_bob_cannot_cancel_alices_request(world):
    rid = pending_for(world, ALICE, "INC-26 cancel")
    out = world.run(BOB, "cancel", rid)
    assert out.returncode == ExitCode.DENIED and f"only {ALICE} can cancel" in out.stderr
    denied(*call(world, BOB, "POST", f"/v1/requests/{rid}/cancel"), f"only {ALICE}")
    assert record(world, rid)["status"] == "pending"
    assert world.run(ALICE, "cancel", rid).returncode == 0
    assert record(world, rid)["status"] == "cancelled"


def test_a_cancel_through_the_api_is_audited_as_the_requesters_own(world):
    """`interrupted` is the client's to say (a Ctrl-C of its run): absent, the cancel is the
    requester's own decision, and the audit trail says so; anything but a boolean is refused."""
    rid = pending_for(world, ALICE, "INC-26 api cancel")
    path = f"/v1/requests/{rid}/cancel"
    status, doc = call(world, ALICE, "POST", path, {"interrupted": "yes"})
    assert status == 400 and "interrupted must be true or false" in doc["error"]["message"]
    assert record(world, rid)["status"] == "pending"
    status, doc = call(world, ALICE, "POST", path)
    assert status == 200 and doc["request"]["status"] == "cancelled", doc
    status, doc = call(world, ALICE, "GET", f"/v1/audit?request={rid}")
    assert status == 200, doc
    whys = [r["why"] for r in doc["records"] if r["event"] == "cancelled"]
    assert whys == ["cancelled by the requester"]


# ------------------------------------------------------------------ deciding


def test_only_an_approver_who_is_not_the_requester_may_approve(world):
    """The approve route itself refuses (a client need not ask may-decide first): nothing
    is recorded, and the request stays pending for a real approver."""
    rid = pending_for(world, ALICE, "INC-26 approve")
    path = f"/v1/requests/{rid}/approve"
    status, doc = call(world, DAVE, "POST", path, {})  # the store alone would record him
    denied(status, doc, "may not decide")
    status, doc = call(world, ALICE, "POST", path, {})
    denied(status, doc, "someone else must decide")
    assert (record(world, rid)["status"], record(world, rid)["approvers"]) == ("pending", [])
    status, doc = call(world, ALICE, "GET", f"/v1/audit?request={rid}")
    assert status == 200 and "approved" not in [r["event"] for r in doc["records"]], doc
    status, doc = call(world, BOB, "POST", path, {})
    assert status == 200 and doc["request"]["approvers"] == [BOB], doc


def test_only_an_approver_who_is_not_the_requester_may_deny(world):
    rid = pending_for(world, ALICE, "INC-26 deny")
    path = f"/v1/requests/{rid}/deny"
    status, doc = call(world, ALICE, "POST", path, {"reason": "mine"})
    denied(status, doc, "someone else must decide")
    assert doc["error"]["hint"] == f"send it to one of: {BOB}, {CAROL}"
    status, doc = call(world, DAVE, "POST", path, {"reason": "nope"})
    denied(status, doc, "may not decide")
    assert doc["error"]["hint"] == f"approvers: {BOB}, {CAROL}"
    for no_reason in ({}, {"reason": "  "}):  # a denial says why, whichever client sends it
        status, doc = call(world, CAROL, "POST", path, no_reason)
        assert status == 400 and doc["error"]["exit_code"] == ExitCode.USAGE, doc
        assert doc["error"]["message"] == "a reason is required"
    assert record(world, rid)["status"] == "pending"
    out = world.run(CAROL, "deny", rid, "--reason", "not during the freeze", "--yes")
    assert out.returncode == 0, out.stderr
    doc = record(world, rid)
    assert (doc["status"], doc["decided_by"]) == ("denied", CAROL)
    status, doc = call(world, ALICE, "GET", f"/v1/audit?request={rid}")
    assert status == 200, doc
    (record_,) = [r for r in doc["records"] if r["event"] == "denied"]  # the trail says so
    assert (record_["person"], record_["reason"]) == (CAROL, "not during the freeze")


def test_decidable_approvers_and_may_decide_name_only_other_approvers(world):
    rid = pending_for(world, ALICE, "INC-26 who")
    bobs = pending_for(world, BOB, "INC-26 bobs")

    def decidable(person: str) -> list[str]:
        status, doc = call(world, person, "GET", "/v1/decidable")
        assert status == 200, doc
        return [r["request_id"] for r in doc["requests"]]

    assert rid in decidable(CAROL) and bobs in decidable(CAROL)
    assert rid not in decidable(ALICE) and rid not in decidable(DAVE)
    assert bobs not in decidable(BOB) and bobs not in decidable(ALICE)
    status, doc = call(world, ALICE, "GET", f"/v1/requests/{rid}/approvers")
    assert status == 200 and sorted(doc["approvers"]) == [BOB, CAROL]
    status, doc = call(world, BOB, "GET", f"/v1/requests/{bobs}/approvers")
    assert status == 200 and doc["approvers"] == [CAROL]
    status, doc = call(world, CAROL, "GET", f"/v1/requests/{rid}/may-decide")
    assert status == 200 and doc["request"]["request_id"] == rid
    denied(*call(world, ALICE, "GET", f"/v1/requests/{rid}/may-decide"), "someone else")
    denied(*call(world, DAVE, "GET", f"/v1/requests/{rid}/may-decide"), "may not decide")
    for person, own in ((ALICE, rid), (BOB, bobs)):
        assert world.run(person, "cancel", own).returncode == 0
    assert rid not in decidable(CAROL) and bobs not in decidable(CAROL)  # nobody's to decide


def test_only_the_requester_or_an_approver_may_revoke(world):
    rid = approved_for(world, ALICE, "INC-26 revoke")
    assert world.run(ALICE, "wait", rid).returncode == 0
    path = f"/v1/requests/{rid}/revoke"
    status, doc = call(world, DAVE, "POST", path, {"reason": "because"})
    denied(status, doc, "may not revoke")
    assert doc["error"]["hint"] == f"approvers: {BOB}, {CAROL}"  # who dave could ask
    assert record(world, rid)["status"] == "issued"
    out = world.run(BOB, "revoke", rid, "--reason", "done with it")
    assert out.returncode == 0, out.stderr
    doc = record(world, rid)
    assert (doc["status"], doc["revoked_by"]) == ("revoked", BOB)
    # A revoked grant is dead: its owner cannot reuse its cached credentials either.
    denied(*call(world, ALICE, "POST", f"/v1/requests/{rid}/reuse"), "is not live (revoked)")


def test_a_grant_cut_off_by_a_later_revocation_cannot_be_reused(world):
    """Revoking alice's newer grant on the role denies her earlier sessions too (one deny per
    person and role): the earlier grant is cut off, and reusing it is refused as such."""
    first = approved_for(world, ALICE, "INC-26 first")
    assert world.run(ALICE, "wait", first).returncode == 0
    second = approved_for(world, ALICE, "INC-26 second")
    assert world.run(ALICE, "wait", second).returncode == 0
    status, doc = call(world, ALICE, "POST", f"/v1/requests/{first}/reuse")
    assert status == 200, doc  # live until the revocation below
    assert world.run(BOB, "revoke", second, "--reason", "leaked").returncode == 0
    denied(*call(world, ALICE, "POST", f"/v1/requests/{first}/reuse"), "is not live (cut off)")


# ------------------------------------------------------------------ the long-poll


def test_a_wait_that_times_out_answers_still_pending(world):
    rid = pending_for(world, ALICE, "INC-26 poll")
    status, doc = call(world, ALICE, "GET", f"/v1/requests/{rid}/wait?seconds=0")
    assert status == 200 and doc["decided"] is False
    assert doc["request"]["status"] == "pending"
    status, doc = call(world, ALICE, "GET", f"/v1/requests/{rid}/wait?seconds=soon")
    assert status == 400 and "seconds must be a number" in doc["error"]["message"]
    assert world.run(CAROL, "approve", rid, "--yes").returncode == 0
    status, doc = call(world, ALICE, "GET", f"/v1/requests/{rid}/wait?seconds=0")
    assert status == 200 and doc["decided"] is True and doc["request"]["status"] == "approved"


def test_a_wait_on_a_request_that_expired_says_so(world):
    """A pending request past its expiry (its stored expiry moved back by the table's
    operator): the long-poll answers "expired" (exit 4), never "still pending"."""
    rid = pending_for(world, ALICE, "INC-26 expiring")
    past = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    world.move_expiry(rid, past)
    status, doc = call(world, ALICE, "GET", f"/v1/requests/{rid}/wait?seconds=0")
    assert status == 409 and doc["error"]["exit_code"] == ExitCode.TIMEOUT, doc
    assert "expired before anyone decided" in doc["error"]["message"]
    out = world.run(ALICE, "wait", rid)
    assert out.returncode == ExitCode.TIMEOUT and "expired" in out.stderr


# ------------------------------------------------------------------ what a call may carry


def mine_pending(world: BrokerWorld, reason: str) -> list[dict[str, Any]]:
    status, doc = call(world, ALICE, "GET", "/v1/requests?mine=1&pending=1")
    assert status == 200, doc
    return [r for r in doc["requests"] if r["reason"] == reason]


def _too_big() -> bytes:
    from jitctl.broker.handler import MAX_BODY

    assert MAX_BODY == 64 * 1024
    doc = {"role": "prod-readonly", "reason": "INC-26 big", "padding": ""}
    doc["padding"] = "x" * (MAX_BODY + 1 - len(json.dumps(doc).encode()))
    body = json.dumps(doc).encode()
    assert len(body) == MAX_BODY + 1
    return body


# `broker serve` answers such a body 413 from its Content-Length before the handler sees it
# (tests/test_broker_hardening.py); the handler's own limit is what guards the Lambda broker.


def test_the_lambda_broker_refuses_a_body_over_64_kib_as_bad_input(world, monkeypatch):
    """Behind a function URL no server stands in front: the broker's own limit refuses it
    (exit 2, naming the limit), before the proof is even read."""
    from jitctl.broker import aws_lambda
    from jitctl.broker.handler import MAX_BODY
    from tests.test_broker_e2e import function_url_event

    export(monkeypatch, world.broker_env())  # as the broker
    monkeypatch.setattr(aws_lambda, "_broker", None)  # a cold start with this environment
    event = function_url_event(world, ALICE, "POST", "/v1/requests", _too_big())
    answer = aws_lambda.handler(event)
    error = json.loads(answer["body"])["error"]
    assert answer["statusCode"] == 400 and error["exit_code"] == ExitCode.USAGE, answer
    assert f"over {MAX_BODY} bytes" in error["message"]
    assert mine_pending(world, "INC-26 big") == []


@pytest.mark.parametrize("seconds", [0, -60, 43201, "3600", 1800.5, True, None])
def test_duration_seconds_must_be_a_whole_number_of_seconds(world, seconds):
    reason = f"INC-26 duration {seconds!r}"
    doc = {"role": "prod-readonly", "reason": reason, "duration_seconds": seconds}
    status, answer = call(world, ALICE, "POST", "/v1/requests", doc)
    if seconds is None:  # absent: the role's default, accepted
        assert status == 200, answer
        assert world.run(ALICE, "cancel", answer["request"]["request_id"]).returncode == 0
        return
    assert status == 400 and answer["error"]["exit_code"] == ExitCode.USAGE, answer
    assert "duration_seconds must be a whole number from 1 to 43200" in answer["error"]["message"]
    assert mine_pending(world, reason) == []


@pytest.mark.parametrize("glass", ["yes", 1, None])
def test_break_glass_must_be_true_or_false(world, glass):
    """Anything but a JSON boolean is bad input: "yes" or 1 never reads as a break-glass ask."""
    reason = f"INC-26 glass {glass!r}"
    doc = {"role": "prod-readonly", "reason": reason, "break_glass": glass}
    status, answer = call(world, ALICE, "POST", "/v1/requests", doc)
    assert status == 400 and answer["error"]["exit_code"] == ExitCode.USAGE, answer
    assert "break_glass must be true or false" in answer["error"]["message"]
    assert mine_pending(world, reason) == []


def test_an_unexpected_error_answers_500_without_its_details(world):
    """A request item the broker cannot read (written by someone with the table's keys): the
    broker's bug path says "internal error" and nothing of the exception, to anyone."""
    secret_text = "not json: s3cr3t-detail"
    with _enforcement_off():
        world.admin_client("dynamodb").put_item(
            TableName=TABLE,
            Item={
                "request_id": {"S": "r-broken1"},
                "status": {"S": "pending"},
                "requester": {"S": ALICE},
                "role": {"S": "prod-readonly"},
                "version": {"N": "1"},
                "body": {"S": secret_text},
            },
        )
    status, doc = call(world, DAVE, "GET", "/v1/requests/r-broken1")
    assert status == 500
    assert doc == {"error": {"message": "internal error", "exit_code": 1}}
    out = world.run(DAVE, "status", "r-broken1")
    assert out.returncode == ExitCode.ERROR and "s3cr3t" not in out.stderr + out.stdout
    log = (world.broker_dir / "broker.log").read_text()
    assert "unexpected JSONDecodeError on /v1/requests/r-broken1" in log and "s3cr3t" not in log


def test_a_wrong_method_is_405_and_an_unknown_path_404(world):
    """A known path asked with the wrong method, and a path that is no endpoint: each says
    which, and neither reaches an action."""
    rid = pending_for(world, ALICE, "INC-31 methods")
    status, doc = call(world, BOB, "GET", f"/v1/requests/{rid}/approve")
    assert status == 405 and "GET is not allowed" in doc["error"]["message"]
    status, doc = call(world, BOB, "POST", "/v1/requests/nothing/here")
    assert status == 404 and "no broker endpoint" in doc["error"]["message"]
    assert record(world, rid)["status"] == "pending"


@pytest.mark.parametrize(
    "body,says",
    [
        (b'{"role": "prod-readonly", "reason": ', "the request body is not JSON"),
        (b"\xff\xfe not utf-8", "the request body is not JSON"),
        (b'["prod-readonly", "INC-26 list"]', "the request body must be a JSON object"),
    ],
    ids=["cut-short", "not-utf-8", "a-list"],
)
def test_a_body_that_is_not_a_json_object_is_bad_input(world, body, says):
    """Signed correctly, but not a JSON object: 400 and exit 2 saying so, not a 500 from the
    action that tried to read it; nothing is recorded."""
    before = len(_mine_pending_all(world))
    proof = signed(world, ALICE, "POST", "/v1/requests", body)
    status, doc = send(world, "POST", "/v1/requests", proof, body)
    assert status == 400 and doc["error"]["exit_code"] == ExitCode.USAGE, doc
    assert doc["error"]["message"].startswith(says)
    assert len(_mine_pending_all(world)) == before


def _mine_pending_all(world: BrokerWorld) -> list[dict[str, Any]]:
    status, doc = call(world, ALICE, "GET", "/v1/requests?mine=1&pending=1")
    assert status == 200, doc
    return doc["requests"]
