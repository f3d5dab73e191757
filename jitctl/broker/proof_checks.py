"""What a proof is, and the broker's local checks of one before STS is asked.

A proof (``jitctl.broker.proof``) is a signed sts:GetCallerIdentity request whose signed
headers carry the broker's server id and a binding to one call. AWS checks the signature;
these functions check everything AWS cannot know about: one request line (POST, the pinned
URL, the fixed body), a short list of headers, all of them signed, the credential scope, the
server id, the binding and the date. Each raises ProofError (HTTP 401) with a stable reason.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from jitctl.broker.sts_replay import canonical_url, host_header, pinned
from jitctl.errors import ExitCode, JitctlError

if TYPE_CHECKING:
    from jitctl.broker.proof import ProofSettings

PROOF_HEADER = "X-Jitctl-Proof"  # base64url(JSON) of the signed STS request, on every broker call
NONCE_HEADER = "X-Jitctl-Nonce"
SERVER_ID_HEADER = "x-jitctl-server-id"  # inside the signed STS request
BINDING_HEADER = "x-jitctl-binding"  # inside the signed STS request

STS_BODY = "Action=GetCallerIdentity&Version=2011-06-15"
MAX_PROOF_CHARS = 8192  # a proof with an SSO session token is ~3 KB
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"

_MUST_SIGN = ("host", "x-amz-date", "content-type", SERVER_ID_HEADER, BINDING_HEADER)
_MAY_SEND = frozenset({*_MUST_SIGN, "x-amz-security-token", "authorization"})
_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[A-Z0-9]{16,128})/(?P<date>\d{8})/(?P<region>[a-z0-9-]+)"
    r"/(?P<service>[a-z0-9-]+)/aws4_request, ?SignedHeaders=(?P<signed>[a-z0-9;-]+),"
    r" ?Signature=[0-9a-f]{64}"
)
_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z")
_NONCE = re.compile(r"[A-Za-z0-9_-]{22,128}")
_HEADER_VALUE = re.compile(r"[\x20-\x7e]{1,4096}")  # printable ASCII: nothing to inject


class ProofError(JitctlError):
    """The caller's proof of identity is refused. The broker answers HTTP 401."""

    exit_code = ExitCode.DENIED

    def __init__(self, message: str, hint: str | None = None, *, reason: str = "refused") -> None:
        super().__init__(message, hint)
        self.reason = reason  # a short stable tag for logs and tests: "binding", "nonce", ...


@dataclass(frozen=True)
class _Authorization:
    access_key: str
    date: str
    signed: frozenset[str]


def binding(method: str, path: str, body: bytes, nonce: str, amz_date: str) -> str:
    """Hex SHA-256 tying a proof to one broker call: method, path (with query), the body's
    SHA-256, the nonce and the signature date, as a JSON array so no field can bleed into
    another."""
    fields = ["jitctl-binding-v1", method.upper(), path, hashlib.sha256(body).hexdigest()]
    material = json.dumps([*fields, nonce, amz_date], separators=(",", ":"))
    return hashlib.sha256(material.encode()).hexdigest()


def utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def request_header(headers: Mapping[str, str], name: str) -> str:
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


def decode(text: str) -> dict[str, Any]:
    def bad(why: str) -> ProofError:
        return ProofError(f"the {PROOF_HEADER} header is not a valid proof: {why}", reason="decode")

    if len(text) > MAX_PROOF_CHARS:
        raise bad(f"longer than {MAX_PROOF_CHARS} characters")
    if not re.fullmatch(r"[A-Za-z0-9_-]+={0,2}", text):
        raise bad("not base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        proof = json.loads(raw.decode(), object_pairs_hook=_no_duplicate_keys)
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


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("a key appears twice")
    return dict(pairs)


def check_request_line(proof: dict[str, Any], settings: ProofSettings) -> None:
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


def header_map(headers: dict[str, str]) -> dict[str, str]:
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


def check_authorization(sent: dict[str, str], settings: ProofSettings) -> _Authorization:
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


def check_signed_headers(
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


def check_server_id(sent: dict[str, str], settings: ProofSettings) -> None:
    if not hmac.compare_digest(sent[SERVER_ID_HEADER].encode(), settings.server_id.encode()):
        raise ProofError(
            "the proof was made for another broker (server id mismatch)",
            "set [broker] server_id to this broker's",
            reason="server_id",
        )


def check_binding(sent: dict[str, str], method: str, path: str, body: bytes, nonce: str) -> None:
    if not _NONCE.fullmatch(nonce):
        raise ProofError(f"the {NONCE_HEADER} header is malformed", reason="nonce")
    expected = binding(method, path, body, nonce, sent["x-amz-date"])
    if not hmac.compare_digest(sent[BINDING_HEADER].encode(), expected.encode()):
        raise ProofError(
            "the proof was made for another call (method, path, body or nonce differ)",
            reason="binding",
        )


def check_date(
    sent: dict[str, str], auth: _Authorization, settings: ProofSettings, now: datetime
) -> None:
    text = sent["x-amz-date"]
    if not _AMZ_DATE.fullmatch(text) or auth.date != text[:8]:
        raise ProofError("the proof's X-Amz-Date is malformed", reason="date")
    try:
        signed_at = datetime.strptime(text, AMZ_DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise ProofError("the proof's X-Amz-Date is malformed", reason="date") from None
    off = abs(signed_at - utc(now))
    if off > settings.max_skew:
        raise ProofError(
            f"the proof was signed {int(off.total_seconds())}s away from the broker's clock "
            f"(at most {int(settings.max_skew.total_seconds())}s allowed)",
            "check this machine's clock (NTP) and try again",
            reason="date",
        )
