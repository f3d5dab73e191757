"""The broker's proof of who is calling, against moto's STS with IAM enforcement on.

moto checks SigV4 signatures only while its IAM enforcement is on, so every test that asks
"does AWS accept this proof" runs inside ``enforcing``. moto does not check signature dates:
freshness is our own check, and tested as such. Fake STS endpoints here are tiny local HTTP
servers (redirecting, or answering an identity to anyone) used to show what is never dialled.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import stat
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from jitctl.broker.nonces import DynamoNonces, SqliteNonces
from jitctl.broker.proof import (
    BINDING_HEADER,
    NONCE_HEADER,
    PROOF_HEADER,
    SERVER_ID_HEADER,
    STS_BODY,
    ProofError,
    ProofSettings,
    binding,
    make_proof,
    verify_proof,
)
from jitctl.errors import AwsUnavailable, ConfigError, ExitCode, UsageError
from tests.conftest import loopback_moto

NOW = datetime(2026, 11, 28, 4, 0, tzinfo=UTC)
SERVER_ID = "jitctl-test-broker"
REGION = "us-east-1"
CALL = {"method": "POST", "path": "/v1/requests?wait=0", "body": b'{"role":"prod-readonly"}'}
FORGED_ARN = "arn:aws:iam::123456789012:user/admin@example.com"
IDENTITY_XML = (
    '<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
    "<GetCallerIdentityResult><Arn>{arn}</Arn><UserId>AIDAFORGED</UserId>"
    "<Account>123456789012</Account></GetCallerIdentityResult></GetCallerIdentityResponse>"
)


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def iam_moto() -> Iterator[dict[str, Any]]:
    """A separate moto server holding alice, bob and a role alice assumed. They are created
    while enforcement is still off (the admin calls need no real credentials then); each test
    that needs signatures checked switches enforcement on with ``enforcing``."""
    with loopback_moto() as url:
        yield _proof_world(url)


def _proof_world(url: str) -> dict[str, Any]:
    kw = {"endpoint_url": url, "region_name": REGION, "aws_access_key_id": "AKIAADMIN0000000"}
    iam = boto3.client("iam", aws_secret_access_key="admin", **kw)
    # moto's state is shared by the whole process, and tests/test_proof_guards.py builds this
    # world again: what an earlier module made is found, its old keys replaced
    keys = {}
    for user in ("alice.proof@example.com", "bob.proof@example.com"):
        try:  # asked by name: list_users pages too
            iam.create_user(UserName=user)
        except iam.exceptions.EntityAlreadyExistsException:
            pass
        for old in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]:
            iam.delete_access_key(UserName=user, AccessKeyId=old["AccessKeyId"])
        keys[user] = iam.create_access_key(UserName=user)["AccessKey"]
    try:  # asked by name: list_roles pages, and the process holds many roles by now
        iam.delete_role(RoleName="broker-proof-ops")
    except iam.exceptions.NoSuchEntityException:
        pass
    role = iam.create_role(
        RoleName="broker-proof-ops",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )["Role"]
    alice = keys["alice.proof@example.com"]
    sts = boto3.client(
        "sts",
        aws_access_key_id=alice["AccessKeyId"],
        aws_secret_access_key=alice["SecretAccessKey"],
        endpoint_url=url,
        region_name=REGION,
    )
    session = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="ops-session")["Credentials"]
    return {"url": url, "keys": keys, "session": session}


@pytest.fixture
def enforcing(iam_moto: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """moto's IAM enforcement on for this test: every request must carry a valid signature.

    INITIAL_NO_AUTH_ACTION_COUNT is read by moto.settings at import, long before this test, so
    the threaded (in-process) server is switched with moto's own enable_iam_authentication,
    which sets the same counter; the environment variable is set too, for any moto imported
    later, and both are restored afterwards."""
    from moto.core.authorization import enable_iam_authentication

    old = os.environ.get("INITIAL_NO_AUTH_ACTION_COUNT")
    os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
    try:
        with enable_iam_authentication():
            yield iam_moto
    finally:
        if old is None:
            os.environ.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)
        else:
            os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = old


def creds(key: dict[str, str], secret: str | None = None, token: str | None = None) -> Any:
    session = boto3.Session(
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=secret or key["SecretAccessKey"],
        aws_session_token=token or key.get("SessionToken"),
    )
    return session.get_credentials()


def proof(
    env: dict[str, Any], user: str = "alice.proof@example.com", **over: Any
) -> dict[str, str]:
    args = {
        "sts_url": env["url"],
        "sts_region": REGION,
        "server_id": SERVER_ID,
        "now": NOW,
        **CALL,
        **over,
    }
    return make_proof(creds(env["keys"][user]), **args)


def verify(env: dict[str, Any], headers: dict[str, str], tmp_path: Path, **over: Any) -> Any:
    settings = ProofSettings(server_id=SERVER_ID, sts_endpoint=env["url"], sts_region=REGION)
    args = {
        "settings": settings,
        "now": NOW,
        # The store's clock is the broker's: the same fixed NOW that verify_proof is given.
        "nonces": SqliteNonces(tmp_path / "nonces.db", clock=lambda: NOW),
        **CALL,
        **over,
    }
    return verify_proof(headers, **args)


def refused(
    reason: str, env: dict[str, Any], headers: dict[str, str], tmp_path: Path, **over: Any
) -> ProofError:
    with pytest.raises(ProofError) as info:
        verify(env, headers, tmp_path, **over)
    assert info.value.reason == reason, info.value
    assert info.value.exit_code == ExitCode.DENIED
    return info.value


def decoded(headers: dict[str, str]) -> dict[str, Any]:
    text = headers[PROOF_HEADER]
    return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def encoded(proof_doc: dict[str, Any] | str, nonce: str) -> dict[str, str]:
    raw = proof_doc if isinstance(proof_doc, str) else json.dumps(proof_doc)
    return {PROOF_HEADER: base64.urlsafe_b64encode(raw.encode()).decode(), NONCE_HEADER: nonce}


def hand_signed(
    env: dict[str, Any], signed: dict[str, str], unsigned: dict[str, str]
) -> dict[str, Any]:
    """A proof signed by botocore's SigV4Auth.add_auth directly (not our make_proof), with
    ``unsigned`` headers added after signing: what an attacker can build."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    request = AWSRequest(method="POST", url=env["url"] + "/", data=STS_BODY, headers=signed)
    request.headers["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8"
    SigV4Auth(
        creds(env["keys"]["alice.proof@example.com"]).get_frozen_credentials(), "sts", REGION
    ).add_auth(request)
    headers = {k.lower(): v for k, v in request.headers.items()}
    headers["host"] = env["url"].split("://")[1]
    headers.update(unsigned)
    return {"method": "POST", "url": env["url"] + "/", "headers": headers, "body": STS_BODY}


def post_to_sts(env: dict[str, Any], headers: dict[str, str]) -> tuple[int, str]:
    import http.client

    host, port = env["url"].split("://")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request(
        "POST", "/", body=STS_BODY, headers={k: v for k, v in headers.items() if k != "host"}
    )
    response = conn.getresponse()
    return response.status, response.read().decode()


# ------------------------------------------------------------------ a good proof


def test_a_good_proof_names_the_signer(enforcing, tmp_path):
    headers = proof(enforcing)
    caller = verify(enforcing, headers, tmp_path)
    assert caller.arn == "arn:aws:iam::123456789012:user/alice.proof@example.com"
    assert caller.account == "123456789012"
    assert caller.access_key == enforcing["keys"]["alice.proof@example.com"]["AccessKeyId"]
    assert caller.user_id
    bob = verify(enforcing, proof(enforcing, "bob.proof@example.com"), tmp_path)
    assert bob.arn.endswith("user/bob.proof@example.com")


def test_a_session_token_is_signed_and_forwarded(enforcing, tmp_path):
    session = enforcing["session"]
    key = {"AccessKeyId": session["AccessKeyId"], "SecretAccessKey": session["SecretAccessKey"]}
    headers = make_proof(
        creds(key, token=session["SessionToken"]),
        sts_url=enforcing["url"],
        sts_region=REGION,
        server_id=SERVER_ID,
        now=NOW,
        **CALL,
    )
    signed = decoded(headers)["headers"]
    assert "x-amz-security-token" in signed["authorization"].split("SignedHeaders=")[1]
    caller = verify(enforcing, headers, tmp_path)
    assert caller.arn == "arn:aws:sts::123456789012:assumed-role/broker-proof-ops/ops-session"


def test_the_proof_holds_no_secret(enforcing):
    text = json.dumps(decoded(proof(enforcing)))
    assert enforcing["keys"]["alice.proof@example.com"]["SecretAccessKey"] not in text


def test_binding_covers_every_field():
    base = ("POST", "/v1/requests", b"{}", "n" * 32, "20261128T040000Z")
    variants = [
        ("GET", *base[1:]),
        (base[0], "/v1/requests?x=1", *base[2:]),
        (*base[:2], b"{ }", *base[3:]),
        (*base[:3], "m" * 32, base[4]),
        (*base[:4], "20261128T040001Z"),
    ]
    assert len({binding(*v) for v in [base, *variants]}) == 6


# ------------------------------------------------------------------ the attacks


@pytest.mark.parametrize(
    "field,value",
    [("body", b'{"role":"prod-admin"}'), ("path", "/v1/requests/R1/approve"), ("method", "PUT")],
)
def test_a_proof_for_another_call_is_refused(enforcing, tmp_path, field, value):
    refused("binding", enforcing, proof(enforcing), tmp_path, **{field: value})


def test_a_proof_with_another_nonce_is_refused(enforcing, tmp_path):
    headers = proof(enforcing)
    headers[NONCE_HEADER] = proof(enforcing)[NONCE_HEADER]
    refused("binding", enforcing, headers, tmp_path)


def test_a_proof_for_another_broker_is_refused(enforcing, tmp_path):
    headers = proof(enforcing, server_id="some-other-broker")
    refused("server_id", enforcing, headers, tmp_path)


def test_an_unsigned_server_id_header_is_refused(enforcing, tmp_path, monkeypatch):
    # botocore's own signer at our fixed clock, so the forgery is right in every other respect:
    # date, binding and signature all check out, only the server id is not signed.
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: NOW.replace(tzinfo=None))
    nonce = "N" * 32
    bound = binding(CALL["method"], CALL["path"], CALL["body"], nonce, "20261128T040000Z")
    forged = hand_signed(
        enforcing, signed={BINDING_HEADER: bound}, unsigned={SERVER_ID_HEADER: SERVER_ID}
    )
    assert forged["headers"]["x-amz-date"] == "20261128T040000Z"
    # The attack is real: AWS (moto) ignores an unsigned header and still names alice.
    status, answer = post_to_sts(enforcing, forged["headers"])
    assert status == 200 and "alice.proof@example.com" in answer
    error = refused("unsigned_header", enforcing, encoded(forged, nonce), tmp_path)
    assert SERVER_ID_HEADER in error.message
    # The same request with the server id signed is accepted: the refusal was for that alone.
    del forged["headers"][SERVER_ID_HEADER]
    honest = hand_signed(
        enforcing, signed={BINDING_HEADER: bound, SERVER_ID_HEADER: SERVER_ID}, unsigned={}
    )
    assert verify(enforcing, encoded(honest, nonce), tmp_path).arn.endswith(
        "alice.proof@example.com"
    )


