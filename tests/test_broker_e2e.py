"""jitctl through its broker, end to end, with moto's IAM enforcement on: the gate holds.

Requesters hold no AWS permissions; only the broker's principal may assume the roles and
write the store. Everything a requester does goes through `jitctl` with a client config that
names only the broker.
"""

from __future__ import annotations

import configparser
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.broker_world import AUDIT_TABLE, SERVER_ID, TABLE, BrokerWorld, own_world
from tests.world import export, key_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory, pd_certs) -> Iterator[BrokerWorld]:
    """One broker, its own moto server and PagerDuty simulator, for this module's tests."""
    with own_world(tmp_path_factory.mktemp("broker"), pd_certs) as w, w.serving():
        yield w


@pytest.fixture(autouse=True)
def _enforced(enforcing) -> None:
    """Every test here runs with moto's IAM enforcement on (conftest.enforcing)."""


def profile_keys(world: BrokerWorld, person: str, profile: str) -> dict[str, str]:
    ini = configparser.RawConfigParser()
    ini.read(world.root / "home" / person / ".aws" / "credentials")
    return dict(ini[profile])


def test_on_call_fast_path_through_the_broker(world):
    world.on_call("alice@example.com")
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
    assert arn.startswith("arn:aws:sts::444455556666:assumed-role/jit-prod-readonly/")
    assert (
        "aws_secret_access_key" not in out.stdout
        and keys["aws_secret_access_key"] not in out.stdout
    )
    # The client has no policy: the role's region came with the credentials.
    config = configparser.RawConfigParser()
    config.read(world.root / "home" / "alice@example.com" / ".aws" / "config")
    assert config.get("profile jit-prod-readonly", "region") == "eu-west-1"


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
            RoleArn="arn:aws:iam::444455556666:role/jit-prod-readonly",
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
    assert "nothing was requested" not in out.stderr  # issue 21 item 18: a read asks nothing


# ------------------------------------------------------------------ the proof, at the door


def signed(world: BrokerWorld, person: str, method: str, path: str, body: bytes = b""):
    """The headers `jitctl` would send for this call, signed with the person's own keys."""
    from botocore.credentials import Credentials

    from jitctl.broker.proof import make_proof

    keys = world.keys[person]
    creds = Credentials(keys["AWS_ACCESS_KEY_ID"], keys["AWS_SECRET_ACCESS_KEY"])
    return make_proof(
        creds.get_frozen_credentials(),
        sts_url=world.moto,
        sts_region="us-east-1",
        server_id=SERVER_ID,
        method=method,
        path=path,
        body=body,
        now=datetime.now(UTC),
    )


