"""Everything that talks to AWS: the one client factory, the caller's identity, AssumeRole.

boto3/botocore are imported inside functions: `jitctl --help` must not pay for them.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from jitctl.errors import AwsUnavailable, JitctlError, UsageError
from jitctl.models import Credentials

STS_NAME_MAX = 64
STS_HASH_CHARS = 26  # base32: 130 bits of SHA-256, so no two people ever share a name
_STS_NAME_OK = re.compile(r"[\w+=,.@-]{2,64}", re.ASCII)  # ':' excluded: no "aws:" prefix
_STS_NAME_BAD = re.compile(r"[^\w+=,.@-]", re.ASCII)
TAG_VALUE_MAX = 256
_TAG_VALUE_BAD = re.compile(r"[^\w .:/=+\-@]", re.ASCII)
TRUST_POLICY_HINT = (
    "the role's trust policy must allow sts:AssumeRole, sts:SetSourceIdentity and sts:TagSession "
    "for your principal; see policies/trust-policy-template.json"
)

# Errors that mean "your AWS credentials are the problem" (exit 2), not "AWS is down" (exit 5).
_CREDENTIAL_ERRORS = {
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
    "InvalidAccessKeyId",
}


def caller_region(environ: Mapping[str, str], configured: Callable[[], str | None]) -> str | None:
    """The caller's region in AWS's own order (the AWS CLI v2 and the SDKs): ``AWS_REGION``,
    then ``AWS_DEFAULT_REGION``, then the profile's ``region`` in the AWS config file
    (``configured``: what botocore read there; botocore alone would put the file before
    ``AWS_REGION``, which it does not know)."""
    for key in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        if value := environ.get(key, "").strip():
            return value
    return configured()


# After one attempt of any AWS call times out, every AWS call of this AwsClients fails at once
# for this many seconds: a command that meets a hung AWS ends in about one read timeout (10 s),
# not one per retry (4 attempts: 41 s) and per call (STS, DynamoDB, S3, KMS: 81 s and more),
# and the contract's "a hang within 30 s" holds. A long-lived broker tries AWS again after it.
HANG_WINDOW = 30.0


class AwsClients:
    """The one place that makes boto3 clients. Honours boto3's own chain (AWS_PROFILE,
    AWS_ENDPOINT_URL, AWS_REGION, ...). Tests pass their own environment through the process env."""

    def __init__(
        self, *, region: str | None = None, connect_timeout: float = 5, read_timeout: float = 10
    ) -> None:
        self._region = region
        self._session: Any = None
        self._timeouts = (connect_timeout, read_timeout)
        self._hung: tuple[float, str] | None = None  # (monotonic time, what did not answer)
        self._cache: dict[tuple[str, str | None], Any] = {}
        # A thread may ask for a client while the command's thread does (the PagerDuty token
        # from Secrets Manager): one lock, so no session or client is ever built twice.
        self._lock = threading.RLock()
        # botocore `after-call` handler for STS responses: the trusted clock reads their Date.
        self.sts_listener: Callable[..., None] | None = None

    def session(self) -> Any:
        with self._lock:
            return self._new_session() if self._session is None else self._session

    def _new_session(self) -> Any:
        import boto3

        try:
            self._session = boto3.session.Session(region_name=self._region)
        except Exception as exc:  # botocore.exceptions.ProfileNotFound and friends
            raise UsageError(
                f"cannot set up AWS: {exc}", "check AWS_PROFILE and your AWS config files"
            ) from exc
        return self._session

    def client(self, service: str, *, region: str | None = None) -> Any:
        key = (service, region)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = self._new_client(service, region)
            return self._cache[key]

    def _new_client(self, service: str, region: str | None) -> Any:
        from botocore.config import Config as BotoConfig

        session = self.session()
        # STS works from any region: don't fail just because none is set.
        region_name = region or caller_region(os.environ, lambda: session.region_name)
        region_name = region_name or "us-east-1"
        config = BotoConfig(
            connect_timeout=self._timeouts[0],
            read_timeout=self._timeouts[1],
            retries={"max_attempts": 3, "mode": "standard"},
        )
        client = session.client(service, region_name=region_name, config=config)
        if service == "sts" and self.sts_listener is not None:
            client.meta.events.register("after-call.sts", self.sts_listener)
        client.meta.events.register("before-send", self._refuse_while_hung)
        client.meta.events.register("needs-retry", self._stop_on_timeout)
        return client

    def _refuse_while_hung(self, **_: Any) -> None:
        """botocore's before-send: no attempt while AWS is known not to answer (HANG_WINDOW).
        The error raised here reaches the caller unchanged (botocore does not retry it)."""
        hung = self._hung
        if hung is not None and time.monotonic() - hung[0] < HANG_WINDOW:
            raise AwsUnavailable(
                f"AWS did not answer ({hung[1]}); not waiting for it again",
                "check AWS_ENDPOINT_URL, your network or the AWS status page, and retry shortly",
            )

    def _stop_on_timeout(self, caught_exception: Any = None, **_: Any) -> None:
        """botocore's needs-retry: an attempt that timed out is not retried (a hung endpoint
        would hang every retry too); it is raised now, and later calls are refused at once."""
        from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

        if isinstance(caught_exception, JitctlError):
            raise caught_exception  # from _refuse_while_hung: never a retry
        if isinstance(caught_exception, ConnectTimeoutError | ReadTimeoutError):
            self._hung = (time.monotonic(), str(caught_exception))
            raise caught_exception


# IAM said no. "403": a denial botocore could not parse a code from (moto answers DynamoDB's
# JSON protocol in XML); the caller's keys themselves are checked before any probe.
DENIED = ("AccessDenied", "AccessDeniedException", "403")


def error_code(exc: Exception) -> str:
    """The AWS error code of a botocore ClientError ("" for anything else)."""
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def translate_error(exc: Exception, action: str, *, hint: str | None = None) -> Exception:
    """Map a botocore exception to one clear jitctl error. Returns it for `raise ... from exc`."""
    from botocore.exceptions import (
        ClientError,
        ConfigParseError,
        InvalidConfigError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
        ProfileNotFound,
    )

    if isinstance(exc, JitctlError):
        return exc  # already one clear line (e.g. from setting up the session)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return UsageError(
            f"{action}: no AWS credentials found",
            "log in first (e.g. `aws sso login`) or set AWS_PROFILE / AWS_ACCESS_KEY_ID",
        )
    if _login_expired(exc):  # a login to renew, not an outage: exit 2 with the fix, never 5
        profile = os.environ.get("AWS_PROFILE")
        fix = f"aws sso login --profile {profile}" if profile else "aws sso login"
        return UsageError(
            f"{action}: your AWS login has expired or is missing ({type(exc).__name__})",
            f"run `{fix}` (or refresh your credentials) and try again",
        )
    if _keys_expired(exc):  # AWS_CREDENTIAL_EXPIRATION (or a credential source) in the past
        return UsageError(
            f"{action}: your AWS credentials have expired",
            "refresh them (e.g. `aws sso login`, or export new keys) and try again",
        )
    if isinstance(exc, ProfileNotFound | NoRegionError | InvalidConfigError | ConfigParseError):
        return UsageError(
            f"{action}: {exc}", "check AWS_PROFILE, AWS_REGION and your AWS config files"
        )
    if isinstance(exc, ValueError) and os.environ.get("AWS_CREDENTIAL_EXPIRATION"):
        return UsageError(  # botocore parses it with dateutil, whose ParserError is a ValueError
            f"{action}: AWS_CREDENTIAL_EXPIRATION is not a date ({exc})",
            "set it as ISO 8601 (e.g. 2026-11-28T10:00:00Z) with fresh keys, or unset it",
        )
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "Unknown")
        message = exc.response.get("Error", {}).get("Message", "")
        if code in _CREDENTIAL_ERRORS:
            return UsageError(
                f"{action}: AWS rejected your credentials ({code})",
                "refresh them (e.g. `aws sso login`) and try again",
            )
        return AwsUnavailable(f"{action}: AWS refused ({code}: {message})", hint)
    return AwsUnavailable(f"{action}: AWS unreachable ({type(exc).__name__}: {exc})", hint)


def _login_expired(exc: Exception) -> bool:
    """botocore's ways of saying the SSO token or a credential process has run out."""
    from botocore import exceptions as bex

    kinds = tuple(
        getattr(bex, name)
        for name in (
            "SSOTokenLoadError",
            "UnauthorizedSSOTokenError",
            "TokenRetrievalError",
            "SSOError",
            "CredentialRetrievalError",
        )
        if hasattr(bex, name)
    )
    return isinstance(exc, kinds)