def test_a_client_chosen_sts_host_is_never_dialled(enforcing, tmp_path, fake_http):
    evil = fake_http(
        200, {"Content-Type": "text/xml"}, IDENTITY_XML.format(arn=FORGED_ARN).encode()
    )
    headers = proof(enforcing, sts_url=evil.url)
    refused("url", enforcing, headers, tmp_path)
    # Even with the right URL in the proof, a Host header naming another host is refused.
    doc = decoded(headers)
    doc["url"] = enforcing["url"] + "/"
    refused("host", enforcing, encoded(doc, headers[NONCE_HEADER]), tmp_path)
    assert evil.hits == 0


def test_a_proof_signed_for_another_region_is_refused(enforcing, tmp_path):
    refused("scope", enforcing, proof(enforcing, sts_region="us-west-2"), tmp_path)


@pytest.mark.parametrize("minutes", [-10, 10])
def test_a_proof_dated_outside_the_window_is_refused(enforcing, tmp_path, minutes):
    # moto does not check dates: this is the broker's own check, in both directions.
    headers = proof(enforcing, now=NOW + timedelta(minutes=minutes))
    error = refused("date", enforcing, headers, tmp_path)
    assert "clock" in error.hint


def test_a_proof_dated_inside_the_window_is_accepted(enforcing, tmp_path):
    headers = proof(enforcing, now=NOW - timedelta(minutes=4, seconds=59))
    assert verify(enforcing, headers, tmp_path).arn.endswith("alice.proof@example.com")


