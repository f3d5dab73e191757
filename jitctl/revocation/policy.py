"""The revocation policy document: jitctl's deny statements on a role, merged and pruned.

Pure functions over IAM policy JSON (no AWS calls); jitctl.revocation.revoke does the reading, writing
and the rest of `jitctl revoke`. Each statement denies every action to sessions of one person
(``aws:SourceIdentity``) issued before a cutoff (``aws:TokenIssueTime``).
"""

from __future__ import annotations

import copy
import json
import re
from datetime import datetime, timedelta
from typing import Any

from jitctl.errors import AwsUnavailable
from jitctl.timeutil import parse_rfc3339, rfc3339

POLICY_NAME = "jitctl-revocations"
SID_PREFIX = "JitctlRevoke"
POLICY_VERSION = "2012-10-17"
# STS's hard maximum for an AssumeRole session (a role's MaxSessionDuration can be at most 12h;
# chained sessions at most 1h). A cutoff older than this can no longer match a live session,
# so its statement is pruned. The policy's max_duration is not used: it is jitctl's limit, not
# IAM's, and sessions of the role may come from outside jitctl or an older policy.
MAX_SESSION = timedelta(hours=12)
# The grant's issued_at is the issuer's clock just before it called AssumeRole; AWS stamps
# aws:TokenIssueTime a moment later by its own clock. The trusted clock keeps the issuer within
# ~90 s of AWS, and the call takes seconds, so a cutoff this far past issued_at is after the
# session's TokenIssueTime. The price: the person's other sessions of the role issued in that
# window are cut too (only when the grant is revoked within it).
ISSUE_MARGIN = timedelta(minutes=3)
# IAM: a role's inline policies may total 10,240 characters, whitespace not counted.
POLICY_SIZE_LIMIT = 10_240
_SI_KEY = "aws:SourceIdentity"
_ISSUE_KEY = "aws:TokenIssueTime"
_WHITESPACE = re.compile(r"\s")


class RevocationPolicyFull(AwsUnavailable):
    """The role's inline policy would exceed IAM's size limit even after pruning (exit 5)."""


def iam_role_name(role_arn: str) -> str:
    """The RoleName IAM's APIs want: the ARN's last part (``role/a/b/NAME`` has a path)."""
    return role_arn.rsplit("/", 1)[-1]  # the policy loader has checked it is a role ARN


def statement_id(request_id: str) -> str:
    return SID_PREFIX + re.sub(r"[^A-Za-z0-9]", "", request_id)


def deny_statement(sid: str, source_identity: str, cutoff: datetime) -> dict[str, Any]:
    return {
        "Sid": sid,
        "Effect": "Deny",
        "Action": "*",
        "Resource": "*",
        "Condition": {
            "StringEquals": {_SI_KEY: source_identity},
            "DateLessThan": {_ISSUE_KEY: rfc3339(cutoff)},
        },
    }


def cutoff_for(issued_at: datetime | None, when: datetime) -> datetime:
    """The cutoff that denies a grant issued at ``issued_at``, revoked at ``when``.

    ``when`` alone is not enough: a revoker whose clock is slow would put it before the grant
    was issued, and the deny would miss the very session it is meant to end.
    """
    floor = issued_at + ISSUE_MARGIN if issued_at is not None else when
    return ceil_second(max(when, floor))


def ceil_second(value: datetime) -> datetime:
    """Round up: 'issued before 04:05:07.8' must include 04:05:07.5, and RFC 3339 here has seconds."""
    return value.replace(microsecond=0) + timedelta(seconds=1 if value.microsecond else 0)


def policy_size(document: dict[str, Any]) -> int:
    """Characters as IAM counts them: whitespace does not count."""
    return len(_WHITESPACE.sub("", json.dumps(document, separators=(",", ":"))))


def _statements(document: dict[str, Any] | None) -> list[Any]:
    raw = (document or {}).get("Statement", [])
    return [raw] if isinstance(raw, dict) else list(raw or [])


