"""Writing the revocation deny into IAM so that it sticks: read, merge, write, read back.

IAM has no conditional write, so ``ensure_denied`` guards the read-merge-write with a file
lock (this host) and a read-back (other hosts); ``jitctl.revocation.revoke`` decides what to deny and
records it. The document itself (statements, cutoffs, merging) is ``jitctl.revocation.policy``.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from jitctl.errors import AwsUnavailable
from jitctl.filelock import exclusive_lock
from jitctl.revocation.policy import POLICY_NAME, RevocationPolicyFull, covers, merge

SETTLE_SECONDS = 1.0  # pause before reading back, so a concurrent writer's PUT has landed
ROUNDS = 4
_LOCK_TIMEOUT = 30.0
PERMISSION_HINT = "the revoker needs iam:GetRolePolicy and iam:PutRolePolicy on {arn}"


def _aws_error(exc: Exception, action: str, role_arn: str) -> Exception:
    from botocore.exceptions import ClientError

    from jitctl.aws import translate_error

    code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
    if code == "LimitExceeded":
        return RevocationPolicyFull(
            f"{action}: IAM says the role's inline policies are too large",
            "the role's inline policies total over 10,240 characters: shrink its other inline "
            "policies, or delete old statements from " + POLICY_NAME,
        )
    if code == "NoSuchEntity":
        hint = f"the role does not exist in this account: check its arn in the policy ({role_arn})"
    elif code in ("AccessDenied", "AccessDeniedException"):
        hint = PERMISSION_HINT.format(arn=role_arn)
    else:
        hint = PERMISSION_HINT.format(arn=role_arn) + "; check AWS_ENDPOINT_URL / your network"
    return translate_error(exc, action, hint=hint)


def read_policy(iam: Any, role_name: str, role_arn: str) -> dict[str, Any] | None:
    """The current revocation policy of the role, or None if it has none yet."""
    try:
        resp = iam.get_role_policy(RoleName=role_name, PolicyName=POLICY_NAME)
    except Exception as exc:
        if getattr(exc, "response", {}).get("Error", {}).get("Code") == "NoSuchEntity":
            return None  # no policy yet (or no role: PutRolePolicy will say so)
        raise _aws_error(exc, f"cannot read {POLICY_NAME} on {role_arn}", role_arn) from exc
    document: dict[str, Any] = resp["PolicyDocument"]  # boto3 URL-decodes and parses it
    return document


def _write_policy(iam: Any, role_name: str, role_arn: str, document: dict[str, Any]) -> None:
    text = json.dumps(document, separators=(",", ":"))
    try:
        iam.put_role_policy(RoleName=role_name, PolicyName=POLICY_NAME, PolicyDocument=text)
    except Exception as exc:
        raise _aws_error(exc, f"cannot write {POLICY_NAME} on {role_arn}", role_arn) from exc


def ensure_denied(
    iam: Any,
    *,
    role_name: str,
    role_arn: str,
    statement: dict[str, Any],
    now: datetime,
    lock_path: Path,
    settle: float = SETTLE_SECONDS,
    rounds: int = ROUNDS,
    merge: Callable[..., tuple[dict[str, Any], int]] = merge,
    covers: Callable[[dict[str, Any] | None, dict[str, Any]], bool] = covers,
) -> tuple[bool, int]:
    """Merge ``statement`` into the role's revocation policy until a read-back shows it.
    Returns (whether anything was written, statements pruned).

    IAM has no conditional write, so this is read-merge-write, guarded twice:
    - an exclusive file lock serializes revocations by this OS user on this host, so none of
      them can overwrite another's statement;
    - across hosts (or OS users) nothing can: after writing we pause, read back, and if our
      deny is gone (someone who read before our write wrote after it) merge and write again,
      up to ``rounds`` times. That makes a loss unlikely, not impossible: a writer whose PUT
      lands after our last read-back can still drop our statement, and IAM's eventual
      consistency can serve a stale read (which also risks dropping a statement another host
      just wrote). The request's status in the store remains the record of what was revoked,
      and re-running `jitctl revoke ID` re-asserts the deny at any time.
    ``merge`` and ``covers``: how ``statement`` joins the document and when it is in place
    (a revocation's by default; jitctl.revocation.cutoff passes a re-issue's).
    """
    pruned = 0
    wrote = False
    for _ in range(rounds):
        with exclusive_lock(lock_path, timeout=_LOCK_TIMEOUT):
            current = read_policy(iam, role_name, role_arn)
            merged, dropped = merge(current, statement, now=now)
            if covers(current, statement) and not dropped:
                return wrote, pruned  # already in place; nothing to tidy
            _write_policy(iam, role_name, role_arn, merged)
            wrote, pruned = True, pruned + dropped
        if settle > 0:
            time.sleep(settle * random.uniform(1.0, 1.5))  # noqa: S311 (jitter, not crypto)
        if covers(read_policy(iam, role_name, role_arn), statement):
            return wrote, pruned
    raise AwsUnavailable(
        f"the deny for {statement['Sid']} did not stick on {role_arn} after {rounds} writes "
        "(revocations from other hosts kept overwriting the policy)",
        "run the same `jitctl revoke` again; the request is still marked issued",
    )


def lock_path_for(role_arn: str, lock_dir: Path | None = None) -> Path:
    """One lock file per role: revocations of different roles never wait on each other."""
    if lock_dir is None:
        from jitctl.config.settings import default_data_dir

        lock_dir = default_data_dir() / "locks"
    digest = hashlib.sha256(role_arn.encode()).hexdigest()[:20]
    return lock_dir / f"iam-revocations-{digest}"