def test_a_replayed_proof_is_refused(enforcing, tmp_path):
    headers = proof(enforcing)
    verify(enforcing, headers, tmp_path)
    refused("replay", enforcing, headers, tmp_path)


def test_a_wrong_signature_is_refused_by_aws(enforcing, tmp_path):
    alice = enforcing["keys"]["alice.proof@example.com"]
    headers = make_proof(
        creds(alice, secret="not-alice-secret"),
        sts_url=enforcing["url"],
        sts_region=REGION,
        server_id=SERVER_ID,
        now=NOW,
        **CALL,
    )
    error = refused("sts", enforcing, headers, tmp_path)
    assert error.message == "AWS did not accept the proof: SignatureDoesNotMatch"


def test_an_unknown_access_key_is_refused_by_aws(enforcing, tmp_path):
    stranger = {"AccessKeyId": "AKIAUNKNOWNUNKNOWN00", "SecretAccessKey": "whatever"}
    headers = make_proof(
        creds(stranger),
        sts_url=enforcing["url"],
        sts_region=REGION,
        server_id=SERVER_ID,
        now=NOW,
        **CALL,
    )
    error = refused("sts", enforcing, headers, tmp_path)
    assert error.message == "AWS did not accept the proof: InvalidClientTokenId"


def test_a_signature_edited_in_transit_is_refused_by_aws(enforcing, tmp_path):
    headers = proof(enforcing)
    doc = decoded(headers)
    auth = doc["headers"]["authorization"]
    doc["headers"]["authorization"] = auth[:-1] + ("0" if auth[-1] != "0" else "1")
    refused("sts", enforcing, encoded(doc, headers[NONCE_HEADER]), tmp_path)