def send(world: BrokerWorld, method: str, path: str, headers: dict, body: bytes = b""):
    import urllib.error
    import urllib.request

    req = urllib.request.Request(
        world.url + path, data=body or None, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_proof_works_once_and_only_for_its_own_call(world):
    headers = signed(world, "alice@example.com", "GET", "/v1/whoami")
    status, doc = send(world, "GET", "/v1/whoami", headers)
    assert status == 200 and doc["caller"]["person"] == "alice@example.com"
    replayed, doc = send(world, "GET", "/v1/whoami", headers)
    assert replayed == 401 and "nonce" in doc["error"]["message"]


def test_a_tampered_body_or_path_is_refused(world):
    body = json.dumps({"role": "prod-readonly", "reason": "INC-9"}).encode()
    headers = signed(world, "alice@example.com", "POST", "/v1/requests", body)
    other = json.dumps({"role": "prod-readonly", "reason": "INC-9", "duration_seconds": 7200})
    status, doc = send(world, "POST", "/v1/requests", headers, other.encode())
    assert status == 401 and doc["error"]["exit_code"] == 3
    headers = signed(world, "alice@example.com", "GET", "/v1/whoami")
    status, _ = send(world, "GET", "/v1/decidable", headers)
    assert status == 401


def test_no_proof_no_answer(world):
    status, doc = send(world, "GET", "/v1/requests", {})
    assert status == 401 and "proof" in doc["error"]["message"].lower()
    status, doc = send(world, "GET", "/v1/info", {})
    assert status == 200 and doc["server_id"] == SERVER_ID and "secret" not in json.dumps(doc)


# ------------------------------------------------------------------ the Lambda host


def function_url_event(world, person, method, path, body=b"", access_key=None) -> dict:
    """A function-URL event in AWS's documented shape (payload format 2.0)."""
    keys = world.keys[person]
    raw_path, _, query = path.partition("?")
    return {
        "version": "2.0",
        "rawPath": raw_path,
        "rawQueryString": query,
        "headers": {k.lower(): v for k, v in signed(world, person, method, path, body).items()},
        "requestContext": {
            "accountId": "444455556666",
            "http": {"method": method, "path": raw_path, "protocol": "HTTP/1.1"},
            "authorizer": {
                "iam": {
                    "accessKey": access_key or keys["AWS_ACCESS_KEY_ID"],
                    "accountId": "444455556666",
                    "callerId": "AIDAEXAMPLE",
                    "userArn": f"arn:aws:iam::444455556666:user/{person}",
                    "userId": "AIDAEXAMPLE",
                }
            },
        },
        "body": body.decode(),
        "isBase64Encoded": False,
    }


def test_the_lambda_handler_serves_a_function_url_event(world, monkeypatch):
    from jitctl.broker import aws_lambda

    export(monkeypatch, world.broker_env())  # as the broker
    monkeypatch.setattr(aws_lambda, "_broker", None)  # a cold start with this environment
    event = function_url_event(world, "carol@example.com", "GET", "/v1/requests?limit=5")
    answer = aws_lambda.handler(event)
    assert answer["statusCode"] == 200, answer["body"]
    assert isinstance(json.loads(answer["body"])["requests"], list)
    # Lambda authenticated bob's key, but the proof is carol's: refused.
    bob_key = world.keys["bob@example.com"]["AWS_ACCESS_KEY_ID"]
    event = function_url_event(world, "carol@example.com", "GET", "/v1/whoami", access_key=bob_key)
    answer = aws_lambda.handler(event)
    assert answer["statusCode"] == 401
    assert aws_lambda.handler({"jitctl": "housekeeping"})["ok"] is True  # the sweep ran


def test_doctor_whoami_and_roles_ask_the_broker(world):
    doctor = world.run("carol@example.com", "doctor", "--json")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert checks["broker"]["status"] == "pass" and SERVER_ID in checks["broker"]["detail"]
    assert "carol@example.com" in checks["person"]["detail"]
    who = json.loads(world.run("carol@example.com", "whoami", "--json").stdout)
    assert who["person"] == "carol@example.com" and who["principal"].endswith(
        "user/carol@example.com"
    )
    roles = json.loads(world.run("carol@example.com", "roles", "--json").stdout)
    assert [r["role"] for r in roles] == ["prod-readonly"]
    wrong = world.run("carol@example.com", "doctor", "--json", JITCTL_BROKER_SERVER_ID="nope")
    checks = {c["name"]: c for c in json.loads(wrong.stdout)["checks"]}
    assert wrong.returncode == 5 and checks["broker"]["status"] == "fail"


# ------------------------------------------------------------------ the audit trail


def test_the_broker_writes_a_signed_trail_requesters_cannot(world):
    world.on_call("alice@example.com")
    done = world.run("alice@example.com", "request", "prod-readonly", "--reason", "INC-7", "--json")
    assert done.returncode == 0, done.stderr
    rid = json.loads(done.stdout)["request_id"]
    log = world.run("carol@example.com", "audit", "log", "--request", rid, "--json")
    assert log.returncode == 0, log.stderr
    records = json.loads(log.stdout)
    events = [r["event"] for r in records]
    assert events[:3] == ["requested", "auto_approved", "issued"]
    assert {r["actor"] for r in records} == {"arn:aws:iam::444455556666:user/alice@example.com"}
    verified = world.run("carol@example.com", "audit", "verify", "--remote", "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    report = json.loads(verified.stdout)
    assert report["signed"] is True and report["remote"][0]["records"] >= 3
    ddb = world.boto("alice@example.com", "dynamodb")
    with pytest.raises(ClientError) as refused:
        ddb.put_item(TableName=AUDIT_TABLE, Item={"chain": {"S": "x"}, "seq": {"N": "1"}})
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_the_broker_answers_the_audit_a_page_at_a_time(world):
    """`GET /v1/audit` with ``limit`` (this version's client): pages followed by their ``next``
    give exactly the records of one unpaged answer (an older client's call), in order. A cursor
    it never gave out is refused."""
    from urllib.parse import quote

    world.on_call("alice@example.com")
    done = world.run("alice@example.com", "request", "prod-readonly", "--reason", "INC-8", "--json")
    assert done.returncode == 0, done.stderr
    rid = json.loads(done.stdout)["request_id"]

    def get(path: str) -> tuple[int, dict]:
        return send(world, "GET", path, signed(world, "carol@example.com", "GET", path))

    status, whole = get(f"/v1/audit?request={rid}")
    assert status == 200 and len(whole["records"]) >= 3 and "next" not in whole
    pages, after = [], ""
    while True:
        cursor = f"&after={quote(after)}" if after else ""
        status, doc = get(f"/v1/audit?request={rid}&limit=1{cursor}")
        assert status == 200, doc
        pages.append(doc["records"])
        after = doc.get("next", "")
        if not after:
            break
    assert [len(p) for p in pages] == [1] * len(whole["records"])
    assert [r for p in pages for r in p] == whole["records"]
    status, doc = get("/v1/audit?limit=1&after=nonsense")
    assert status == 400 and doc["error"]["exit_code"] == 2


def test_a_record_forged_by_someone_with_table_access_fails_verification(world):
    """Even a principal that may write the audit table cannot make a record the broker's key
    signed: `audit verify --remote` (run by the broker) exits 6 naming the record."""
    from jitctl.audit.log import record_hash

    dba = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["dynamodb:PutItem", "dynamodb:DeleteItem"],
                "Resource": "*",
            }
        ],
    }
    with _enforcement_off():
        world.user("dba", dba)
    forged = {
        "ts": "2026-11-28T04:00:00Z",
        "event": "issued",
        "request_id": "r-forged00",
        "actor": "arn:aws:iam::444455556666:user/bob@example.com",
        "person": "bob@example.com",
        "role": "prod-readonly",
        "chain": "f0f0f0f0f0f0f0f0",
        "seq": 1,
        "prev": None,
    }
    forged["hash"] = record_hash(forged)
    text = json.dumps(forged, sort_keys=True, separators=(",", ":"))
    ddb = world.boto("dba", "dynamodb")
    key = {"chain": {"S": forged["chain"]}, "seq": {"N": "1"}}
    ddb.put_item(TableName=AUDIT_TABLE, Item={**key, "record": {"S": text}})
    try:
        out = world.run("carol@example.com", "audit", "verify", "--remote")
        assert out.returncode == 6, out.stderr
        assert "f0f0f0f0f0f0f0f0" in out.stderr and "sign" in out.stderr
    finally:
        ddb.delete_item(TableName=AUDIT_TABLE, Key=key)


