"""The STS request behind a proof, on the wire: the pinned endpoint, signing it (client),
POSTing it (broker), reading the answer strictly.

Only ``jitctl.broker.proof`` uses this module; it is split out to keep each module small.
Vault's CVE-2020-16250 came from reading an identity out of whatever XML came back: here the
answer must be exactly GetCallerIdentityResponse/GetCallerIdentityResult in STS's namespace,
with one Arn, Account and UserId, and an ARN of that account.
"""

from __future__ import annotations

import http.client
import ipaddress
import re
import ssl
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

from jitctl.errors import AwsUnavailable, ConfigError, UsageError

STS_NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
STS_BODY = "Action=GetCallerIdentity&Version=2011-06-15"
MAX_RESPONSE_BYTES = 16384  # GetCallerIdentity answers are well under 1 KB
_ARN = re.compile(r"arn:aws[a-z-]*:(?:iam|sts)::(?P<account>\d{12}):[\x21-\x7e]{1,2000}")
_ERROR_CODE = re.compile(r"[A-Za-z0-9._]{1,64}")
_REGIONAL_HOST = re.compile(r"sts(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?")


@dataclass(frozen=True)
class Identity:
    arn: str
    account: str
    user_id: str


def pinned(url: str, region: str | None = None) -> SplitResult:
    """An STS endpoint URL, checked: https (http only on loopback, for tests), a host, no user,
    path or query; when ``region`` is given, an AWS STS host must be that region's."""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError:
        raise ConfigError(f"invalid STS endpoint {url!r}: bad port") from None
    loopback = parts.hostname == "localhost" or _is_loopback_ip(parts.hostname or "")
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise ConfigError(f"invalid STS endpoint {url!r}", "use https://sts.REGION.amazonaws.com")
    if not parts.hostname or parts.username or parts.password:
        raise ConfigError(f"invalid STS endpoint {url!r}: no host, or a user name in it")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"invalid STS endpoint {url!r}: it must have no path or query")
    if region is not None and _endpoint_region(parts.hostname) not in (None, region):
        raise ConfigError(
            f"the STS endpoint {url} is not in region {region}",
            "make [broker] sts_endpoint and its region agree",
        )
    return parts


def _endpoint_region(host: str) -> str | None:
    """The region an AWS STS host name serves (the global endpoint signs as us-east-1)."""
    if host == "sts.amazonaws.com":
        return "us-east-1"
    m = _REGIONAL_HOST.fullmatch(host)
    return m["region"] if m else None


def _is_loopback_ip(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_header(parts: SplitResult) -> str:
    """The Host header for an endpoint: the default port left out, as botocore does."""
    default = {"https": 443, "http": 80}[parts.scheme]
    host = (parts.hostname or "").lower()
    host = f"[{host}]" if ":" in host else host  # an IPv6 literal keeps its brackets
    return host if parts.port in (None, default) else f"{host}:{parts.port}"


def canonical_url(parts: SplitResult) -> str:
    return f"{parts.scheme}://{host_header(parts)}/"


def frozen_credentials(credentials: Any) -> Any:
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


def sign(frozen: Any, region: str, url: str, headers: dict[str, str], amz_date: str) -> str:
    """The Authorization header of a GetCallerIdentity POST, from botocore's SigV4 signer at
    our own timestamp (add_auth would read the clock itself; the caller's binding covers
    ``amz_date`` already)."""
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


def post(
    parts: SplitResult,
    headers: dict[str, str],
    body: bytes,
    *,
    timeout: float,
    ca_bundle: str | None,
) -> tuple[int, bytes]:
    """POST to the pinned endpoint's "/" with exactly these headers. http.client follows no
    redirects; TLS is verified against the system store or ``ca_bundle``. At most
    MAX_RESPONSE_BYTES + 1 bytes are read. Network failures are AwsUnavailable (exit 5)."""
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=ca_bundle)
        conn = http.client.HTTPSConnection(
            parts.hostname or "", parts.port, timeout=timeout, context=context
        )
    else:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    try:
        conn.request("POST", "/", body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read(MAX_RESPONSE_BYTES + 1)
    except (OSError, http.client.HTTPException) as exc:
        raise AwsUnavailable(
            f"cannot reach STS at {canonical_url(parts)} to check the proof: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    finally:
        conn.close()


def read_identity(data: bytes) -> Identity:
    """Arn, Account and UserId from exactly GetCallerIdentityResponse/GetCallerIdentityResult."""
    root = _xml(data)
    ns = f"{{{STS_NAMESPACE}}}"
    results = root.findall(f"{ns}GetCallerIdentityResult")
    if root.tag != f"{ns}GetCallerIdentityResponse" or len(results) != 1:
        raise AwsUnavailable("STS's answer is not a GetCallerIdentityResponse")
    values: dict[str, str] = {}
    for name in ("Arn", "Account", "UserId"):
        found = results[0].findall(f"{ns}{name}")
        if len(found) != 1 or not (found[0].text or "").strip():
            raise AwsUnavailable(f"STS's answer has no single {name}")
        values[name] = (found[0].text or "").strip()
    m = _ARN.fullmatch(values["Arn"])
    if m is None or m["account"] != values["Account"]:
        raise AwsUnavailable("STS's answer names a malformed ARN or another account")
    return Identity(values["Arn"], values["Account"], values["UserId"])


def error_code(data: bytes) -> str:
    """The <Code> of an AWS error answer, for the message; "unknown" when there is none."""
    try:
        root = _xml(data)
    except AwsUnavailable:
        return "unknown"
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == "Code" and _ERROR_CODE.fullmatch(element.text or ""):
            return element.text or "unknown"
    return "unknown"


def _xml(data: bytes) -> ET.Element:
    # No DTDs or entities (expansion bombs), nothing large: a real answer has neither.
    if len(data) > MAX_RESPONSE_BYTES or b"<!" in data:
        raise AwsUnavailable("STS's answer is too large or not plain XML")
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        raise AwsUnavailable(f"STS's answer is not XML: {exc}") from None