def test_under_lambda_the_access_key_must_match(enforcing, tmp_path):
    bob_key = enforcing["keys"]["bob.proof@example.com"]["AccessKeyId"]
    refused("lambda_access_key", enforcing, proof(enforcing), tmp_path, lambda_access_key=bob_key)
    alice_key = enforcing["keys"]["alice.proof@example.com"]["AccessKeyId"]
    caller = verify(enforcing, proof(enforcing), tmp_path, lambda_access_key=alice_key)
    assert caller.access_key == alice_key


def test_a_redirecting_sts_is_not_followed(enforcing, tmp_path, fake_http):
    target = fake_http(200, {}, IDENTITY_XML.format(arn=FORGED_ARN).encode())
    redirector = fake_http(307, {"Location": target.url + "/"}, b"")
    settings = ProofSettings(server_id=SERVER_ID, sts_endpoint=redirector.url, sts_region=REGION)
    headers = proof(enforcing, sts_url=redirector.url)
    with pytest.raises(AwsUnavailable, match="redirect") as info:
        verify(enforcing, headers, tmp_path, settings=settings)
    assert info.value.exit_code == ExitCode.UNAVAILABLE
    assert (redirector.hits, target.hits) == (1, 0)


def test_an_identity_anywhere_but_the_exact_place_is_refused(enforcing, tmp_path, fake_http):
    # CVE-2020-16250: an identity found inside some other answer must not count.
    wrapped = IDENTITY_XML.format(arn=FORGED_ARN).replace(
        "GetCallerIdentityResponse", "ListUsersResponse"
    )
    fake = fake_http(200, {}, wrapped.encode())
    settings = ProofSettings(server_id=SERVER_ID, sts_endpoint=fake.url, sts_region=REGION)
    with pytest.raises(AwsUnavailable, match="not a GetCallerIdentityResponse"):
        verify(enforcing, proof(enforcing, sts_url=fake.url), tmp_path, settings=settings)