@contextmanager
def _enforcement_off() -> Iterator[None]:
    from moto.core.authorization import disable_iam_authentication

    with disable_iam_authentication():
        yield


def test_policy_explain_comes_from_the_broker(world):
    out = world.run("alice@example.com", "policy", "explain", "prod-readonly", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["role"] == "prod-readonly" and "bob@example.com" in json.dumps(doc["approval"])
    unknown = world.run("alice@example.com", "policy", "explain", "prod-readonyl")
    assert unknown.returncode == 2 and "did you mean 'prod-readonly'" in unknown.stderr


def test_an_untrusted_or_foreign_tls_endpoint_is_not_a_broker(world):
    """The PagerDuty simulator speaks TLS with a private CA: untrusted, then trusted but not
    a broker. Either way nothing is sent on and the command exits 5 in one line."""
    untrusted = world.run("alice@example.com", "list", JITCTL_BROKER_URL=world.pd.url)
    assert untrusted.returncode == 5 and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
    foreign = world.run(
        "alice@example.com",
        "list",
        JITCTL_BROKER_URL=world.pd.url,
        JITCTL_BROKER_CA_BUNDLE=str(world.pd.ca_bundle),
    )
    assert foreign.returncode == 5 and "Traceback" not in foreign.stderr
    assert len(foreign.stderr.strip().splitlines()) == 1


def test_grants_come_from_the_broker(world):
    world.on_call("alice@example.com")
    done = world.run("alice@example.com", "request", "prod-readonly", "--reason", "INC-8", "--json")
    assert done.returncode == 0, done.stderr
    rid = json.loads(done.stdout)["request_id"]
    out = world.run("alice@example.com", "grants", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert rid in [r["request_id"] for r in rows]
    assert {r["requester"] for r in rows} == {"alice@example.com"}


def test_a_colleagues_name_in_another_account_is_nobody(world):
    """Anyone can create an IAM user named bob@example.com in an AWS account of their own and
    sign a perfect proof with it. The broker serves only its own account's principals."""
    import boto3

    with _enforcement_off():
        kw = {"endpoint_url": world.moto, "region_name": "us-east-1"}
        admin = boto3.client(
            "sts", aws_access_key_id="AKIAADMIN0000000", aws_secret_access_key="x", **kw
        )
        creds = admin.assume_role(
            RoleArn="arn:aws:iam::210987654321:role/attacker-admin", RoleSessionName="mallory"
        )["Credentials"]
        iam = boto3.client(
            "iam",
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
            **kw,
        )
        iam.create_user(UserName="bob@example.com")
        key = iam.create_access_key(UserName="bob@example.com")["AccessKey"]
    world.keys["mallory"] = key_env(key)
    out = world.run("mallory", "whoami")
    assert out.returncode == 3, out.stderr
    assert "account 210987654321 are not served by this broker" in out.stderr
    listed = world.run("mallory", "list", "--pending")
    assert listed.returncode == 3


def test_the_requester_cannot_approve_through_a_second_principal(world):
    """bob-admin is another IAM user the policy maps to bob: the broker compares persons."""
    with _enforcement_off():
        world.user("bob-admin")
    out = world.run(  # --fresh: not bob's live grant from an earlier test, a new request
        "bob@example.com", "request", "prod-readonly", "--reason", "INC-11", "--no-wait", "--fresh"
    )
    assert out.returncode == 0, out.stderr
    rid = out.stdout.strip()
    second = world.run("bob-admin", "approve", rid, "--yes")
    assert second.returncode == 3 and "someone else must decide it" in second.stderr
    status = json.loads(world.run("carol@example.com", "status", rid, "--json").stdout)
    assert status["status"] == "pending" and status["approvers"] == []
    assert world.run("bob@example.com", "cancel", rid).returncode == 0


def test_a_misconfigured_lambda_broker_serves_nobody_and_says_so_once(world, monkeypatch):
    from jitctl.broker import aws_lambda

    export(monkeypatch, world.broker_env())  # as the broker
    monkeypatch.setenv("JITCTL_CONFIG_TOML", "[broker]\nurl = 'https://x.example'\n")
    monkeypatch.setattr(aws_lambda, "_broker", None)
    answer = aws_lambda.handler(function_url_event(world, "carol@example.com", "GET", "/v1/whoami"))
    assert answer["statusCode"] == 503
    assert json.loads(answer["body"])["error"]["exit_code"] == 5


SHOW_KEY = "import os; print(os.environ['AWS_ACCESS_KEY_ID'])"


def test_exec_reuse_is_checked_and_recorded_by_the_broker(world):
    """The client reuses its cached grant; the broker checks it is live and writes `reused` on
    its own trail (a broker client writes no audit)."""
    import re
    import sys

    world.on_call("alice@example.com")
    argv = ["exec", "prod-readonly", "--reason", "INC-12", "--", sys.executable, "-c", SHOW_KEY]
    first = world.run("alice@example.com", *argv)
    assert first.returncode == 0, first.stderr
    second = world.run("alice@example.com", *argv)
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout  # the same grant's keys
    rid = re.search(r"reusing grant (r-[a-z0-9]+)", second.stderr).group(1)
    log = world.run("carol@example.com", "audit", "log", "--request", rid, "--json")
    assert log.returncode == 0, log.stderr
    reused = [r for r in json.loads(log.stdout) if r["event"] == "reused"]
    assert reused and reused[-1]["actor"] == "arn:aws:iam::444455556666:user/alice@example.com"
    assert not (world.root / "home" / "alice@example.com" / "audit.jsonl").exists()


def test_console_through_the_broker(world):
    """The broker issues; the client exchanges the delivered credentials for a sign-in URL."""
    from urllib.parse import parse_qs, urlsplit

    from tests.federation_sim import FederationSim

    world.on_call("alice@example.com")
    with FederationSim(world.moto) as federation:
        out = world.run(
            "alice@example.com",
            *("console", "prod-readonly", "--reason", "INC-13", "--print"),
            JITCTL_CONSOLE_FEDERATION_URL=federation.url,
        )
        assert out.returncode == 0, out.stderr
        (exchange,) = federation.exchanges
    query = parse_qs(urlsplit(out.stdout.strip()).query)
    assert query["Action"] == ["login"] and query["SigninToken"] == [exchange.token]
    assert ":assumed-role/jit-prod-readonly/" in exchange.arn


def test_credential_process_and_exec_refuse_an_unknown_role_by_the_brokers_list(world):
    """A broker's client has no policy: the role names come from the broker."""
    out = world.run("carol@example.com", "credential-process", "prod-readonyl")
    assert out.returncode == 2, out.stderr
    assert "unknown role 'prod-readonyl'; did you mean 'prod-readonly'?" in out.stderr
    before = json.loads(world.run("carol@example.com", "list", "--json").stdout)
    out = world.run(
        "carol@example.com", "exec", "prod-readonly", "--reason", "x", "--", "no-such-tool-xyz"
    )
    assert out.returncode == 2 and "command not found: no-such-tool-xyz" in out.stderr
    assert json.loads(world.run("carol@example.com", "list", "--json").stdout) == before


def test_looping_issue_and_delivery_failed_through_the_broker_yields_two_sets_at_most(world):
    """A requester who reports every delivery as failed gets one re-issue, not a key pair per
    report; the broker cut off the first set in AWS (its session tag) before the second."""
    bob = "bob@example.com"
    out = world.run(bob, "request", "prod-readonly", "--reason", "INC-20", "--no-wait", "--fresh")
    assert out.returncode == 0, out.stderr
    rid = out.stdout.strip()
    assert world.run("carol@example.com", "approve", rid, "--yes").returncode == 0
    answers = []
    for _ in range(4):
        path = f"/v1/requests/{rid}/issue"
        answers.append(send(world, "POST", path, signed(world, bob, "POST", path, b"{}"), b"{}"))
        path, body = f"/v1/requests/{rid}/delivery-failed", b'{"error": "disk full"}'
        assert send(world, "POST", path, signed(world, bob, "POST", path, body), body)[0] == 200
    issued = [doc["issued"] for status, doc in answers if status == 200]
    assert len(issued) == 2, [a[1].get("error") for a in answers]
    assert [doc["error"]["exit_code"] for status, doc in answers[2:]] == [2, 2]
    first, second = (i["credentials"] for i in issued)
    assert first["access_key_id"] != second["access_key_id"]
    assert second["expiration"] <= first["expiration"]
    with _enforcement_off():  # the admin reads what the broker wrote
        doc = world.iam.get_role_policy(
            RoleName="jit-prod-readonly", PolicyName="jitctl-revocations"
        )
    statements = doc["PolicyDocument"]["Statement"]
    denied = [s for s in statements if s["Sid"].startswith("JitctlReissue")]
    assert [s["Condition"]["StringEquals"] for s in denied] == [
        {"aws:PrincipalTag/jitctl:issue": [f"{rid}.1"]}
    ]
