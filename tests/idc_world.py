"""IAM Identity Center in moto for the identity_center tests: the account's instance, its
Identity Store users, a permission set of the test's own (moto's server is shared: names and
target accounts are unique per test), and a policy file naming it."""

from __future__ import annotations

import secrets
import textwrap
from typing import Any

import boto3

from tests.harness import ADMIN_KEYS, Team


def admin(team: Team, service: str) -> Any:
    return boto3.client(service, endpoint_url=team.moto, region_name="us-east-1", **ADMIN_KEYS)


class IdcWorld:
    """One permission set in one account of its own, and the team's people in the store."""

    def __init__(self, team: Team, *, on_call: bool = True, max_duration: str = "1h") -> None:
        self.team = team
        self.sso = admin(team, "sso-admin")
        self.ids = admin(team, "identitystore")
        instance = self.sso.list_instances()["Instances"][0]
        self.instance_arn = instance["InstanceArn"]
        self.store_id = instance["IdentityStoreId"]
        self.name = "PS" + secrets.token_hex(6)
        self.account = str(100000000000 + secrets.randbelow(899999999999))
        created = self.sso.create_permission_set(
            InstanceArn=self.instance_arn, Name=self.name, SessionDuration="PT8H"
        )
        self.ps_arn = created["PermissionSet"]["PermissionSetArn"]
        fast = '\n[roles.sso-admin.on_call]\nescalation_policies = ["PEP1234"]\n' if on_call else ""
        (team.policy_dir / "sso.toml").write_text(
            textwrap.dedent(
                f"""
                version = 1

                [roles.sso-admin]
                kind = "identity_center"
                permission_set = "{self.name}"
                account = "{self.account}"
                max_duration = "{max_duration}"

                [roles.sso-admin.approval]
                approvers = ["group:sre"]
                """
            )
            + fast
        )

    def user(self, email: str) -> str:
        """The person's Identity Store user (made once per server)."""
        key = {"UniqueAttribute": {"AttributePath": "emails.value", "AttributeValue": email}}
        try:
            return self.ids.get_user_id(IdentityStoreId=self.store_id, AlternateIdentifier=key)[
                "UserId"
            ]
        except self.ids.exceptions.ResourceNotFoundException:
            pass
        name = email.split("@")[0]
        return self.ids.create_user(
            IdentityStoreId=self.store_id,
            UserName=name + "-" + secrets.token_hex(3),
            DisplayName=name,
            Name={"GivenName": name, "FamilyName": "Example"},
            Emails=[{"Value": email, "Type": "work", "Primary": True}],
        )["UserId"]

    def holders(self) -> list[str]:
        """The principal ids AWS holds this permission set for in the account."""
        found = self.sso.list_account_assignments(
            InstanceArn=self.instance_arn, AccountId=self.account, PermissionSetArn=self.ps_arn
        )["AccountAssignments"]
        return [a["PrincipalId"] for a in found]

    def assign(self, principal: str) -> None:
        """An assignment made outside jitctl (an administrator's)."""
        self.sso.create_account_assignment(
            InstanceArn=self.instance_arn,
            TargetId=self.account,
            TargetType="AWS_ACCOUNT",
            PermissionSetArn=self.ps_arn,
            PrincipalType="USER",
            PrincipalId=principal,
        )
