"""What crosses the wire between a client and the broker: plain JSON, one shape per type.

Both sides use these functions, so a field added to a model is added here once. Credentials
travel only in the response to the call that issued them, over TLS; the broker keeps none.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from jitctl import errors
from jitctl.lifecycle.contract import Outcome, Revoked
from jitctl.models import AccessRequest, Caller, Credentials, Issued, OnCallEvidence
from jitctl.store.records import from_record, to_record
from jitctl.timeutil import parse_rfc3339, rfc3339

API = "/v1"

# The exit code an error carries decides its class on the client, and its HTTP status here.
_ERRORS: dict[int, type[errors.JitctlError]] = {
    errors.ExitCode.USAGE: errors.UsageError,
    errors.ExitCode.DENIED: errors.Denied,
    errors.ExitCode.TIMEOUT: errors.TimedOut,
    errors.ExitCode.UNAVAILABLE: errors.Unavailable,
    errors.ExitCode.AUDIT_FAILED: errors.AuditTampered,
}
_STATUS = {2: 400, 3: 403, 4: 409, 5: 503, 6: 409}


def request_out(req: AccessRequest) -> dict[str, Any]:
    return to_record(req)


def request_in(doc: Any) -> AccessRequest:
    if not isinstance(doc, dict):
        raise ValueError("a request must be a JSON object")
    return from_record(doc)


def caller_out(caller: Caller) -> dict[str, str]:
    return {"arn": caller.arn, "account": caller.account, "person": caller.person}


def caller_in(doc: dict[str, Any]) -> Caller:
    return Caller(arn=doc["arn"], account=doc["account"], person=doc["person"])


def credentials_out(creds: Credentials) -> dict[str, str]:
    return {
        "access_key_id": creds.access_key_id,
        "secret_access_key": creds.secret_access_key,
        "session_token": creds.session_token,
        "expiration": rfc3339(creds.expires),
    }


def credentials_in(doc: dict[str, Any]) -> Credentials:
    return Credentials(
        access_key_id=doc["access_key_id"],
        secret_access_key=doc["secret_access_key"],
        session_token=doc["session_token"],
        expiration=parse_rfc3339(doc["expiration"]),
    )


def evidence_in(doc: dict[str, Any] | None) -> OnCallEvidence | None:
    if not doc:
        return None

    def when(key: str) -> Any:
        return parse_rfc3339(doc[key]) if doc.get(key) else None

    return OnCallEvidence(
        matched_kind=doc["matched_kind"],
        matched_id=doc["matched_id"],
        escalation_policy_id=doc["escalation_policy_id"],
        level=int(doc["level"]),
        start=when("start"),
        end=when("end"),
        pd_user_id=doc["pd_user_id"],
        schedule_id=doc.get("schedule_id"),
    )


def issued_out(issued: Issued) -> dict[str, Any]:
    return {
        "request": request_out(issued.request),
        "credentials": credentials_out(issued.credentials) if issued.credentials else None,
        "evidence": issued.evidence.as_dict() if issued.evidence else None,
        "notes": list(issued.notes),
        "region": issued.region,
    }


def issued_in(doc: dict[str, Any]) -> Issued:
    return Issued(
        request=request_in(doc["request"]),
        credentials=credentials_in(doc["credentials"]) if doc.get("credentials") else None,
        evidence=evidence_in(doc.get("evidence")),
        notes=[str(n) for n in doc.get("notes") or []],
        region=str(doc["region"]) if doc.get("region") else None,
    )


def outcome_out(outcome: Outcome) -> dict[str, Any]:
    return {
        "request": request_out(outcome.request),
        "fast_path_reason": outcome.fast_path_reason,
        "approvers": list(outcome.approvers),
        "warnings": list(outcome.warnings),
        "issued": issued_out(outcome.issued) if outcome.issued else None,
    }


def outcome_in(doc: dict[str, Any]) -> Outcome:
    return Outcome(
        request=request_in(doc["request"]),
        fast_path_reason=str(doc.get("fast_path_reason") or ""),
        approvers=[str(a) for a in doc.get("approvers") or []],
        warnings=[str(w) for w in doc.get("warnings") or []],
        issued=issued_in(doc["issued"]) if doc.get("issued") else None,
    )


def revoked_out(done: Revoked) -> dict[str, Any]:
    return {
        "request": request_out(done.request),
        "details": done.details,
        "notes": list(done.notes),
        "already_revoked": done.already_revoked,
    }


def revoked_in(doc: dict[str, Any]) -> Revoked:
    return Revoked(
        request=request_in(doc["request"]),
        details=dict(doc.get("details") or {}),
        notes=[str(n) for n in doc.get("notes") or []],
        already_revoked=bool(doc.get("already_revoked")),
    )


def error_out(exc: errors.JitctlError) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) for an expected error: the client raises the same error again."""
    code = int(exc.exit_code)
    body = {"error": {"message": exc.message, "hint": exc.hint, "exit_code": code}}
    return _STATUS.get(code, 500), body


def doc_in(doc: dict[str, Any], key: str) -> dict[str, Any]:
    """A JSON object passed through as it is (a report, an explanation)."""
    part: dict[str, Any] = doc[key]
    return part


def docs_in(doc: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """A list of JSON objects passed through as they are (roles, audit records)."""
    parts: list[dict[str, Any]] = doc[key]
    return parts


def error_in(status: int, doc: Any) -> errors.JitctlError:
    """The error a broker answered with, as the exception the same failure raises locally."""
    err = doc.get("error") if isinstance(doc, dict) else None
    code = err.get("exit_code") if isinstance(err, dict) else None
    if (
        not isinstance(err, dict)
        or type(code) is not int
        or not isinstance(err.get("message"), str)
    ):
        return errors.Unavailable(
            f"the broker answered HTTP {status} without a jitctl error",
            "check [broker] url: is it the broker, not a proxy's error page?",
        )
    cls = _ERRORS.get(code, errors.JitctlError)
    hint = err.get("hint") if isinstance(err.get("hint"), str) else None
    return cls(f"broker: {err['message']}", hint)


def text(doc: dict[str, Any], key: str) -> str:
    """A string the caller must send (exit 2 otherwise)."""
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise errors.UsageError(f"{key} must be a non-empty string")
    return value


def duration(doc: dict[str, Any], key: str) -> timedelta | None:
    """Whole seconds the caller may send (STS's 12h at most); any other value is exit 2."""
    seconds = doc.get(key)
    if seconds is not None and (type(seconds) is not int or not 0 < seconds <= 43200):
        raise errors.UsageError(f"{key} must be a whole number from 1 to 43200")
    return timedelta(seconds=seconds) if seconds else None


def optional_text(doc: dict[str, Any], key: str) -> str | None:
    """A string the caller may leave out (null); any other type is exit 2, never a 500."""
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise errors.UsageError(f"{key} must be a string")
    return value