def test_sts_tls_is_verified_against_the_ca_bundle(enforcing, tmp_path, fake_http):
    from jitctl.demo.tls import make_certs

    certs = make_certs(tmp_path / "tls")
    fake = fake_http(200, {}, IDENTITY_XML.format(arn=FORGED_ARN).encode(), tls=certs)
    headers = proof(enforcing, sts_url=fake.url)
    untrusted = ProofSettings(server_id=SERVER_ID, sts_endpoint=fake.url, sts_region=REGION)
    with pytest.raises(AwsUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        verify(enforcing, headers, tmp_path, settings=untrusted)
    assert fake.hits == 0
    # The same endpoint, trusted through ca_bundle (as a company CA would be), is asked.
    trusted = ProofSettings(
        server_id=SERVER_ID, sts_endpoint=fake.url, sts_region=REGION, ca_bundle=str(certs.ca)
    )
    fresh = proof(enforcing, sts_url=fake.url)
    assert verify(enforcing, fresh, tmp_path, settings=trusted).arn == FORGED_ARN
    assert fake.hits == 1


def test_an_unreachable_sts_is_exit_5(enforcing, tmp_path, fake_http):
    gone = fake_http(200, {}, b"")
    url = gone.url
    gone.shutdown()
    gone.server_close()
    settings = ProofSettings(server_id=SERVER_ID, sts_endpoint=url, sts_region=REGION, timeout=1)
    with pytest.raises(AwsUnavailable, match="cannot reach STS") as info:
        verify(enforcing, proof(enforcing, sts_url=url), tmp_path, settings=settings)
    assert info.value.exit_code == ExitCode.UNAVAILABLE


def test_an_sts_server_error_is_exit_5(enforcing, tmp_path, fake_http):
    fake = fake_http(
        503, {}, b"<ErrorResponse><Error><Code>ServiceUnavailable</Code></Error></ErrorResponse>"
    )
    settings = ProofSettings(server_id=SERVER_ID, sts_endpoint=fake.url, sts_region=REGION)
    with pytest.raises(AwsUnavailable, match="ServiceUnavailable"):
        verify(enforcing, proof(enforcing, sts_url=fake.url), tmp_path, settings=settings)


# ------------------------------------------------------------------ malformed proofs


def test_a_proof_too_long_for_the_broker_is_refused_on_the_client(iam_moto):
    key = iam_moto["keys"]["alice.proof@example.com"]
    with pytest.raises(UsageError, match="longer than"):
        make_proof(
            creds(key, token="T" * 6000),
            sts_url=iam_moto["url"],
            sts_region=REGION,
            server_id=SERVER_ID,
            now=NOW,
            **CALL,
        )


def test_a_call_without_a_proof_is_refused(iam_moto, tmp_path):
    refused("missing", iam_moto, {NONCE_HEADER: "N" * 32}, tmp_path)
    headers = proof(iam_moto)
    del headers[NONCE_HEADER]
    refused("missing", iam_moto, headers, tmp_path)


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[]",
        '{"method":"POST","url":"u","headers":{},"body":"b","extra":1}',
        '{"method":"POST","method":"POST","url":"u","headers":{},"body":"b"}',
        '{"method":"POST","url":"u","headers":{"host":1},"body":"b"}',
    ],
)
def test_a_proof_that_does_not_decode_is_refused(iam_moto, tmp_path, raw):
    refused("decode", iam_moto, encoded(raw, "N" * 32), tmp_path)


def test_an_oversized_proof_is_refused_before_decoding(iam_moto, tmp_path):
    headers = proof(iam_moto)
    padded = json.dumps(decoded(headers), indent=4000)  # still a valid proof, just large
    error = refused("decode", iam_moto, encoded(padded, headers[NONCE_HEADER]), tmp_path)
    assert "longer than" in error.message


@pytest.mark.parametrize(
    "edit,reason",
    [
        (lambda d: d.update(method="GET"), "method"),
        (lambda d: d.update(body="Action=GetSessionToken&Version=2011-06-15"), "body"),
        (lambda d: d.update(url=d["url"] + "?Action=GetCallerIdentity"), "url"),
        (lambda d: d["headers"].update({"Host": d["headers"]["host"]}), "duplicate_header"),
        (lambda d: d["headers"].update(accept="application/json"), "header"),
        (lambda d: d["headers"].update(authorization="AWS4-HMAC-SHA1 x"), "authorization"),
        (lambda d: d["headers"].update({"x-amz-date": "20261128T04"}), "binding"),
    ],
)
def test_a_proof_bent_out_of_shape_is_refused(iam_moto, tmp_path, edit, reason):
    headers = proof(iam_moto)
    doc = decoded(headers)
    edit(doc)
    refused(reason, iam_moto, encoded(doc, headers[NONCE_HEADER]), tmp_path)


def test_an_unsigned_session_token_is_refused(iam_moto, tmp_path):
    headers = proof(iam_moto)
    doc = decoded(headers)
    doc["headers"]["x-amz-security-token"] = "FwoGZXIvYXdzEBY"
    error = refused("unsigned_header", iam_moto, encoded(doc, headers[NONCE_HEADER]), tmp_path)
    assert "x-amz-security-token" in error.message


def test_a_signed_but_unsent_header_is_refused(iam_moto, tmp_path):
    headers = proof(iam_moto)
    doc = decoded(headers)
    del doc["headers"]["content-type"]
    refused("unsigned_header", iam_moto, encoded(doc, headers[NONCE_HEADER]), tmp_path)


# ------------------------------------------------------------------ ordering


