"""`jitctl extend` through the broker, with moto's IAM enforcement on: the broker decides and
issues the extension (requesters hold no AWS permissions), and only the grant's own requester
may ask for one, by the CLI or by calling the broker's HTTP API directly."""

from __future__ import annotations

import configparser
import json
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from jitctl.timeutil import parse_rfc3339
from tests.broker_world import POLICY, BrokerWorld, own_world
from tests.test_broker_e2e import send, signed

pytestmark = pytest.mark.slow

ACCOUNT = "333300003333"  # a world of its own: moto's state is shared by the whole process
ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"
ROLE = "prod-readonly"
SLACK = timedelta(seconds=90)


@pytest.fixture(scope="module")
def world(tmp_path_factory, pd_certs) -> Iterator[BrokerWorld]:
    policy = POLICY.replace("444455556666", ACCOUNT)
    root = tmp_path_factory.mktemp("broker-extend")
    with own_world(root, pd_certs, account=ACCOUNT, policy=policy) as w, w.serving():
        yield w


@pytest.fixture(autouse=True)
def _enforced(enforcing) -> None:
    """Every test here runs with moto's IAM enforcement on (conftest.enforcing)."""


def only_on_call(world: BrokerWorld, person: str) -> None:
    """``person`` alone is on call (level 1 of the role's escalation policy) from now on."""
    world.pd.rotate(world.pd_ids[person], "PEP1234")


def run_json(world: BrokerWorld, person: str, *args: str) -> dict:
    out = world.run(person, *args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def grant(world: BrokerWorld) -> dict:
    only_on_call(world, ALICE)
    return run_json(world, ALICE, "request", ROLE, "--reason", "INC-7", "--duration", "1h")


def expiry_in_profile(world: BrokerWorld, person: str) -> tuple[datetime, str]:
    ini = configparser.RawConfigParser()
    ini.read(world.root / "home" / person / ".aws" / "credentials")
    section = ini[f"jit-{ROLE}"]
    return parse_rfc3339(section["x_security_token_expires"]), section["x_jitctl_request_id"]


def near(a: datetime, b: datetime) -> bool:
    return abs(a - b) <= SLACK


def test_an_on_call_extension_through_the_broker(world: BrokerWorld) -> None:
    granted = grant(world)
    rid = granted["request_id"]
    ext = run_json(world, ALICE, "extend", rid, "--by", "30m", "--reason", "INC-7 goes on")
    assert ext["status"] == "issued" and ext["approval"] == "on_call" and ext["extends"] == rid
    new_end = parse_rfc3339(granted["ends_at"]) + timedelta(minutes=30)
    expires, marker = expiry_in_profile(world, ALICE)
    assert near(expires, new_end) and marker == rid
    assert near(parse_rfc3339(run_json(world, ALICE, "status", rid)["ends_at"]), new_end)
    log = (world.broker_dir / "audit.jsonl").read_text().splitlines()
    extended = [json.loads(line) for line in log if '"extended"' in line]
    assert [r["extends"] for r in extended if r["event"] == "extended"][-1] == rid


def test_nobody_else_extends_a_grant_by_the_cli_or_the_api(world: BrokerWorld) -> None:
    granted = grant(world)
    rid = granted["request_id"]
    before = run_json(world, CAROL, "list")
    out = world.run(BOB, "extend", rid, "--by", "30m", "--reason", "helping", "--no-wait")
    assert out.returncode == 3 and f"belongs to {ALICE}" in out.stderr, out.stderr
    path = f"/v1/requests/{rid}/extend"
    body = json.dumps({"by_seconds": 1800, "reason": "helping"}).encode()
    status, doc = send(world, "POST", path, signed(world, BOB, "POST", path, body), body)
    assert status == 403 and doc["error"]["exit_code"] == 3, doc
    assert run_json(world, CAROL, "list") == before
    assert run_json(world, ALICE, "status", rid)["ends_at"] == granted["ends_at"]


def test_off_call_an_approver_decides_the_extension(world: BrokerWorld) -> None:
    granted = grant(world)
    rid = granted["request_id"]
    only_on_call(world, CAROL)  # alice's shift is over
    out = world.run(ALICE, "extend", rid, "--by", "45m", "--reason", "INC-7 later", "--no-wait")
    assert out.returncode == 0, out.stderr
    ext_id = out.stdout.strip()
    assert run_json(world, ALICE, "status", ext_id)["status"] == "pending"
    approved = world.run(BOB, "approve", ext_id, "--yes")
    assert approved.returncode == 0, approved.stderr
    done = run_json(world, ALICE, "wait", ext_id)
    assert done["status"] == "issued" and done["approvers"] == [BOB] and done["extends"] == rid
    new_end = parse_rfc3339(granted["ends_at"]) + timedelta(minutes=45)
    expires, marker = expiry_in_profile(world, ALICE)
    assert near(expires, new_end) and marker == rid
