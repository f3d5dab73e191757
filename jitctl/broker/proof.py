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
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from jitctl.broker.nonces import NonceStore
from jitctl.broker.sts_wire import (
    STS_BODY,
    canonical_url,
    error_code,
    frozen_credentials,
    host_header,
    pinned,
    post,
    read_identity,
    sign,
)
from jitctl.errors import AwsUnavailable, ConfigError, ExitCode, JitctlError, UsageError
from jitctl.jsonstrict import no_duplicate_keys

PROOF_HEADER = "X-Jitctl-Proof"  # base64url(JSON) of the signed STS request, on every broker call
NONCE_HEADER = "X-Jitctl-Nonce"
SERVER_ID_HEADER = "x-jitctl-server-id"  # inside the signed STS request
BINDING_HEADER = "x-jitctl-binding"  # inside the signed STS request

CONTENT_TYPE = "application/x-www-form-urlencoded; charset=utf-8"
MAX_PROOF_CHARS = 8192  # measured: 866 with long-term keys, ~2.5 KB with a 1.2 KB session token
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"

_MUST_SIGN = ("host", "x-amz-date", "content-type", SERVER_ID_HEADER, BINDING_HEADER)
_MAY_SEND = frozenset({*_MUST_SIGN, "x-amz-security-token", "authorization"})
_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[A-Z0-9]{16,128})/(?P<date>\d{8})/(?P<region>[a-z0-9-]+)"
    r"/(?P<service>[a-z0-9-]+)/aws4_request, ?SignedHeaders=(?P<signed>[a-z0-9;-]+),"
    r" ?Signature=[0-9a-f]{64}"
)
_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z")
_SERVER_ID = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,126}[\x21-\x7e])?")
_NONCE = re.compile(r"[A-Za-z0-9_-]{22,128}")
_HEADER_VALUE = re.compile(r"[\x20-\x7e]{1,4096}")  # printable ASCII: nothing to inject
_SERVER_FAULTS = {"Throttling", "ThrottlingException", "RequestLimitExceeded", "InternalFailure"}


class ProofError(JitctlError):
    """The caller's proof of identity is refused. The broker answers HTTP 401."""

    exit_code = ExitCode.DENIED

    def __init__(self, message: str, hint: str | None = None, *, reason: str = "refused") -> None:
        super().__init__(message, hint)
        self.reason = reason  # a short stable tag for logs and tests: "binding", "nonce", ...


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


@dataclass(frozen=True)
class _Authorization:
    access_key: str
    date: str
    signed: frozenset[str]


# ------------------------------------------------------------------ both sides


def binding(method: str, path: str, body: bytes, nonce: str, amz_date: str) -> str:
    """Hex SHA-256 tying a proof to one broker call: method, path (with query), the body's
    SHA-256, the nonce and the signature date, as a JSON array so no field can bleed into
    another."""
    fields = ["jitctl-binding-v1", method.upper(), path, hashlib.sha256(body).hexdigest()]
    material = json.dumps([*fields, nonce, amz_date], separators=(",", ":"))
    return hashlib.sha256(material.encode()).hexdigest()


def _check_server_id_text(server_id: str) -> None:
    if not _SERVER_ID.fullmatch(server_id):
        raise ConfigError(
            f"invalid [broker] server_id {server_id[:80]!r}",
            "use 1-128 printable ASCII characters, the same on the broker and its clients",
        )