class RecordingNonces:
    """Our own NonceStore interface, recording claims: shows what is claimed and when."""

    def __init__(self) -> None:
        self.claimed: list[str] = []

    def claim(self, nonce: str, *, expires_at: datetime) -> bool:
        if nonce in self.claimed:
            return False
        self.claimed.append(nonce)
        return True


def test_a_refused_proof_claims_no_nonce_and_a_replay_never_reaches_sts(
    iam_moto, tmp_path, fake_http
):
    fake = fake_http(200, {}, IDENTITY_XML.format(arn=FORGED_ARN).encode())
    settings = ProofSettings(server_id=SERVER_ID, sts_endpoint=fake.url, sts_region=REGION)
    nonces = RecordingNonces()
    stale = proof(iam_moto, sts_url=fake.url, now=NOW - timedelta(hours=1))
    refused("date", iam_moto, stale, tmp_path, settings=settings, nonces=nonces)
    assert nonces.claimed == [] and fake.hits == 0
    good = proof(iam_moto, sts_url=fake.url)
    verify(iam_moto, good, tmp_path, settings=settings, nonces=nonces)
    refused("replay", iam_moto, good, tmp_path, settings=settings, nonces=nonces)
    assert nonces.claimed == [good[NONCE_HEADER]] and fake.hits == 1


@pytest.mark.parametrize(
    "endpoint,region",
    [
        ("http://sts.amazonaws.com", REGION),  # plain http off loopback
        ("https://sts.amazonaws.com/path", REGION),
        ("https://u@sts.amazonaws.com", REGION),
        ("https://sts.amazonaws.com?Action=x", REGION),
        ("ftp://sts.amazonaws.com", REGION),
        ("https://sts.amazonaws.com", "eu-west-1"),  # the global endpoint signs as us-east-1
        ("https://sts.eu-west-1.amazonaws.com", REGION),
        ("https://sts.us-east-1.amazonaws.com", "US-EAST-1"),
    ],
)
def test_a_bad_pinned_endpoint_is_a_config_error(endpoint, region):
    with pytest.raises(ConfigError):
        ProofSettings(server_id=SERVER_ID, sts_endpoint=endpoint, sts_region=region)


@pytest.mark.parametrize("server_id", ["", " padded ", "tab\there", "é-broker", "x" * 129])
def test_a_bad_server_id_is_a_config_error_on_both_sides(iam_moto, server_id):
    with pytest.raises(ConfigError, match="server_id"):
        ProofSettings(server_id=server_id, sts_endpoint=iam_moto["url"], sts_region=REGION)
    with pytest.raises(ConfigError, match="server_id"):
        proof(iam_moto, server_id=server_id)


@pytest.mark.parametrize(
    "endpoint,region,canonical",
    [
        ("https://sts.amazonaws.com", "us-east-1", "https://sts.amazonaws.com/"),
        (
            "https://sts.eu-west-1.amazonaws.com/",
            "eu-west-1",
            "https://sts.eu-west-1.amazonaws.com/",
        ),
        (
            "https://STS.us-east-2.amazonaws.com:443",
            "us-east-2",
            "https://sts.us-east-2.amazonaws.com/",
        ),
        (
            "https://sts-fips.us-east-2.amazonaws.com",
            "us-east-2",
            "https://sts-fips.us-east-2.amazonaws.com/",
        ),
        (
            "https://vpce-0abc-xyz.sts.eu-west-1.vpce.amazonaws.com",
            "eu-west-1",
            "https://vpce-0abc-xyz.sts.eu-west-1.vpce.amazonaws.com/",
        ),
        ("http://127.0.0.1:5000", "us-east-1", "http://127.0.0.1:5000/"),
        ("http://[::1]:5000", "us-east-1", "http://[::1]:5000/"),
    ],
)
def test_good_pinned_endpoints_are_accepted(iam_moto, endpoint, region, canonical):
    """Accepted, and a proof made for the endpoint is signed for exactly its canonical URL,
    Host and region: what the broker compares against its own pinned endpoint."""
    settings = ProofSettings(server_id=SERVER_ID, sts_endpoint=endpoint, sts_region=region)
    assert settings.sts_endpoint == endpoint and settings.sts_region == region
    key = iam_moto["keys"]["alice.proof@example.com"]
    headers = make_proof(
        creds(key), sts_url=endpoint, sts_region=region, server_id=SERVER_ID, now=NOW, **CALL
    )
    doc = decoded(headers)
    assert doc["url"] == canonical
    assert doc["headers"]["host"] == canonical.split("://")[1].rstrip("/")
    assert f"/{region}/sts/aws4_request" in doc["headers"]["authorization"]


