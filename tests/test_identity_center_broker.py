"""identity_center roles through the broker, end to end, with moto's IAM enforcement on: the
broker assigns and removes; the requester, whose keys may do nothing in AWS, cannot."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from tests.broker_world import BrokerWorld, own_world

pytestmark = pytest.mark.slow
ACCOUNT = "333300002222"  # this module's own moto account (broker_world._claim_account)
TARGET = "333300009999"  # the account the permission set is assigned in
ALICE = "alice@example.com"
POLICY = f"""
version = 1

[groups]
sre = ["bob@example.com", "carol@example.com"]

[roles.sso-admin]
kind = "identity_center"
permission_set = "ProdAdmin"
account = "{TARGET}"
max_duration = "1h"

[roles.sso-admin.on_call]
escalation_policies = ["PEP1234"]

[roles.sso-admin.approval]
approvers = ["group:sre"]
"""


class IdcBrokerWorld(BrokerWorld):
    def build(self) -> None:
        super().build()
        sso = self.admin_client("sso-admin")
        instance = sso.list_instances()["Instances"][0]
        self.instance_arn, store = instance["InstanceArn"], instance["IdentityStoreId"]
        self.ps_arn = sso.create_permission_set(
            InstanceArn=self.instance_arn, Name="ProdAdmin", SessionDuration="PT1H"
        )["PermissionSet"]["PermissionSetArn"]
        ids = self.admin_client("identitystore")
        self.principal = ids.create_user(
            IdentityStoreId=store,
            UserName="alice",
            DisplayName="Alice",
            Name={"GivenName": "Alice", "FamilyName": "Example"},
            Emails=[{"Value": ALICE, "Type": "work", "Primary": True}],
        )["UserId"]

    def holders(self) -> list[str]:
        """Read with the broker's keys: the admin's session is no IAM principal moto's
        enforcement knows."""
        found = self.boto("broker", "sso-admin").list_account_assignments(
            InstanceArn=self.instance_arn, AccountId=TARGET, PermissionSetArn=self.ps_arn
        )["AccountAssignments"]
        return [a["PrincipalId"] for a in found]

    def assignment_args(self) -> dict[str, str]:
        return {
            "InstanceArn": self.instance_arn,
            "TargetId": TARGET,
            "TargetType": "AWS_ACCOUNT",
            "PermissionSetArn": self.ps_arn,
            "PrincipalType": "USER",
            "PrincipalId": self.principal,
        }


@pytest.fixture(scope="module")
def world(tmp_path_factory, pd_certs) -> Iterator[IdcBrokerWorld]:
    root = tmp_path_factory.mktemp("idc-broker")
    with own_world(root, pd_certs, IdcBrokerWorld, account=ACCOUNT, policy=POLICY) as w:
        with w.serving():
            yield w


@pytest.fixture(autouse=True)
def _enforced(enforcing) -> None:
    """moto's IAM enforcement on for every test here."""


def test_the_broker_assigns_and_revokes_and_the_requester_cannot(world):
    now = datetime.now(UTC)
    world.pd.add_oncall(world.pd_ids[ALICE], "PEP1234", 1, start=now - timedelta(hours=1))
    mine = world.boto(ALICE, "sso-admin")
    with pytest.raises(ClientError) as denied:
        mine.create_account_assignment(**world.assignment_args())
    # moto answers sso-admin's JSON protocol with an XML denial: botocore sees a bare 403
    assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert world.holders() == []

    out = world.run(ALICE, "request", "sso-admin", "--reason", "INC-1", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert (doc["status"], doc["kind"], doc["account"], doc["assignment"]) == (
        "issued", "identity_center", TARGET, "present",
    )  # fmt: skip
    assert world.holders() == [world.principal]
    assert "aws sso login" in " ".join(doc["notes"])
    assert not (world.root / "home" / ALICE / ".aws" / "credentials").exists()
    grants = json.loads(world.run(ALICE, "grants", "--json").stdout)
    assert [g["request_id"] for g in grants] == [doc["request_id"]]

    with pytest.raises(ClientError) as denied:  # nor can she remove it herself, to hide it
        mine.delete_account_assignment(**world.assignment_args())
    assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    out = world.run(ALICE, "revoke", doc["request_id"], "--reason", "done", "--json")
    assert out.returncode == 0, out.stderr
    revoked = json.loads(out.stdout)
    assert (revoked["status"], revoked["assignment"]) == ("revoked", "removed")
    assert world.holders() == []
    audit = (world.broker_dir / "audit.jsonl").read_text()
    events = [json.loads(line)["event"] for line in audit.splitlines()]
    assert "assigned" in events and "unassigned" in events
