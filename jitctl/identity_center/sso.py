"""The AWS side of an identity_center grant: sso-admin and identitystore calls.

Nothing here decides who gets what; ``grant`` does. Every wait on AWS is bounded (the config's
``[identity_center] timeout``) and reports progress; a status still IN_PROGRESS past the bound
is exit 5 (``StillInProgress``), FAILED is exit 5 with AWS's reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jitctl.errors import AwsUnavailable, UsageError

if TYPE_CHECKING:
    from jitctl.context import Environment

# What the identity that issues (the broker's role) needs for identity_center roles; a
# requester needs none of it (deploy/broker.yaml grants it to the broker alone).
ACTIONS = (
    "sso:ListInstances",
    "sso:ListPermissionSets",
    "sso:DescribePermissionSet",
    "sso:ListAccountAssignments",
    "sso:CreateAccountAssignment",
    "sso:DeleteAccountAssignment",
    "sso:DescribeAccountAssignmentCreationStatus",
    "sso:DescribeAccountAssignmentDeletionStatus",
    "identitystore:GetUserId",
)
Progress = Callable[[str, float], None]  # (AWS's status, seconds waited so far)
FIRST_POLL, MAX_POLL = 0.5, 5.0


class StillInProgress(AwsUnavailable):
    """AWS had not finished the assignment change when the bound ran out (exit 5)."""


@dataclass(frozen=True)
class Target:
    """One account assignment: AWS keeps at most one per (principal, permission set, account)."""

    instance_arn: str
    account: str
    permission_set_arn: str
    principal_id: str

    def as_dict(self) -> dict[str, str]:
        return {
            "instance_arn": self.instance_arn,
            "account": self.account,
            "permission_set_arn": self.permission_set_arn,
            "principal_id": self.principal_id,
        }

    def args(self) -> dict[str, str]:
        """The arguments CreateAccountAssignment and DeleteAccountAssignment both take."""
        return {
            "InstanceArn": self.instance_arn,
            "TargetId": self.account,
            "TargetType": "AWS_ACCOUNT",
            "PermissionSetArn": self.permission_set_arn,
            "PrincipalType": "USER",
            "PrincipalId": self.principal_id,
        }


def target_from(record: dict[str, Any]) -> Target:
    return Target(
        instance_arn=str(record["instance_arn"]),
        account=str(record["account"]),
        permission_set_arn=str(record["permission_set_arn"]),
        principal_id=str(record["principal_id"]),
    )


def client(env: Environment, service: str) -> Any:
    """``sso-admin`` or ``identitystore``, in the instance's region when the config names it."""
    return env.aws.client(service, region=env.config.identity_center.region)


def _aws(exc: Exception, action: str) -> Exception:
    from jitctl.aws import translate_error

    hint = "the identity issuing needs sso-admin and identitystore permissions (deploy/broker.yaml)"
    return translate_error(exc, action, hint=hint)


def instance(env: Environment) -> tuple[str, str]:
    """(instance ARN, Identity Store id): the config's, else the account's only instance."""
    settings = env.config.identity_center
    if settings.instance_arn and settings.identity_store_id:
        return settings.instance_arn, settings.identity_store_id
    try:
        found = client(env, "sso-admin").list_instances().get("Instances", [])
    except Exception as exc:
        raise _aws(exc, "cannot list IAM Identity Center instances") from exc
    if settings.instance_arn:
        found = [i for i in found if i.get("InstanceArn") == settings.instance_arn]
    if len(found) != 1:
        raise UsageError(
            f"{len(found)} IAM Identity Center instances fit this account; jitctl needs one",
            "set [identity_center] instance_arn and identity_store_id in the config",
        )
    return str(found[0]["InstanceArn"]), str(found[0]["IdentityStoreId"])


def find_user(env: Environment, store_id: str, person: str) -> str | None:
    """The person's Identity Store user id: by email (``emails.value``), then ``userName``."""
    ids = client(env, "identitystore")
    for path in ("emails.value", "userName"):
        key = {"UniqueAttribute": {"AttributePath": path, "AttributeValue": person}}
        try:
            return str(ids.get_user_id(IdentityStoreId=store_id, AlternateIdentifier=key)["UserId"])
        except Exception as exc:
            from jitctl.aws import error_code

            if error_code(exc) != "ResourceNotFoundException":
                raise _aws(exc, f"cannot look {person} up in Identity Store {store_id}") from exc
    return None


