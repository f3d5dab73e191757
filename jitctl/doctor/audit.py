"""`jitctl doctor`'s checks of the central audit copy: can the caller rewrite it, does S3
Object Lock keep what was written, and can the caller sign with the audit key.

A warning here does not fail the doctor: in direct mode every requester writes the central
copy with their own keys, so "you can write it" is the plain truth to say, not an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

from jitctl.doctor.report import WARN
from jitctl.errors import ConfigError, JitctlError

if TYPE_CHECKING:
    from jitctl.context import Environment

_AUTHORITATIVE = (
    "let only the broker's role write the central copy and sign records with [audit] "
    "kms_key (docs/security.md)"
)


def central_checks(env: Environment) -> Iterator[tuple[str, Callable[[], Any]]]:
    """(name, check) for each central sink, then for the signing key when configured."""
    for sink in env.audit.sinks:
        yield f"audit writers: {sink.name}", partial(_writable, env, sink)
        if hasattr(sink, "object_lock"):
            yield f"audit object lock: {sink.name}", partial(_object_lock, env, sink)
        if hasattr(sink, "indexes"):
            yield f"audit indexes: {sink.name}", partial(_indexes, sink)
    if env.config.audit.kms_key:
        yield "audit signing key", lambda: _signing_key(env)


def _you(env: Environment) -> str:
    """The caller's ARN (not env.caller: these checks do not need a mapped person)."""
    from jitctl.aws import get_caller_identity

    return f"you ({get_caller_identity(env.aws)[0]})"


def _writable(env: Environment, sink: Any) -> str | tuple[str, str, str]:
    """A probe with one key: a policy allowing only some keys (dynamodb:LeadingKeys, an S3
    prefix) is judged by the probe key alone."""
    if not sink.writable():
        return f"{_you(env)} cannot write records to it"
    signed = env.config.audit.kms_key is not None
    caught = "by the signatures" if signed else "against the writer's own local log"
    detail = (
        f"{_you(env)} can write records to it, and so can anyone with the same rights (in "
        "direct mode, every requester): a writer can rewrite or invent chains, which "
        f"`audit verify --remote` catches only {caught} (expected when you are the broker)"
    )
    return WARN, detail, _AUTHORITATIVE


def _indexes(sink: Any) -> str | tuple[str, str, str]:
    """Whether the broker's `audit log --request/--person/--since` can query, or must read the
    whole table (direct mode reads every record anyway: any requester can rewrite an index
    key, jitctl.audit.sink.Sink.trust_index)."""
    from jitctl.audit.index import INDEXES, PERSON_INDEX, REQUEST_INDEX

    try:
        have = sink.indexes()
    except ConfigError:
        raise  # not jitctl's audit table at all
    except JitctlError as exc:  # a requester may lack DescribeTable: she never queries anyway
        return WARN, f"cannot read its indexes: {exc.message}", "check them as an administrator"
    missing = [name for name in INDEXES if have.get(name) != "ACTIVE"]
    if not missing:
        return f"{', '.join(INDEXES)}: the broker's `audit log` filters query, not scan"
    flags = {REQUEST_INDEX: "--request", PERSON_INDEX: "--person"}
    slow = ", ".join(flags.get(name, "--since alone") for name in missing)
    hint = (
        "run `jitctl init` to add request-index and person-index (or `aws dynamodb "
        f"update-table --table-name {sink.table}` with the GlobalSecondaryIndexUpdates in "
        "docs); day-index comes only with a new table (older items lack its `day` key)"
    )
    detail = f"no ACTIVE {', '.join(missing)}: the broker's `audit log` {slow} reads the whole table"
    return WARN, detail, hint


def _object_lock(env: Environment, sink: Any) -> str | tuple[str, str, str]:
    settings = env.config.audit
    enabled, mode, default_days = sink.object_lock()
    if not enabled:
        if settings.retention_days:
            raise ConfigError(
                f"S3 bucket {sink.bucket} has no Object Lock, but [audit] retention_days is "
                "set: every record write fails",
                "enable Object Lock on the bucket, or remove retention_days",
            )
        return (
            WARN,
            "Object Lock is off: anyone with s3:PutObject or s3:DeleteObject can overwrite or "
            "delete written records",
            "enable Object Lock on the bucket and set [audit] retention_days",
        )
    days = settings.retention_days or default_days
    mode = settings.retention_mode if settings.retention_days else mode
    if not days:
        return (
            WARN,
            "Object Lock is on, but neither the bucket nor [audit] retention_days sets a "
            "retention: records can still be deleted",
            "set [audit] retention_days (or a default retention on the bucket)",
        )
    note = " (s3:BypassGovernanceRetention can still shorten it)" if mode == "GOVERNANCE" else ""
    return f"Object Lock {mode}, each record kept {days} days{note}"


def _signing_key(env: Environment) -> str | tuple[str, str, str]:
    from jitctl.audit.signing import Signer, Verifier

    settings = env.config.audit
    key = settings.kms_key or ""  # central_checks asks only when it is set

    def factory(service: str) -> Any:
        return env.aws.client(service, region=settings.region)

    verifier = Verifier(key, factory)
    verifier.load()  # the key exists, is ECC_NIST_P256 SIGN_VERIFY, and its public key is readable
    if Signer(key, factory).can_sign():
        return (
            WARN,
            f"{_you(env)} can sign with {verifier.key_arn}: your signatures make "
            "forged records look genuine",
            "grant kms:Sign on the audit key to the broker's role alone",
        )
    return f"{verifier.key_arn}: ECC_NIST_P256; you cannot sign with it"
