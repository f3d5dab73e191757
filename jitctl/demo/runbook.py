"""What the runbook in docs/runbooks.md needs from the demo world: the database it checks and fails over,
and persona environment files that switch people cleanly (sourced one after another)."""

from __future__ import annotations

import secrets
import shlex
from collections.abc import Mapping
from typing import Any

# What the runbook (docs/runbooks.md) touches: an Aurora cluster, its writer instance, and the replica
# a failover promotes (RDS refuses to fail over a cluster of one instance).
DB_CLUSTER, DB_INSTANCE, DB_REPLICA = "orders", "orders-primary", "orders-replica"
# A persona's session variables that the next persona's environment file must clear (keys
# from `--format env`, a profile): the AWS CLI and boto3 take environment keys over AWS_PROFILE
# (the JS SDK v3 the other way round), and a stale token breaks the next person's keys.
PERSONA_UNSET = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CREDENTIAL_EXPIRATION",
)


def seed_rds(rds: Any) -> None:
    """The database the runbook checks and fails over (``rds``: a boto3 client)."""
    rds.create_db_cluster(
        DBClusterIdentifier=DB_CLUSTER,
        Engine="aurora-postgresql",
        MasterUsername="orders",
        MasterUserPassword=secrets.token_urlsafe(16),
    )
    for instance in (DB_INSTANCE, DB_REPLICA):
        rds.create_db_instance(
            DBInstanceIdentifier=instance,
            DBClusterIdentifier=DB_CLUSTER,
            Engine="aurora-postgresql",
            DBInstanceClass="db.r6g.large",
        )


def persona_script(person: str, exports: Mapping[str, str]) -> str:
    """An environment file: clear the previous persona's session, then act as ``person``."""
    lines = [f"# act as {person}", "unset " + " ".join(PERSONA_UNSET)]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in exports.items()]
    return "\n".join(lines) + "\n"
