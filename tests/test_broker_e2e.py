"""jitctl through its broker, end to end, with moto's IAM enforcement on: the gate holds.

Requesters hold no AWS permissions; only the broker's principal may assume the roles and
write the store. Everything a requester does goes through `jitctl` with a client config that
names only the broker.
"""

from __future__ import annotations

import configparser
import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.broker_world import TABLE, BrokerWorld

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory, pd_certs) -> Iterator[BrokerWorld]:
    """One broker, its own moto server and PagerDuty simulator, for this module's tests."""
    from moto.server import ThreadedMotoServer

    from tests.pdsim import PagerDutySim

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    with PagerDutySim(pd_certs) as pd:
        w = BrokerWorld(tmp_path_factory.mktemp("broker"), f"http://{host}:{port}", pd)
        w.build()  # enforcement off: the admin sets the account up
        with w.serving():
            yield w
    server.stop()


@pytest.fixture(autouse=True)
def enforcing() -> Iterator[None]:
    """moto's IAM enforcement on while each test runs: unsigned or unauthorized calls fail."""
    from moto.core.authorization import enable_iam_authentication

    old = os.environ.get("INITIAL_NO_AUTH_ACTION_COUNT")
    os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
    try:
        with enable_iam_authentication():
            yield
    finally:
        if old is None:
            os.environ.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)
        else:
            os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = old


def on_call(world: BrokerWorld, email: str) -> None:
    now = datetime.now(UTC)
    start, end = now - timedelta(hours=1), now + timedelta(hours=4)
    world.pd.add_oncall(world.pd_ids[email], "PEP1234", 1, start=start, end=end)


def profile_keys(world: BrokerWorld, person: str, profile: str) -> dict[str, str]:
    ini = configparser.RawConfigParser()
    ini.read(world.root / "home" / person / ".aws" / "credentials")
    return dict(ini[profile])


def test_on_call_fast_path_through_the_broker(world):
    on_call(world, "alice@example.com")
    out = world.run("alice@example.com", "request", "prod-readonly", "--reason", "INC-1", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["status"] == "issued" and doc["approval"] == "on_call"
    assert doc["requester"] == "alice@example.com"
    keys = profile_keys(world, "alice@example.com", "jit-prod-readonly")
    issued = boto3.client(
        "sts",
        endpoint_url=world.moto,
        region_name="us-east-1",
        aws_access_key_id=keys["aws_access_key_id"],
        aws_secret_access_key=keys["aws_secret_access_key"],
        aws_session_token=keys["aws_session_token"],
    )
    arn = issued.get_caller_identity()["Arn"]
    assert arn.startswith("arn:aws:sts::123456789012:assumed-role/jit-prod-readonly/")
    assert (
        "aws_secret_access_key" not in out.stdout
        and keys["aws_secret_access_key"] not in out.stdout
    )


def test_peer_approval_through_the_broker(world):
    waiting = world.popen("bob@example.com", "request", "prod-readonly", "--reason", "INC-2")
    deadline = time.monotonic() + 30
    rid = None
    while rid is None and time.monotonic() < deadline:
        listed = world.run("carol@example.com", "list", "--pending", "--json")
        assert listed.returncode == 0, listed.stderr
        pending = json.loads(listed.stdout)
        rid = pending[0]["request_id"] if pending else None
        time.sleep(0.2)
    assert rid, "bob's request never showed up as pending"
    mine = world.run("bob@example.com", "approve", rid, "--yes")
    assert mine.returncode == 3 and "someone else" in mine.stderr
    approved = world.run("carol@example.com", "approve", rid, "--yes")
    assert approved.returncode == 0, approved.stderr
    _, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, err
    keys = profile_keys(world, "bob@example.com", "jit-prod-readonly")
    assert keys["x_jitctl_request_id"] == rid
    status = json.loads(world.run("bob@example.com", "status", rid, "--json").stdout)
    assert status["status"] == "issued" and status["approvers"] == ["carol@example.com"]


def test_requesters_cannot_skip_the_gate_in_aws(world):
    sts = world.boto("alice@example.com", "sts")
    with pytest.raises(ClientError) as denied:
        sts.assume_role(
            RoleArn="arn:aws:iam::123456789012:role/jit-prod-readonly",
            RoleSessionName="alice-direct",
        )
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    ddb = world.boto("alice@example.com", "dynamodb")
    with pytest.raises(ClientError) as refused:
        ddb.put_item(
            TableName=TABLE,
            Item={"request_id": {"S": "r-forged"}, "body": {"S": "{}"}},
        )
    # moto answers DynamoDB's AccessDenied as a bare 403 (AWS says AccessDeniedException)
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "not authorized to perform: dynamodb:PutItem" in str(refused.value)


def test_a_broker_with_another_server_id_is_refused(world):
    out = world.run("alice@example.com", "list", JITCTL_BROKER_SERVER_ID="someone-else")
    assert out.returncode == 5
    assert "not 'someone-else'" in out.stderr and "Traceback" not in out.stderr


def test_an_unreachable_broker_exits_5(world):
    out = world.run("alice@example.com", "list", JITCTL_BROKER_URL="http://127.0.0.1:9")
    assert out.returncode == 5 and "cannot reach the broker" in out.stderr
