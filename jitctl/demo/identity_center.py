"""The demo's IAM Identity Center role: a permission set assigned in another account of the
organisation instead of an IAM role assumed (moto's sso-admin and identitystore)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

PERMISSION_SET = "ProdSupport"
SSO_ACCOUNT = "210987654321"  # another account of the demo's organisation


def policy(domain: str, escalation_policy: str) -> str:
    """The role's policy file, for the demo team's domain and escalation policy."""
    return f"""\
# The demo's IAM Identity Center role: the permission set {PERMISSION_SET} in account
# {SSO_ACCOUNT}, assigned to the requester's Identity Store user for the grant's length.
version = 1

[roles.prod-sso]
description = "Production support through IAM Identity Center (aws sso login)"
kind = "identity_center"
permission_set = "{PERMISSION_SET}"
account = "{SSO_ACCOUNT}"
max_duration = "1h"

[roles.prod-sso.on_call]
escalation_policies = ["{escalation_policy}"]
max_escalation_level = 1

[roles.prod-sso.approval]
approvers = ["bob@{domain}", "dave@{domain}"]
"""


def seed_identity_center(sso: Any, ids: Any, people: Iterable[str]) -> None:
    """The permission set (sessions of 1h: no longer than the role's grants) and every person
    (by email) in the instance's Identity Store; ``sso``/``ids``: the admin's clients."""
    instance = sso.list_instances()["Instances"][0]
    sso.create_permission_set(
        InstanceArn=instance["InstanceArn"], Name=PERMISSION_SET, SessionDuration="PT1H"
    )
    for person in people:
        name = person.split("@")[0]
        ids.create_user(
            IdentityStoreId=instance["IdentityStoreId"],
            UserName=name,
            DisplayName=name.title(),
            Name={"GivenName": name.title(), "FamilyName": "Demo"},
            Emails=[{"Value": person, "Type": "work", "Primary": True}],
        )