def permission_set(env: Environment, instance_arn: str, name_or_arn: str) -> dict[str, Any]:
    """DescribePermissionSet's answer for a permission set named by ARN or by name."""
    sso = client(env, "sso-admin")
    try:
        if name_or_arn.startswith("arn:"):
            return _describe(sso, instance_arn, name_or_arn)
        for page in sso.get_paginator("list_permission_sets").paginate(InstanceArn=instance_arn):
            for arn in page.get("PermissionSets", []):
                described = _describe(sso, instance_arn, arn)
                if described.get("Name") == name_or_arn:
                    return described
    except Exception as exc:
        raise _aws(exc, f"cannot read permission set {name_or_arn!r}") from exc
    raise UsageError(
        f"IAM Identity Center instance {instance_arn} has no permission set {name_or_arn!r}",
        "check the role's permission_set in the policy (`aws sso-admin list-permission-sets`)",
    )


def _describe(sso: Any, instance_arn: str, arn: str) -> dict[str, Any]:
    found = sso.describe_permission_set(InstanceArn=instance_arn, PermissionSetArn=arn)
    return dict(found["PermissionSet"])


def exists(env: Environment, target: Target) -> bool:
    """Whether AWS holds this assignment now (ListAccountAssignments, every page)."""
    sso = client(env, "sso-admin")
    pages = sso.get_paginator("list_account_assignments").paginate(
        InstanceArn=target.instance_arn,
        AccountId=target.account,
        PermissionSetArn=target.permission_set_arn,
    )
    try:
        return any(
            a.get("PrincipalType") == "USER" and a.get("PrincipalId") == target.principal_id
            for page in pages
            for a in page.get("AccountAssignments", [])
        )
    except Exception as exc:
        raise _aws(exc, "cannot list the account's assignments") from exc


def create(env: Environment, target: Target, on_progress: Progress | None = None) -> float:
    """CreateAccountAssignment and wait until SUCCEEDED; the seconds it took."""
    return _change(env, target, "create", on_progress)


def delete(env: Environment, target: Target, on_progress: Progress | None = None) -> float:
    """DeleteAccountAssignment and wait until SUCCEEDED; the seconds it took."""
    return _change(env, target, "delete", on_progress)


_CALLS = {
    "create": (
        "create_account_assignment",
        "AccountAssignmentCreationStatus",
        "describe_account_assignment_creation_status",
        "AccountAssignmentCreationRequestId",
    ),
    "delete": (
        "delete_account_assignment",
        "AccountAssignmentDeletionStatus",
        "describe_account_assignment_deletion_status",
        "AccountAssignmentDeletionRequestId",
    ),
}


def _change(env: Environment, target: Target, verb: str, on_progress: Progress | None) -> float:
    call, key, describe, id_key = _CALLS[verb]
    sso = client(env, "sso-admin")
    what = f"{verb} the assignment of {target.permission_set_arn} in {target.account}"
    started = time.monotonic()
    try:
        status = getattr(sso, call)(**target.args())[key]
        bound = env.config.identity_center.timeout
        poll = FIRST_POLL
        while _settled(status, what) is False:
            waited = time.monotonic() - started
            if on_progress is not None:
                on_progress(str(status.get("Status")), waited)
            if waited >= bound:
                raise StillInProgress(
                    f"cannot {what}: AWS still reports {status.get('Status')} after {waited:.0f}s",
                    "it is recorded: `jitctl sweep` finishes or cleans it; try again later",
                )
            time.sleep(min(poll, max(bound - waited, 0.01)))
            poll = min(poll * 2, MAX_POLL)
            found = getattr(sso, describe)(
                InstanceArn=target.instance_arn, **{id_key: status["RequestId"]}
            )
            status = found[key]
    except StillInProgress:
        raise
    except Exception as exc:
        raise _aws(exc, f"cannot {what}") from exc
    return time.monotonic() - started


def _settled(status: dict[str, Any], what: str) -> bool:
    """True once SUCCEEDED; False while IN_PROGRESS; FAILED raises with AWS's reason."""
    state = status.get("Status")
    if state == "SUCCEEDED":
        return True
    if state == "FAILED":
        raise AwsUnavailable(
            f"cannot {what}: AWS reports FAILED ({status.get('FailureReason') or 'no reason given'})",
            "check the permission set and the account in IAM Identity Center",
        )
    return False
