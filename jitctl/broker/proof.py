"""Who is calling the broker: a signed sts:GetCallerIdentity request that the broker replays.

The client signs (SigV4, its own credential chain) a POST of GetCallerIdentity whose signed
headers carry the broker's server id and a binding: a hash of this one broker call (method, path,
body, a fresh nonce, the signature date). It sends the signed request, not its secret, in
``X-Jitctl-Proof``. The broker checks it locally, claims the nonce, then POSTs it to its own
pinned STS endpoint and reads the ARN from the answer. AWS checks the signature; we check
everything AWS cannot know about.

Holes others closed, closed here the same way:
* Vault's server-id header counted even when it was not signed, so a proof made for one server
  was replayed to another: every header we forward must be in SignedHeaders.
* Vault (CVE-2020-16250) let the caller choose URL, body and headers, and read the answer's XML
  leniently: another AWS endpoint reflected attacker text that parsed as an identity. Here the
  URL is the pinned one, the body is fixed, only a short list of headers exists, redirects are
  never followed, and the answer must be exactly a GetCallerIdentityResponse in STS's namespace.
* A caller-chosen STS host or region (Infisical) let other partitions or fake endpoints answer:
  the client's host is never dialled, and the credential scope must name our region.
* A proof is a bearer token for its validity window: the binding ties it to one call and the
  nonce to one use.

The header names, the binding and each local check live in ``jitctl.broker.proof_checks``;
this module makes a proof (client side) and runs the checks, the nonce and STS in order.
"""

from __future__ import annotations

import base64
import hmac
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from jitctl.broker.nonces import NonceStore
from jitctl.broker.proof_checks import (
    AMZ_DATE_FORMAT,
    BINDING_HEADER,
    MAX_PROOF_CHARS,
    NONCE_HEADER,
    PROOF_HEADER,
    SERVER_ID_HEADER,
    STS_BODY,
    ProofError,
    binding,
    check_authorization,
    check_binding,
    check_date,
    check_request_line,
    check_server_id,
    check_signed_headers,
    decode,
    header_map,
    request_header,
    utc,
)
from jitctl.broker.sts_replay import (
    canonical_url,
    error_code,
    host_header,
    pinned,
    post,
    read_identity,
)
from jitctl.errors import AwsUnavailable, ConfigError, UsageError

CONTENT_TYPE = "application/x-www-form-urlencoded; charset=utf-8"
_SERVER_ID = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,126}[\x21-\x7e])?")
_SERVER_FAULTS = {"Throttling", "ThrottlingException", "RequestLimitExceeded", "InternalFailure"}


@dataclass(frozen=True)
class ProofSettings:
    server_id: str
    # The broker's pinned STS endpoint URL, e.g. https://sts.us-east-1.amazonaws.com
    sts_endpoint: str
    sts_region: str
    max_skew: timedelta = timedelta(minutes=5)
    timeout: float = 5.0
    ca_bundle: str | None = None

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z]{2}(?:-[a-z0-9]+)+", self.sts_region):
            raise ConfigError(f"invalid STS region {self.sts_region!r}", "e.g. us-east-1")
        pinned(self.sts_endpoint, self.sts_region)
        _check_server_id_text(self.server_id)
        if self.max_skew <= timedelta(0) or self.timeout <= 0:
            raise ConfigError("the proof's max_skew and timeout must be positive")


@dataclass(frozen=True)
class VerifiedCaller:
    arn: str
    account: str
    user_id: str
    access_key: str


# ------------------------------------------------------------------ both sides


def _check_server_id_text(server_id: str) -> None:
    if not _SERVER_ID.fullmatch(server_id):
        raise ConfigError(
            f"invalid [broker] server_id {server_id[:80]!r}",
            "use 1-128 printable ASCII characters, the same on the broker and its clients",
        )


def _amz_date(now: datetime) -> str:
    return utc(now).strftime(AMZ_DATE_FORMAT)


# ------------------------------------------------------------------ client side


def make_proof(
    credentials: Any,
    *,
    sts_url: str,
    sts_region: str,
    server_id: str,
    method: str,
    path: str,
    body: bytes,
    now: datetime,
) -> dict[str, str]:
    """The headers that prove who makes this broker call: {PROOF_HEADER: ..., NONCE_HEADER: ...}.

    ``credentials`` are botocore credentials from the caller's own chain
    (``boto3.Session().get_credentials()``); the secret never leaves this function."""
    _check_server_id_text(server_id)
    frozen = _frozen(credentials)
    parts = pinned(sts_url, sts_region)
    nonce = secrets.token_urlsafe(24)
    amz_date = _amz_date(now)
    headers = {
        "host": host_header(parts),
        "content-type": CONTENT_TYPE,
        "x-amz-date": amz_date,
        SERVER_ID_HEADER: server_id,
        BINDING_HEADER: binding(method, path, body, nonce, amz_date),
    }
    if frozen.token:
        headers["x-amz-security-token"] = frozen.token
    headers["authorization"] = _sign(frozen, sts_region, canonical_url(parts), headers, amz_date)
    proof = {"method": "POST", "url": canonical_url(parts), "headers": headers, "body": STS_BODY}
    encoded = base64.urlsafe_b64encode(json.dumps(proof, separators=(",", ":")).encode())
    text = encoded.rstrip(b"=").decode()
    if len(text) > MAX_PROOF_CHARS:  # the broker would refuse it: say why here, once
        raise UsageError(
            f"the proof of who you are would be {len(text)} characters, longer than the "
            f"broker's {MAX_PROOF_CHARS} (your AWS session token is unusually long)",
            "use credentials with a shorter session token (fewer session tags or policies)",
        )
    return {PROOF_HEADER: text, NONCE_HEADER: nonce}