def test_no_credentials_is_a_usage_error():
    with pytest.raises(UsageError, match="no AWS credentials"):
        make_proof(
            None,
            sts_url="https://sts.amazonaws.com",
            sts_region="us-east-1",
            server_id=SERVER_ID,
            now=NOW,
            **CALL,
        )


def test_an_expired_sso_login_is_a_usage_error(tmp_path, monkeypatch):
    # A real botocore SSO profile with no cached token: what `aws sso login` fixes.
    config = tmp_path / "aws-config"
    config.write_text(
        "[profile sso-user]\nsso_start_url = https://example.awsapps.com/start\n"
        "sso_region = us-east-1\nsso_account_id = 123456789012\nsso_role_name = ReadOnly\n"
    )
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    credentials = boto3.Session(profile_name="sso-user").get_credentials()
    with pytest.raises(UsageError, match="cannot be refreshed") as info:
        make_proof(
            credentials,
            sts_url="https://sts.amazonaws.com",
            sts_region=REGION,
            server_id=SERVER_ID,
            now=NOW,
            **CALL,
        )
    assert info.value.exit_code == ExitCode.USAGE
    assert "sso login" in info.value.hint


def test_a_proof_header_sent_twice_is_refused(iam_moto, tmp_path):
    headers = proof(iam_moto)
    twice = {**headers, PROOF_HEADER.lower(): headers[PROOF_HEADER]}
    refused("duplicate_header", iam_moto, twice, tmp_path)


@pytest.mark.parametrize("nonce", ["short", "N" * 31 + "!", "N" * 129])
def test_a_malformed_nonce_is_refused(iam_moto, tmp_path, nonce):
    headers = proof(iam_moto)
    headers[NONCE_HEADER] = nonce
    refused("nonce", iam_moto, headers, tmp_path)


# ------------------------------------------------------------------ nonce stores


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def check_replay_then_expiry(store: Any, clock: Clock) -> None:
    expires = clock.now + timedelta(minutes=10)
    assert store.claim("nonce-aaaaaaaaaaaaaaaaaaaaaa", expires_at=expires) is True
    assert store.claim("nonce-aaaaaaaaaaaaaaaaaaaaaa", expires_at=expires) is False
    assert store.claim("nonce-bbbbbbbbbbbbbbbbbbbbbb", expires_at=expires) is True
    clock.now += timedelta(minutes=9)
    assert (
        store.claim("nonce-aaaaaaaaaaaaaaaaaaaaaa", expires_at=clock.now + timedelta(minutes=10))
        is False
    )
    clock.now += timedelta(minutes=2)  # past the first expiry
    assert (
        store.claim("nonce-aaaaaaaaaaaaaaaaaaaaaa", expires_at=clock.now + timedelta(minutes=10))
        is True
    )
    assert (
        store.claim("nonce-aaaaaaaaaaaaaaaaaaaaaa", expires_at=clock.now + timedelta(minutes=10))
        is False
    )


def test_sqlite_nonces_refuse_a_replay_and_forget_after_expiry(tmp_path):
    clock = Clock(NOW)
    store = SqliteNonces(tmp_path / "broker" / "nonces.db", clock=clock)
    check_replay_then_expiry(store, clock)
    assert stat.S_IMODE((tmp_path / "broker" / "nonces.db").stat().st_mode) == 0o600
    with sqlite3.connect(tmp_path / "broker" / "nonces.db") as conn:
        # the expired nonce-b was pruned; only the re-claimed nonce-a remains
        assert conn.execute("SELECT nonce FROM nonces").fetchall() == [
            ("nonce-aaaaaaaaaaaaaaaaaaaaaa",)
        ]


def test_sqlite_nonces_in_an_impossible_place_say_how_to_fix_it(tmp_path):
    (tmp_path / "a-file").write_text("")
    store = SqliteNonces(tmp_path / "a-file" / "nonces.db")
    with pytest.raises(ConfigError, match="cannot create the nonce store") as info:
        store.claim("n" * 32, expires_at=NOW)
    assert "data directory" in info.value.hint


def test_sqlite_nonces_that_cannot_be_read_fail_closed_in_one_line(tmp_path):
    """A nonce file that is not a database (disk trouble, a stray copy): no proof can be shown
    fresh, so every claim is refused as unavailable (exit 5), naming the file."""
    from jitctl.errors import Unavailable

    path = tmp_path / "nonces.db"
    path.write_bytes(b"this is not an SQLite database\n" * 64)
    store = SqliteNonces(path, clock=Clock(NOW))
    with pytest.raises(Unavailable) as info:
        store.claim("nonce-cccccccccccccccccccccc", expires_at=NOW + timedelta(minutes=10))
    assert info.value.exit_code == ExitCode.UNAVAILABLE
    assert f"the nonce store {path} cannot be written" in info.value.message


