"""Cutting off the earlier sets of one request before it is issued again.

A re-issue (jitctl.store.claims) must first end whatever an earlier issue of the same request
may have handed out: the credentials a killed process got, or those a failed delivery lost.
Every session jitctl issues carries the session tag ``jitctl:issue`` = ``REQUEST_ID.N`` (the
claim's number, transitive so that role chaining keeps it), and the cut-off is one statement
in the role's ``jitctl-revocations`` policy:

    Deny * on * if aws:PrincipalTag/jitctl:issue is one of REQUEST_ID.1 … REQUEST_ID.N-1

Why this condition: it is the narrowest AWS honours. ``aws:SourceIdentity`` with
``aws:TokenIssueTime`` (what `jitctl revoke` uses) would also cut the person's other grants of
the role issued before the cutoff, and it rests on clocks: the earlier issuer may call
AssumeRole after the cut-off is written (a stopped process resuming), which a time cannot
catch and a tag can. AWS evaluates session tags as ``aws:PrincipalTag/KEY``; a session
without the tag (not jitctl's) never matches. moto evaluates none of these conditions (its
policy engine checks ``StringEquals`` on trust-policy keys only), so the tests read the
statement back and evaluate it themselves against the tags jitctl sent.

Statements are pruned MAX_SESSION after the request's planned end (the ``Until`` in the Sid):
by then every set it could have issued has expired.
"""

from __future__ import annotations

import copy
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jitctl.revocation.policy import (
    MAX_SESSION,
    POLICY_NAME,
    POLICY_SIZE_LIMIT,
    POLICY_VERSION,
    RevocationPolicyFull,
    iam_role_name,
    policy_size,
)

if TYPE_CHECKING:
    from jitctl.context import Environment

ISSUE_TAG = "jitctl:issue"
SID_PREFIX = "JitctlReissue"
_KEY = "aws:PrincipalTag/" + ISSUE_TAG
_UNTIL = re.compile(r"Until(\d+)$")


def issue_tag(request_id: str, attempt: int) -> str:
    """The ``jitctl:issue`` tag value of a request's issue number ``attempt``."""
    return f"{request_id}.{attempt}"


def statement(request_id: str, attempts: range, planned_end: datetime) -> dict[str, Any]:
    until = int((planned_end + MAX_SESSION).timestamp())
    return {
        "Sid": f"{SID_PREFIX}{re.sub(r'[^A-Za-z0-9]', '', request_id)}Until{until}",
        "Effect": "Deny",
        "Action": "*",
        "Resource": "*",
        "Condition": {"StringEquals": {_KEY: [issue_tag(request_id, n) for n in attempts]}},
    }


def denied_tags(item: Any) -> set[str]:
    """The ``jitctl:issue`` values a re-issue statement denies (empty for anything else)."""
    try:
        values = item["Condition"]["StringEquals"][_KEY]
    except (KeyError, TypeError):
        return set()
    if item.get("Effect") != "Deny":
        return set()
    return {values} if isinstance(values, str) else {v for v in values if isinstance(v, str)}


def _expired(item: Any, now: datetime) -> bool:
    sid = str(item.get("Sid", "")) if isinstance(item, dict) else ""
    found = _UNTIL.search(sid) if sid.startswith(SID_PREFIX) else None
    return found is not None and int(found.group(1)) < now.timestamp()


def merge(
    document: dict[str, Any] | None, new: dict[str, Any], *, now: datetime
) -> tuple[dict[str, Any], int]:
    """``document`` with ``new`` in it (one statement per request: the values joined), and
    how many expired re-issue statements were pruned; anything else is kept as it is."""
    raw = (document or {}).get("Statement", [])
    kept, pruned = [], 0
    merged = copy.deepcopy(new)
    for item in [raw] if isinstance(raw, dict) else list(raw or []):
        if isinstance(item, dict) and item.get("Sid") == new["Sid"]:
            joined = sorted(denied_tags(item) | denied_tags(merged))
            merged["Condition"]["StringEquals"][_KEY] = joined
        elif _expired(item, now):
            pruned += 1
        else:
            kept.append(item)
    result = {
        "Version": (document or {}).get("Version") or POLICY_VERSION,
        "Statement": [*kept, merged],
    }
    if policy_size(result) > POLICY_SIZE_LIMIT:
        raise RevocationPolicyFull(
            f"the inline policy {POLICY_NAME} would be {policy_size(result)} characters, over "
            f"IAM's {POLICY_SIZE_LIMIT}: the earlier credentials cannot be cut off",
            f"remove statements for sessions you know have ended from {POLICY_NAME}",
        )
    return result, pruned


def covers(document: dict[str, Any] | None, wanted: dict[str, Any]) -> bool:
    """Whether ``document`` denies every issue ``wanted`` denies."""
    raw = (document or {}).get("Statement", [])
    have: set[str] = set()
    for item in [raw] if isinstance(raw, dict) else list(raw or []):
        have |= denied_tags(item)
    return denied_tags(wanted) <= have


def cut_off_earlier(
    env: Environment, role_arn: str, request_id: str, attempt: int, planned_end: datetime
) -> dict[str, Any]:
    """Deny the sessions of issues 1 … ``attempt``-1 of the request, confirmed by a read-back
    (jitctl.revocation.iam); returns the statement. AwsUnavailable (exit 5) if it cannot."""
    from jitctl.revocation import iam

    wanted = statement(request_id, range(1, attempt), planned_end)
    iam.ensure_denied(
        env.aws.client("iam"),
        role_name=iam_role_name(role_arn),
        role_arn=role_arn,
        statement=wanted,
        now=env.clock.now(),
        lock_path=iam.lock_path_for(role_arn),
        settle=iam.SETTLE_SECONDS,
        merge=merge,
        covers=covers,
    )
    return wanted