def _frozen(credentials: Any) -> Any:
    """One consistent (key, secret, token) triple, refreshed first if the chain needs it."""
    from botocore.exceptions import CredentialRetrievalError, SSOError, TokenRetrievalError

    from jitctl.aws import translate_error

    if credentials is None:
        raise UsageError(
            "no AWS credentials found to prove who you are to the broker",
            "log in first (e.g. `aws sso login`) or set AWS_PROFILE / AWS_ACCESS_KEY_ID",
        )
    try:
        return getattr(credentials, "get_frozen_credentials", lambda: credentials)()
    except (SSOError, TokenRetrievalError, CredentialRetrievalError) as exc:
        raise UsageError(
            f"your AWS login cannot be refreshed to prove who you are to the broker: {exc}",
            "log in again (e.g. `aws sso login`) and retry",
        ) from exc
    except Exception as exc:
        raise translate_error(exc, "cannot prove who you are to the broker") from exc


def _sign(frozen: Any, region: str, url: str, headers: dict[str, str], amz_date: str) -> str:
    """The Authorization header, from botocore's SigV4 signer at our own timestamp (add_auth
    would read the clock itself, and the binding already covers ``amz_date``)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    signer = SigV4Auth(frozen, "sts", region)
    request = AWSRequest(method="POST", url=url, data=STS_BODY.encode(), headers=headers)
    request.context["timestamp"] = amz_date
    signature = signer.signature(
        signer.string_to_sign(request, signer.canonical_request(request)), request
    )
    signed = signer.signed_headers(signer.headers_to_sign(request))
    return (
        f"AWS4-HMAC-SHA256 Credential={signer.scope(request)}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )


# ------------------------------------------------------------------ broker side


def verify_proof(
    headers: Mapping[str, str],
    *,
    method: str,
    path: str,
    body: bytes,
    settings: ProofSettings,
    now: datetime,
    nonces: NonceStore,
    lambda_access_key: str | None = None,
) -> VerifiedCaller:
    """The AWS principal that made this broker call, or ProofError (Unavailable when STS or the
    nonce store cannot answer). Cheap local checks first; the nonce is claimed only for a proof
    that passed them all, and STS is asked only after that, so a replay never reaches AWS."""
    proof = decode(request_header(headers, PROOF_HEADER))
    check_request_line(proof, settings)
    sent = header_map(proof["headers"])
    auth = check_authorization(sent, settings)
    check_signed_headers(sent, auth, settings)
    check_server_id(sent, settings)
    nonce = request_header(headers, NONCE_HEADER)
    check_binding(sent, method, path, body, nonce)
    check_date(sent, auth, settings, now)
    if lambda_access_key is not None and not hmac.compare_digest(
        auth.access_key, lambda_access_key
    ):
        raise ProofError(
            "the proof was signed with other AWS credentials than the call to the function URL",
            "sign both with the same credentials",
            reason="lambda_access_key",
        )
    if not nonces.claim(nonce, expires_at=utc(now) + 2 * settings.max_skew):
        raise ProofError("the proof's nonce was used before (a replay)", reason="replay")
    return _ask_sts(sent, settings, auth.access_key)


# ------------------------------------------------------------------ asking STS


def _ask_sts(sent: dict[str, str], settings: ProofSettings, access_key: str) -> VerifiedCaller:
    """Replay the checked proof to our own endpoint (never the client's) and read the answer."""
    parts = pinned(settings.sts_endpoint)
    status, data = post(
        parts, sent, STS_BODY.encode(), timeout=settings.timeout, ca_bundle=settings.ca_bundle
    )
    if status == 200:
        found = read_identity(data)
        return VerifiedCaller(found.arn, found.account, found.user_id, access_key)
    code = error_code(data)
    if 300 <= status < 400:
        raise AwsUnavailable(
            f"the STS endpoint {settings.sts_endpoint} answered with a redirect ({status}); "
            "the broker follows none",
            "set [broker] sts_endpoint to a regional STS endpoint",
        )
    if status >= 500 or code in _SERVER_FAULTS:
        raise AwsUnavailable(f"STS could not check the proof ({status} {code})")
    raise ProofError(f"AWS did not accept the proof: {code}", reason="sts")