def _keys_expired(exc: Exception) -> bool:
    """botocore refreshed credentials that still carry an expiry in the past: it says so only
    as a RuntimeError with this text (botocore.credentials.RefreshableCredentials)."""
    return isinstance(exc, RuntimeError) and "refreshed credentials are still expired" in str(exc)


def get_caller_identity(clients: AwsClients) -> tuple[str, str]:
    """(principal ARN, account id) of the current AWS credentials, from STS itself."""
    arn, account, _ = caller_identity(clients)
    return arn, account


def caller_identity(clients: AwsClients) -> tuple[str, str, str]:
    """(principal ARN, account id, UserId) of the current AWS credentials, from STS itself.
    UserId is ``ROLE_ID:SESSION`` for an assumed role: the identity rule checks the role by it."""
    try:
        ident = clients.client("sts").get_caller_identity()
    except Exception as exc:
        raise translate_error(exc, "cannot tell who you are (sts:GetCallerIdentity)") from exc
    return ident["Arn"], ident["Account"], ident["UserId"]


def whereabouts(client: Any, client_factory: Callable[[str], Any]) -> str:
    """ "in REGION (account ID)": where a resource was looked for, for the error that says it
    is missing there. A table in another region is the usual cause, and `jitctl init` there
    would split the team. Best effort: the account reads "unknown" if STS cannot say."""
    region = getattr(getattr(client, "meta", None), "region_name", None) or "no region"
    try:
        account = str(client_factory("sts").get_caller_identity()["Account"])
    except Exception:  # the missing resource is the error being reported, not this
        account = "unknown"
    return f"in {region} (account {account})"


