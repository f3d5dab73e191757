"""The broker's own checks of a proof that AWS would not make for it: the credential scope's
date and service, the form Content-Type, and the exact edge of the clock-skew window.

Proofs here are signed for real (botocore's SigV4 signer with alice's moto keys) and checked
by the broker's verifier against moto's STS with IAM enforcement on (the fixtures of
tests/test_broker_proof.py). Each forged proof is correct in every other respect, so the
refusal's reason is the rule under test; a proof refused for its own reason never reaches STS
nor claims its nonce.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from jitctl.broker.proof import (
    AMZ_DATE_FORMAT,
    BINDING_HEADER,
    CONTENT_TYPE,
    NONCE_HEADER,
    SERVER_ID_HEADER,
    STS_BODY,
    binding,
)
from tests import test_broker_proof as proofs
from tests.test_broker_proof import (
    CALL,
    NOW,
    REGION,
    SERVER_ID,
    creds,
    encoded,
    proof,
    refused,
    verify,
)

# That module's moto server (alice and bob, keys made before enforcement) and its enforcement.
iam_moto = proofs.iam_moto
enforcing = proofs.enforcing

NONCE = "G" * 32
ALICE = "alice.proof@example.com"


def signed_by_hand(
    env: dict[str, Any],
    *,
    service: str = "sts",
    content_type: str = CONTENT_TYPE,
    scope_date: str | None = None,
) -> dict[str, str]:
    """The headers of a proof for CALL at NOW, signed with alice's keys: for ``service``, with
    this Content-Type (signed), and with the credential scope dated ``scope_date``."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    amz_date = NOW.strftime(AMZ_DATE_FORMAT)
    url = env["url"] + "/"
    headers = {
        "host": env["url"].split("://")[1],
        "content-type": content_type,
        "x-amz-date": amz_date,
        SERVER_ID_HEADER: SERVER_ID,
        BINDING_HEADER: binding(CALL["method"], CALL["path"], CALL["body"], NONCE, amz_date),
    }
    frozen = creds(env["keys"][ALICE]).get_frozen_credentials()
    signer = SigV4Auth(frozen, service, REGION)
    request = AWSRequest(method="POST", url=url, data=STS_BODY.encode(), headers=headers)
    request.context["timestamp"] = (scope_date + amz_date[8:]) if scope_date else amz_date
    signature = signer.signature(
        signer.string_to_sign(request, signer.canonical_request(request)), request
    )
    names = signer.signed_headers(signer.headers_to_sign(request))
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={signer.scope(request)}, "
        f"SignedHeaders={names}, Signature={signature}"
    )
    return encoded({"method": "POST", "url": url, "headers": headers, "body": STS_BODY}, NONCE)


def test_a_hand_signed_proof_is_accepted(enforcing, tmp_path):
    """The forgeries below differ from this one in one respect each."""
    caller = verify(enforcing, signed_by_hand(enforcing), tmp_path)
    assert caller.arn.endswith(f"user/{ALICE}")


def test_a_credential_scope_dated_another_day_is_refused(enforcing, tmp_path):
    day_before = (NOW - timedelta(days=1)).strftime("%Y%m%d")
    headers = signed_by_hand(enforcing, scope_date=day_before)
    error = refused("date", enforcing, headers, tmp_path)
    assert "X-Amz-Date is malformed" in error.message
    # Refused before the nonce was claimed: the honest proof with the same nonce still works.
    assert verify(enforcing, signed_by_hand(enforcing), tmp_path).arn.endswith(ALICE)


@pytest.mark.parametrize("service", ["iam", "s3"])
def test_a_proof_signed_for_another_service_is_refused(enforcing, tmp_path, service):
    error = refused("scope", enforcing, signed_by_hand(enforcing, service=service), tmp_path)
    assert f"signed for {service} in {REGION}, not sts in {REGION}" in error.message


@pytest.mark.parametrize(
    "content_type", ["application/json", "text/plain", "application/x-www-form-urlencodedx"]
)
def test_a_proof_whose_body_is_not_a_form_is_refused(enforcing, tmp_path, content_type):
    headers = signed_by_hand(enforcing, content_type=content_type)
    error = refused("header", enforcing, headers, tmp_path)
    assert "Content-Type must be a form" in error.message


def test_the_form_content_type_may_carry_parameters(enforcing, tmp_path):
    headers = signed_by_hand(enforcing, content_type="application/x-www-form-urlencoded")
    assert verify(enforcing, headers, tmp_path).arn.endswith(ALICE)


@pytest.mark.parametrize("sign", [-1, 1])
def test_a_proof_signed_exactly_at_the_skew_limit_is_accepted(enforcing, tmp_path, sign):
    headers = proof(enforcing, now=NOW + sign * timedelta(minutes=5))
    assert verify(enforcing, headers, tmp_path).arn.endswith(ALICE)


@pytest.mark.parametrize("sign", [-1, 1])
def test_a_proof_one_second_past_the_skew_limit_is_refused(enforcing, tmp_path, sign):
    headers = proof(enforcing, now=NOW + sign * timedelta(minutes=5, seconds=1))
    error = refused("date", enforcing, headers, tmp_path)
    assert "301s away" in error.message and "at most 300s" in error.message


def test_the_nonce_header_is_what_the_binding_covers(enforcing, tmp_path):
    """signed_by_hand binds NONCE; the call must carry that nonce (sanity for the helper)."""
    headers = signed_by_hand(enforcing)
    assert headers[NONCE_HEADER] == NONCE
    headers[NONCE_HEADER] = "H" * 32
    refused("binding", enforcing, headers, tmp_path)