def parse_deny(statement: Any) -> tuple[str, datetime] | None:
    """(source identity, cutoff) if ``statement`` has exactly the shape of a revocation."""
    try:
        cond = statement["Condition"]
        who, when = cond["StringEquals"][_SI_KEY], cond["DateLessThan"][_ISSUE_KEY]
        shaped = (
            statement["Effect"] == "Deny"
            and all(statement[key] in ("*", ["*"]) for key in ("Action", "Resource"))
            and set(cond) == {"StringEquals", "DateLessThan"}
            and len(cond["StringEquals"]) == len(cond["DateLessThan"]) == 1
            and isinstance(who, str)
        )
        return (who, parse_rfc3339(when)) if shaped else None
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _ours(statement: Any) -> tuple[str, datetime] | None:
    """Parsed, if jitctl wrote it; anything else in the policy is never pruned or merged."""
    if isinstance(statement, dict) and str(statement.get("Sid", "")).startswith(SID_PREFIX):
        return parse_deny(statement)
    return None


def latest_cutoff(document: dict[str, Any] | None, source_identity: str) -> datetime | None:
    """The latest cutoff ``document`` denies ``source_identity``'s sessions before (a deny
    before a later time denies everything one before an earlier time does), whatever the
    Sid; None if it denies them nothing."""
    cutoffs = [
        found[1]
        for found in map(parse_deny, _statements(document))
        if found and found[0] == source_identity
    ]
    return max(cutoffs, default=None)


def covers(document: dict[str, Any] | None, statement: dict[str, Any]) -> bool:
    """Whether ``document`` denies at least what ``statement`` denies (same person, a cutoff
    at least as late), whatever the Sid."""
    wanted = parse_deny(statement)
    assert wanted is not None
    latest = latest_cutoff(document, wanted[0])
    return latest is not None and latest >= wanted[1]


def merge(
    document: dict[str, Any] | None, statement: dict[str, Any], *, now: datetime
) -> tuple[dict[str, Any], int]:
    """``document`` with ``statement`` merged in, and how many expired statements were pruned.

    One statement per person: ``statement``, the one with the same Sid and jitctl's other
    statements for the same person become the one with the LATEST cutoff (it denies all the
    others deny), in the place of the first of them. Merging an earlier cutoff never moves a
    person's cutoff back. jitctl's statements whose cutoff is older than MAX_SESSION are
    dropped; anything else in the policy is kept as it is.
    RevocationPolicyFull if the result is over IAM's size limit.
    """
    new = copy.deepcopy(statement)
    new_who, new_cutoff = parse_deny(new) or ("", now)
    horizon = now - MAX_SESSION
    kept: list[Any] = []
    slot: int | None = None  # where the person's one statement goes
    pruned = 0
    for existing in _statements(document):
        ours = _ours(existing)
        same_sid = isinstance(existing, dict) and existing.get("Sid") == new["Sid"]
        if same_sid or (ours is not None and ours[0] == new_who):
            found = parse_deny(existing)
            if found and found[0] == new_who and found[1] > new_cutoff:
                new, new_cutoff = copy.deepcopy(existing), found[1]
            if slot is None:
                slot = len(kept)  # in place: the smallest change to the document
                kept.append(None)
            continue
        if ours is not None and ours[1] < horizon:
            pruned += 1
            continue
        kept.append(existing)
    if slot is None:
        kept.append(new)
    else:
        kept[slot] = new
    version = (document or {}).get("Version") or POLICY_VERSION
    merged = {"Version": version, "Statement": kept}
    if policy_size(merged) > POLICY_SIZE_LIMIT:
        raise RevocationPolicyFull(
            f"the inline policy {POLICY_NAME} would be {policy_size(merged)} characters, over "
            f"IAM's {POLICY_SIZE_LIMIT} even after pruning revocations older than 12h",
            f"statements age out 12h after their cutoff; until then, remove statements for "
            f"sessions you know have ended from {POLICY_NAME} on the role by hand",
        )
    return merged, pruned