def _amz_date(now: datetime) -> str:
    return _utc(now).strftime(AMZ_DATE_FORMAT)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


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
    frozen = frozen_credentials(credentials)
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
    headers["authorization"] = sign(frozen, sts_region, canonical_url(parts), headers, amz_date)
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
    that passed them all, and STS is asked only after that, so a replay never reaches AWS.

    ``method``, ``path`` (the request target with its query, e.g. Lambda's rawPath + "?" +
    rawQueryString) and ``body`` (the raw bytes, base64-decoded if Lambda encoded them) are the
    broker call as received: the client bound its proof to exactly these."""
    proof = _decode(_request_header(headers, PROOF_HEADER))
    _check_request_line(proof, settings)
    sent = _header_map(proof["headers"])
    auth = _check_authorization(sent, settings)
    _check_signed_headers(sent, auth, settings)
    _check_server_id(sent, settings)
    nonce = _request_header(headers, NONCE_HEADER)
    _check_binding(sent, method, path, body, nonce)
    _check_date(sent, auth, settings, now)
    if lambda_access_key is not None and not hmac.compare_digest(
        auth.access_key.encode(), lambda_access_key.encode()
    ):
        raise ProofError(
            "the proof was signed with other AWS credentials than the call to the function URL",
            "sign both with the same credentials",
            reason="lambda_access_key",
        )
    if not nonces.claim(nonce, expires_at=_utc(now) + 2 * settings.max_skew):
        raise ProofError("the proof's nonce was used before (a replay)", reason="replay")
    return _ask_sts(sent, settings, auth.access_key)


def _request_header(headers: Mapping[str, str], name: str) -> str:
    values = [v for k, v in headers.items() if k.lower() == name.lower()]
    if len(values) > 1:
        raise ProofError(f"the call carries {name} more than once", reason="duplicate_header")
    if not values or not values[0]:
        raise ProofError(
            f"the call carries no {name} header",
            "call the broker with jitctl, which proves who you are with your AWS credentials",
            reason="missing",
        )
    return values[0]


def _decode(text: str) -> dict[str, Any]:
    def bad(why: str) -> ProofError:
        return ProofError(f"the {PROOF_HEADER} header is not a valid proof: {why}", reason="decode")

    if len(text) > MAX_PROOF_CHARS:
        raise bad(f"longer than {MAX_PROOF_CHARS} characters")
    if not re.fullmatch(r"[A-Za-z0-9_-]+={0,2}", text):
        raise bad("not base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        proof = json.loads(raw.decode(), object_pairs_hook=no_duplicate_keys)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise bad(str(exc)) from None
    if not isinstance(proof, dict) or set(proof) != {"method", "url", "headers", "body"}:
        raise bad("expected exactly method, url, headers, body")
    fields = (proof["method"], proof["url"], proof["body"])
    if not all(isinstance(v, str) for v in fields) or not isinstance(proof["headers"], dict):
        raise bad("method, url and body must be strings, headers an object")
    if not all(isinstance(v, str) for v in proof["headers"].values()):
        raise bad("header values must be strings")
    return proof


def _check_request_line(proof: dict[str, Any], settings: ProofSettings) -> None:
    if proof["method"] != "POST":
        raise ProofError("the proof must be a POST", reason="method")
    if proof["url"] != canonical_url(pinned(settings.sts_endpoint)):
        # Never dialled: the broker replays to its own endpoint. A mismatch means the client
        # signed for another host or region, which AWS would (rightly) refuse anyway.
        raise ProofError(
            f"the proof is signed for {proof['url'][:200]!r}, not this broker's STS endpoint",
            f"sign for {settings.sts_endpoint}",
            reason="url",
        )
    if proof["body"] != STS_BODY:
        raise ProofError(f"the proof's body must be exactly {STS_BODY}", reason="body")


def _header_map(headers: dict[str, str]) -> dict[str, str]:
    sent: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        if key in sent:
            raise ProofError(f"the proof sends header {key} twice", reason="duplicate_header")
        if key not in _MAY_SEND:
            raise ProofError(f"the proof may not send header {key[:64]!r}", reason="header")
        if not _HEADER_VALUE.fullmatch(value):
            raise ProofError(f"the proof's header {key} has a bad value", reason="header")
        sent[key] = value
    return sent


def _check_authorization(sent: dict[str, str], settings: ProofSettings) -> _Authorization:
    m = _AUTHORIZATION.fullmatch(sent.get("authorization", ""))
    if m is None:
        raise ProofError(
            "the proof's Authorization is not an AWS4-HMAC-SHA256 signature", reason="authorization"
        )
    if (m["region"], m["service"]) != (settings.sts_region, "sts"):
        raise ProofError(
            f"the proof is signed for {m['service']} in {m['region']}, "
            f"not sts in {settings.sts_region}",
            reason="scope",
        )
    return _Authorization(m["key"], m["date"], frozenset(m["signed"].split(";")))


def _check_signed_headers(
    sent: dict[str, str], auth: _Authorization, settings: ProofSettings
) -> None:
    # Every header we forward must be signed: an unsigned server id or binding proves nothing.
    unsigned = sorted(set(sent) - {"authorization"} - auth.signed)
    missing = sorted(set(_MUST_SIGN) - auth.signed)
    if unsigned or missing:
        raise ProofError(
            f"the proof's headers {', '.join(unsigned + missing)} are not signed",
            "sign them (jitctl does)",
            reason="unsigned_header",
        )
    if not auth.signed <= set(sent):
        raise ProofError("the proof signs headers it does not send", reason="unsigned_header")
    if sent["host"] != host_header(pinned(settings.sts_endpoint)):
        raise ProofError("the proof's Host is not this broker's STS endpoint", reason="host")
    if sent["content-type"].split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise ProofError("the proof's Content-Type must be a form", reason="header")


def _check_server_id(sent: dict[str, str], settings: ProofSettings) -> None:
    if not hmac.compare_digest(sent[SERVER_ID_HEADER].encode(), settings.server_id.encode()):
        raise ProofError(
            "the proof was made for another broker (server id mismatch)",
            "set [broker] server_id to this broker's",
            reason="server_id",
        )


def _check_binding(sent: dict[str, str], method: str, path: str, body: bytes, nonce: str) -> None:
    if not _NONCE.fullmatch(nonce):
        raise ProofError(f"the {NONCE_HEADER} header is malformed", reason="nonce")
    expected = binding(method, path, body, nonce, sent["x-amz-date"])
    if not hmac.compare_digest(sent[BINDING_HEADER].encode(), expected.encode()):
        raise ProofError(
            "the proof was made for another call (method, path, body or nonce differ)",
            reason="binding",
        )


def _check_date(
    sent: dict[str, str], auth: _Authorization, settings: ProofSettings, now: datetime
) -> None:
    text = sent["x-amz-date"]
    if not _AMZ_DATE.fullmatch(text) or auth.date != text[:8]:
        raise ProofError("the proof's X-Amz-Date is malformed", reason="date")
    try:
        signed_at = datetime.strptime(text, AMZ_DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise ProofError("the proof's X-Amz-Date is malformed", reason="date") from None
    off = abs(signed_at - _utc(now))
    if off > settings.max_skew:
        raise ProofError(
            f"the proof was signed {int(off.total_seconds())}s away from the broker's clock "
            f"(at most {int(settings.max_skew.total_seconds())}s allowed)",
            "check this machine's clock (NTP) and try again",
            reason="date",
        )


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