def sts_name(person: str) -> str:
    """The RoleSessionName and SourceIdentity for ``person`` (shared/CONTRACT.md): the
    lower-cased email itself when STS takes it (2-64 of [\\w+=,.@-]), else a stable form
    nobody else gets: a readable ASCII prefix, '.', and a hash of the whole lower-cased email.
    That form has no '@', so it is never someone's email, and the hash (130 bits) tells apart
    two addresses a cut or a replaced character would merge: a revocation by
    aws:SourceIdentity (jitctl.revocation) cuts exactly one person's sessions."""
    text = person.lower()
    if _STS_NAME_OK.fullmatch(text):
        return text
    digest = base64.b32encode(hashlib.sha256(text.encode()).digest()).decode().lower()
    digest = digest[:STS_HASH_CHARS]
    readable = _readable(text)[: STS_NAME_MAX - 1 - STS_HASH_CHARS]
    return f"{readable}.{digest}" if readable else digest


def _readable(text: str) -> str:
    """``text`` in ASCII for people to read: accents dropped (jösé -> jose), '@' as '_',
    anything else STS refuses as '-'."""
    import unicodedata

    plain = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return _STS_NAME_BAD.sub("-", plain.replace("@", "_"))


def tag_value(text: str) -> str:
    """A session tag value STS accepts: at most 256 of [\\w .:/=+\\-@]."""
    return _TAG_VALUE_BAD.sub("_", text)[:TAG_VALUE_MAX]


def approvers_tag(approvers: Sequence[str]) -> str:
    """The ``jitctl:approvers`` session tag: as many whole addresses as fit a tag value, then
    "+N" for the rest; an address is never cut (a cut one could read as someone else's)."""
    names = [_TAG_VALUE_BAD.sub("_", a) for a in approvers]
    for shown in range(len(names), -1, -1):
        rest = len(names) - shown
        text = " ".join([*names[:shown], *([f"+{rest}"] if rest else [])])
        if len(text) <= TAG_VALUE_MAX:
            return text
    return ""  # not reached: "+N" alone always fits


def session_tags(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": key, "Value": tag_value(value)} for key, value in tags.items() if value]


def assume_role(
    clients: AwsClients,
    *,
    role_arn: str,
    person: str,
    duration_seconds: int,
    tags: Mapping[str, str],
    session_policy: str | None,
    transitive: Sequence[str] = (),
) -> Credentials:
    """AssumeRole carrying who (SourceIdentity, session name) and why (session tags) into CloudTrail."""
    params: dict[str, Any] = {
        "RoleArn": role_arn,
        "RoleSessionName": sts_name(person),
        "SourceIdentity": sts_name(person),
        "DurationSeconds": duration_seconds,
        "Tags": session_tags(tags),
    }
    if transitive:
        params["TransitiveTagKeys"] = list(transitive)
    if session_policy:
        params["Policy"] = session_policy
    try:
        resp = clients.client("sts").assume_role(**params)
    except Exception as exc:
        raise translate_error(
            exc, f"STS refused to assume {role_arn}", hint=_assume_hint(exc)
        ) from exc
    c = resp["Credentials"]
    return Credentials(
        access_key_id=c["AccessKeyId"],
        secret_access_key=c["SecretAccessKey"],
        session_token=c["SessionToken"],
        expiration=c["Expiration"],
    )


def _assume_hint(exc: Exception) -> str:
    """The likely fix for an AssumeRole refusal, from the error code and message."""
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return "check AWS_ENDPOINT_URL / your network; peer approval still records requests"
    code = exc.response.get("Error", {}).get("Code", "")
    message = exc.response.get("Error", {}).get("Message", "").lower()
    if "role chaining" in message:  # checked first: it names DurationSeconds too
        from jitctl.lifecycle.chaining import CHAIN_HINT

        return CHAIN_HINT
    if "duration" in message or "maxsessionduration" in message:
        return "the role's MaxSessionDuration in IAM is shorter than requested: raise it or lower max_duration"
    if code == "PackedPolicyTooLarge":
        return "the session policy plus tags are too large: shorten the session policy"
    if code == "MalformedPolicyDocument":
        return "the role's session_policy is not a valid IAM policy"
    if code == "RegionDisabledException":
        return "STS is not activated in this region: set AWS_REGION to an enabled region"
    if code == "AccessDenied" or "not authorized" in message:
        return TRUST_POLICY_HINT
    return "see the AWS error above"
