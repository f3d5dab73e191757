"""IAM's records of the broker's callers' roles, asked with the broker's own credentials.

Kept here, beside the broker that reads the ``Environment``, so that ``jitctl.identity.rule`` (which
the ``Environment`` itself uses) never imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jitctl.identity.iam_roles import RoleFacts

if TYPE_CHECKING:
    from jitctl.context import Environment


def broker_role_facts(env: Environment) -> RoleFacts:
    """IAM's records of callers' roles, asked with the broker's own credentials (iam:GetRole,
    deploy/broker.yaml), kept for the life of the process."""
    return RoleFacts(
        lambda: env.aws.client("iam"),
        lambda: env.identity()[1],
        asker="the broker's AWS credentials",
        fix="ask the broker's operators to grant its role iam:GetRole on the account's roles "
        "(deploy/broker.yaml does), or to map the ARN in the policy's [identities]",
    )