def test_sqlite_nonces_one_winner_across_threads(tmp_path):
    store = SqliteNonces(tmp_path / "nonces.db")
    expires = datetime.now(UTC) + timedelta(minutes=10)
    with ThreadPoolExecutor(8) as pool:
        wins = list(pool.map(lambda _: store.claim("n" * 32, expires_at=expires), range(16)))
    assert wins.count(True) == 1


def _claim_in_new_process(args: tuple[str, int]) -> bool | str:
    path, i = args
    try:  # a new store object each time: every process sets the file up, racing the others
        store = SqliteNonces(path)
        return store.claim(
            f"nonce-{i % 3:026d}", expires_at=datetime.now(UTC) + timedelta(minutes=10)
        )
    except Exception as exc:  # reported, not raised: the assertion shows which
        return repr(exc)


def test_sqlite_nonces_one_winner_across_processes_from_a_fresh_file(tmp_path):
    with ProcessPoolExecutor(6) as pool:
        for attempt in range(12):
            path = str(tmp_path / f"nonces-{attempt}.db")
            results = list(pool.map(_claim_in_new_process, [(path, i) for i in range(18)]))
            assert sorted(map(str, results)) == ["False"] * 15 + ["True"] * 3, results


def test_dynamo_nonces_refuse_a_replay_and_accept_after_expiry(aws_env):
    clock = Clock(NOW)
    client = boto3.client("dynamodb")
    store = DynamoNonces(
        "jitctl-nonces-proof-test", lambda service: boto3.client(service), clock=clock
    )
    store.init()
    store.init()  # harmless twice
    ttl = client.describe_time_to_live(TableName="jitctl-nonces-proof-test")[
        "TimeToLiveDescription"
    ]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires")
    check_replay_then_expiry(store, clock)
    item = client.get_item(
        TableName="jitctl-nonces-proof-test", Key={"nonce": {"S": "nonce-bbbbbbbbbbbbbbbbbbbbbb"}}
    )
    assert item["Item"]["expires"] == {"N": str(int((NOW + timedelta(minutes=10)).timestamp()))}


def test_dynamo_nonces_without_a_table_say_how_to_fix_it(aws_env):
    store = DynamoNonces("jitctl-no-such-table", lambda service: boto3.client(service))
    with pytest.raises(ConfigError, match="does not exist"):
        store.claim("n" * 32, expires_at=NOW)


def test_dynamo_nonces_fail_closed_when_dynamodb_refuses_the_write(aws_env, request):
    """A broker whose role may not write the nonce table cannot tell a fresh proof from a
    replay: the claim is an error (the call is refused), never a fresh nonce."""
    from jitctl.errors import JitctlError

    table = "jitctl-nonces-refused-test"
    DynamoNonces(table, lambda service: boto3.client(service)).init()
    iam = boto3.client("iam")
    user = f"broker-without-put-{os.getpid()}"
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    request.getfixturevalue("enforcing")  # from here on moto checks IAM: this user has nothing

    def client(service: str):
        secret = key["SecretAccessKey"]
        return boto3.client(
            service, aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=secret
        )

    store = DynamoNonces(table, client, clock=Clock(NOW))
    with pytest.raises(JitctlError) as info:
        store.claim("nonce-refused-000000000000", expires_at=NOW + timedelta(minutes=10))
    assert info.value.exit_code in (ExitCode.DENIED, ExitCode.UNAVAILABLE), info.value
    assert "nonce table" in info.value.message
    with pytest.raises(JitctlError) as made:  # and `init` says which call it may not make
        store.init()
    assert f"DynamoDB create_table on nonce table {table}" in made.value.message


def test_dynamo_nonces_fail_closed_when_dynamodb_is_out_of_reach(aws_env):
    from botocore.config import Config

    quick = Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=2)
    store = DynamoNonces(
        "jitctl-nonces-proof-test",
        lambda service: boto3.client(service, endpoint_url="http://127.0.0.1:9", config=quick),
        clock=Clock(NOW),
    )
    with pytest.raises(AwsUnavailable):
        store.claim("nonce-unreached-0000000000", expires_at=NOW + timedelta(minutes=10))
