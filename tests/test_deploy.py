"""deploy/broker.yaml: cfn-lint accepts it, moto's CloudFormation creates it, and what it
creates is what the broker needs and no more.

The policies are judged by what they allow, not by their text: the broker role's policy as
moto's CloudFormation made it (parameters, !Ref/!Sub/!GetAtt resolved) is evaluated with
moto's IAM policy evaluation against the calls jitctl makes and calls it must never make; with
IAM enforced, real calls under the broker's and a requester's keys are refused or not. The
template is read with cfn-lint's loader, which keeps the short tags as data (their long forms).

moto's CloudFormation has no AWS::Lambda::Url (the test drops it and checks the template's
text instead), ignores TimeToLiveSpecification, PointInTimeRecoverySpecification and the KMS
key's KeySpec/KeyUsage (checked in the template), and keeps an `AWS::NoValue` list item as
null, which its IAM validator rejects: so the stacks here are created with a PagerDuty secret.
"""

from __future__ import annotations

import fnmatch
import io
import json
import shutil
import subprocess
import sys
import tomllib
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.conftest import enforce, moto_process

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "broker.yaml"
TRUST_TEMPLATE = ROOT / "deploy" / "target-role-trust-policy.json"
ACCOUNT = "123456789012"
SECRET = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:jitctl/pagerduty-AbCdEf"
ORG = "o-abcdefghij"


def template() -> dict[str, Any]:
    from cfnlint.decode import cfn_yaml  # reads !Ref, !Sub, ... into their long forms

    return cfn_yaml.load(str(TEMPLATE))


def client(service: str, endpoint: str, key: str = "AKIAADMIN", secret: str = "x", token=None):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        aws_session_token=token,
    )


# --------------------------------------------------------------------- cfn-lint


def test_cfn_lint_accepts_the_template():
    cfn_lint = shutil.which("cfn-lint") or str(Path(sys.executable).parent / "cfn-lint")
    out = subprocess.run(
        [cfn_lint, str(TEMPLATE)], capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr


# --------------------------------------------------------------------- what moto cannot create


def test_template_states_what_moto_ignores():
    """moto ignores TTL: the template must expire items by the attribute the code writes
    (the store's retention, the nonces' expiry), not by a name that merely looks right."""
    from jitctl.broker import nonces
    from jitctl.store import dynamodb

    res = template()["Resources"]
    assert res["RequestsTable"]["Properties"]["TimeToLiveSpecification"] == {
        "AttributeName": dynamodb.TTL_ATTRIBUTE,
        "Enabled": True,
    }
    assert res["NoncesTable"]["Properties"]["TimeToLiveSpecification"] == {
        "AttributeName": nonces.TTL_ATTRIBUTE,
        "Enabled": True,
    }
    for table in ("RequestsTable", "NoncesTable", "AuditTable"):
        pitr = res[table]["Properties"]["PointInTimeRecoverySpecification"]
        assert pitr == {"PointInTimeRecoveryEnabled": True}, table
    key = res["AuditKey"]["Properties"]
    assert (key["KeySpec"], key["KeyUsage"]) == ("ECC_NIST_P256", "SIGN_VERIFY")
    url = res["BrokerUrl"]["Properties"]
    assert url["AuthType"] == "AWS_IAM"
    assert url["TargetFunctionArn"] == {"Fn::GetAtt": ["BrokerFunction", "Arn"]}


def test_only_the_broker_role_may_sign_audit_records():
    statements = template()["Resources"]["AuditKey"]["Properties"]["KeyPolicy"]["Statement"]
    plain = [s for s in statements if "Fn::If" not in s]

    def allowed(action: str) -> list[Any]:
        return [
            s["Principal"]
            for s in plain
            if any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in s["Action"])
        ]

    assert allowed("kms:Sign") == [{"AWS": {"Fn::GetAtt": ["BrokerRole", "Arn"]}}]
    assert allowed("kms:CreateGrant") == []  # a grant could hand out kms:Sign
    assert allowed("kms:ScheduleKeyDeletion") == []
    assert len(allowed("kms:GetPublicKey")) == 2  # the account's verifiers and the broker
    org = next(s for s in statements if "Fn::If" in s)["Fn::If"][1]
    assert sorted(org["Action"]) == ["kms:DescribeKey", "kms:GetPublicKey"]


# --------------------------------------------------------------------- creating the stack


def upload_code(endpoint: str) -> tuple[str, str]:
    """A package zip in S3 for the function (moto does not run it)."""
    bucket = f"code-{uuid.uuid4().hex[:8]}"
    s3 = client("s3", endpoint)
    s3.create_bucket(Bucket=bucket)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("jitctl/broker/aws_lambda.py", "def handler(event, context):\n    return {}\n")
    s3.put_object(Bucket=bucket, Key="broker.zip", Body=buf.getvalue())
    return bucket, "broker.zip"


def create_stack(endpoint: str, **params: str) -> dict[str, str]:
    """Create the stack (without the function URL moto lacks); returns its outputs."""
    body = template()
    del body["Resources"]["BrokerUrl"], body["Outputs"]["BrokerUrl"]
    bucket, key = upload_code(endpoint)
    values = {
        "ServerId": "jitctl-test",
        "TargetRoleArns": f"arn:aws:iam::{ACCOUNT}:role/jit-*",
        "CodeS3Bucket": bucket,
        "CodeS3Key": key,
        "PagerDutyTokenSecretArn": SECRET,
    } | params
    name = f"jit{uuid.uuid4().hex[:8]}"
    cfn = client("cloudformation", endpoint)
    cfn.create_stack(
        StackName=name,
        TemplateBody=json.dumps(body),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    return {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]} | {"StackName": name}


@pytest.fixture(scope="module")
def stack(moto_server) -> dict[str, str]:
    return create_stack(moto_server)


def describe(endpoint: str, table: str) -> dict[str, Any]:
    return client("dynamodb", endpoint).describe_table(TableName=table)["Table"]


def keys(schema: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(k["AttributeName"], k["KeyType"]) for k in schema]


def test_requests_table_has_the_stores_keys_and_indexes(moto_server, stack):
    table = describe(moto_server, stack["RequestsTableName"])
    assert keys(table["KeySchema"]) == [("request_id", "HASH")]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    indexes = {ix["IndexName"]: ix for ix in table["GlobalSecondaryIndexes"]}
    assert keys(indexes["pending-index"]["KeySchema"]) == [
        ("pending_pk", "HASH"),
        ("created_at", "RANGE"),
    ]
    assert keys(indexes["requester-index"]["KeySchema"]) == [
        ("requester", "HASH"),
        ("created_at", "RANGE"),
    ]
    assert keys(indexes["status-index"]["KeySchema"]) == [
        ("status", "HASH"),
        ("created_at", "RANGE"),
    ]
    assert {ix["Projection"]["ProjectionType"] for ix in indexes.values()} == {"ALL"}


def test_the_store_uses_the_stacks_table_as_is(moto_server, stack, aws_env):
    """jitctl's own init() finds nothing to change: same keys, same indexes."""
    from jitctl.aws import AwsClients
    from jitctl.store.dynamodb import DynamoStore

    clients = AwsClients()
    store = DynamoStore(stack["RequestsTableName"], clients.client, poll_interval=0.05)
    store.init()  # raises if the table were keyed differently
    table = describe(moto_server, stack["RequestsTableName"])
    assert len(table["GlobalSecondaryIndexes"]) == 3


def test_nonce_and_audit_tables(moto_server, stack):
    nonces = describe(moto_server, stack["NoncesTableName"])
    assert keys(nonces["KeySchema"]) == [("nonce", "HASH")]
    audit = describe(moto_server, stack["AuditTableName"])
    assert keys(audit["KeySchema"]) == [("chain", "HASH"), ("seq", "RANGE")]
    types = {a["AttributeName"]: a["AttributeType"] for a in audit["AttributeDefinitions"]}
    assert types == {"chain": "N", "seq": "N"} | dict.fromkeys(
        ("chain", "day", "person", "request_id", "ts"), "S"
    )
    assert audit["DeletionProtectionEnabled"] is True


def test_audit_table_has_the_sinks_indexes(moto_server, stack, aws_env):
    """The stack's audit table holds the indexes jitctl queries, keyed as the sink writes them:
    `audit log --request` on it queries request-index (and doctor finds nothing missing)."""
    from jitctl.audit.index import INDEXES, index_spec
    from jitctl.audit.sink import DynamoSink
    from jitctl.aws import AwsClients

    audit = describe(moto_server, stack["AuditTableName"])
    found = {ix["IndexName"]: ix for ix in audit["GlobalSecondaryIndexes"]}
    for name in INDEXES:
        assert keys(found[name]["KeySchema"]) == keys(index_spec(name)["KeySchema"])
        assert found[name]["Projection"] == index_spec(name)["Projection"]
    sink = DynamoSink(stack["AuditTableName"], AwsClients().client, poll_interval=0.05)
    sink.init()  # nothing to add: init() finds every index there
    assert {name: sink.indexes()[name] for name in INDEXES} == dict.fromkeys(INDEXES, "ACTIVE")


def broker_policy(endpoint: str, role_arn: str) -> dict[str, Any]:
    iam = client("iam", endpoint)
    role = role_arn.rsplit("/", 1)[1]
    assert iam.list_role_policies(RoleName=role)["PolicyNames"] == ["jitctl-broker"]
    assert iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"] == []
    return iam.get_role_policy(RoleName=role, PolicyName="jitctl-broker")["PolicyDocument"]


def allows(document: dict[str, Any], action: str, resource: str, **context: str) -> bool:
    """Whether the identity policy ``document`` lets its holder call ``action`` on ``resource``,
    as moto's IAM evaluates it (an explicit Deny wins; nothing said is no)."""
    from moto.iam.access_control import IAMPolicy, PermissionResult

    verdict = IAMPolicy(json.dumps(document)).is_action_permitted(
        action, resource, incoming_condition_values=context or None
    )
    return verdict == PermissionResult.PERMITTED


def broker_needs(stack: dict[str, str]) -> list[tuple[str, str]]:
    """What the broker calls in AWS (action, resource), and on what: jitctl's own calls."""
    table = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/"
    requests_arn, audit = table + stack["RequestsTableName"], table + stack["AuditTableName"]
    target = f"arn:aws:iam::{ACCOUNT}:role/jit-prod"
    needs = [(a, target) for a in ("sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession")]
    needs += [("iam:GetRolePolicy", target), ("iam:PutRolePolicy", target)]  # revocations
    needs += [("iam:GetRole", f"arn:aws:iam::{ACCOUNT}:role/engineers")]  # who a caller is
    for op in ("GetItem", "PutItem", "UpdateItem", "Query", "Scan", "DescribeTable"):
        needs += [(f"dynamodb:{op}", requests_arn)]
    needs += [("dynamodb:Query", requests_arn + "/index/pending-index")]
    needs += [("dynamodb:PutItem", table + stack["NoncesTableName"])]
    needs += [(f"dynamodb:{op}", audit) for op in ("PutItem", "GetItem", "Query", "DescribeTable")]
    needs += [("dynamodb:Query", f"{audit}/index/{name}") for name in audit_indexes()]
    needs += [("kms:Sign", stack["AuditKeyArn"]), ("kms:GetPublicKey", stack["AuditKeyArn"])]
    needs += [("secretsmanager:GetSecretValue", SECRET)]
    group = f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/aws/lambda/{stack['StackName']}-broker"
    return needs + [("logs:PutLogEvents", group), ("logs:CreateLogStream", group)]


def audit_indexes() -> list[str]:
    from jitctl.audit.index import INDEXES

    return list(INDEXES)


def test_broker_role_may_make_every_call_the_broker_makes(moto_server, stack):
    policy = broker_policy(moto_server, stack["BrokerRoleArn"])
    refused = [need for need in broker_needs(stack) if not allows(policy, *need)]
    assert refused == []


def test_broker_role_may_do_nothing_else(moto_server, stack):
    """Each line is something a stolen broker session must not do: rewrite or delete the audit
    trail, reach roles outside TargetRoleArns, make or widen roles, read other secrets."""
    policy = broker_policy(moto_server, stack["BrokerRoleArn"])
    table = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/"
    audit = table + stack["AuditTableName"]
    other_role = f"arn:aws:iam::{ACCOUNT}:role/prod-admin"
    target = f"arn:aws:iam::{ACCOUNT}:role/jit-prod"
    forbidden = [
        ("dynamodb:UpdateItem", audit),
        ("dynamodb:DeleteItem", audit),
        ("dynamodb:BatchWriteItem", audit),
        ("dynamodb:DeleteTable", audit),
        ("dynamodb:UpdateContinuousBackups", audit),
        ("dynamodb:Scan", f"{audit}/index/request-index"),
        ("dynamodb:PutItem", f"{audit}/index/request-index"),
        ("dynamodb:Query", f"{audit}/index/someone-elses-index"),
        ("dynamodb:Query", table + "someone-elses-table/index/request-index"),
        ("dynamodb:UpdateTable", audit),
        ("dynamodb:DeleteItem", table + stack["RequestsTableName"]),
        ("dynamodb:GetItem", table + stack["NoncesTableName"]),
        ("dynamodb:PutItem", table + "someone-elses-table"),
        ("sts:AssumeRole", other_role),
        ("iam:PutRolePolicy", other_role),
        ("iam:GetRolePolicy", other_role),
        ("iam:DeleteRolePolicy", target),
        ("iam:AttachRolePolicy", target),
        ("iam:UpdateAssumeRolePolicy", target),
        ("iam:CreateRole", f"arn:aws:iam::{ACCOUNT}:role/jit-new-admin"),
        ("iam:PassRole", target),
        ("iam:GetUser", f"arn:aws:iam::{ACCOUNT}:user/alice"),
        ("kms:ScheduleKeyDeletion", stack["AuditKeyArn"]),
        ("kms:CreateGrant", stack["AuditKeyArn"]),
        ("kms:Sign", f"arn:aws:kms:us-east-1:{ACCOUNT}:key/another-key"),
        ("secretsmanager:GetSecretValue", SECRET.replace("pagerduty", "database")),
        ("logs:PutLogEvents", f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/aws/lambda/other"),
        ("lambda:UpdateFunctionCode", "*"),
        ("s3:GetObject", "*"),
    ]
    assert [f for f in forbidden if allows(policy, *f)] == []


def test_function_runs_the_broker_with_its_config(moto_server, stack):
    fn = client("lambda", moto_server).get_function(FunctionName=stack["BrokerFunctionName"])
    conf = fn["Configuration"]
    assert conf["Handler"] == "jitctl.broker.aws_lambda.handler"
    assert conf["Role"] == stack["BrokerRoleArn"]
    env = conf["Environment"]["Variables"]
    assert env["JITCTL_POLICY"] == "/var/task/policies"
    config = tomllib.loads(env["JITCTL_CONFIG_TOML"])
    assert config == {
        "broker": {
            "server_id": "jitctl-test",
            "role_arn": stack["BrokerRoleArn"],
            "sts_endpoint": "https://sts.us-east-1.amazonaws.com",
            "nonce_table": stack["NoncesTableName"],
        },
        "store": {"backend": "dynamodb", "table": stack["RequestsTableName"]},
        "audit": {"table": stack["AuditTableName"], "kms_key": stack["AuditKeyArn"]},
        "pagerduty": {"token_secret": SECRET},
    }


def function_policy(endpoint: str, name: str) -> list[dict[str, Any]]:
    return json.loads(client("lambda", endpoint).get_policy(FunctionName=name)["Policy"])[
        "Statement"
    ]


def test_url_is_for_this_account_and_housekeeping_for_its_rule(moto_server, stack):
    statements = function_policy(moto_server, stack["BrokerFunctionName"])
    by_action: dict[str, list[dict[str, Any]]] = {}
    for st in statements:
        by_action.setdefault(st["Action"], []).append(st)
    (url,) = by_action["lambda:InvokeFunctionUrl"]
    assert url["Principal"] == ACCOUNT and url["FunctionUrlAuthType"] == "AWS_IAM"
    invoke = {
        json.dumps(st["Principal"], sort_keys=True): st for st in by_action["lambda:InvokeFunction"]
    }
    assert set(invoke) == {json.dumps(ACCOUNT), json.dumps({"Service": "events.amazonaws.com"})}
    assert invoke[json.dumps(ACCOUNT)]["InvokedViaFunctionUrl"] is True
    events = client("events", moto_server)
    rule_arn = invoke[json.dumps({"Service": "events.amazonaws.com"})]["Condition"]["ArnLike"][
        "AWS:SourceArn"
    ]
    rule = events.describe_rule(Name=rule_arn.rsplit("/", 1)[1])
    assert rule["ScheduleExpression"] == "rate(1 minute)" and rule["State"] == "ENABLED"
    (target,) = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
    assert json.loads(target["Input"]) == {"jitctl": "housekeeping"}
    assert target["Arn"].endswith(f":function:{stack['BrokerFunctionName']}")


def test_with_an_org_id_the_url_is_for_the_organization(moto_server):
    outputs = create_stack(moto_server, OrgId=ORG)
    statements = function_policy(moto_server, outputs["BrokerFunctionName"])
    callers = [st for st in statements if st["Principal"] != {"Service": "events.amazonaws.com"}]
    assert {st["Action"] for st in callers} == {"lambda:InvokeFunctionUrl", "lambda:InvokeFunction"}
    for st in callers:
        assert st["Principal"] == "*"
        assert st["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": ORG}}


# --------------------------------------------------------------------- with IAM enforced




@pytest.fixture
def enforcing_moto() -> Iterator[str]:
    with moto_process() as url:
        yield url


def trust_for(broker_arn: str) -> str:
    return TRUST_TEMPLATE.read_text().replace("BROKER_ROLE_ARN", broker_arn)


def denied(call, **kwargs) -> bool:
    """Whether AWS refused the call for want of permission (and not for any other reason)."""
    try:
        call(**kwargs)
    except ClientError as exc:
        error = exc.response["Error"]
        # moto answers JSON-protocol services (DynamoDB, KMS, ...) with an XML body, code "403"
        return error["Code"] in ("AccessDenied", "AccessDeniedException") or (
            "<Code>AccessDenied</Code>" in error.get("Message", "")
        )
    return False


# moto checks these services' actions against the resource "*", never the table, key or secret
# named in the call, so a statement scoped to an ARN (as the template's are) never applies
# there. With IAM enforced, the broker's policy must be widened to "*" for them: the actions,
# which are what these tests check, stay exactly the template's.
MOTO_RESOURCE_BLIND = ("dynamodb:", "kms:", "secretsmanager:", "logs:")


def as_moto_enforces(document: dict[str, Any]) -> dict[str, Any]:
    """The broker's policy with the resources of moto's resource-blind services widened."""
    statements = []
    for st in document["Statement"]:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        if all(a.startswith(MOTO_RESOURCE_BLIND) for a in actions):
            st = st | {"Resource": "*"}
        statements.append(st)
    return document | {"Statement": statements}


def test_broker_role_appends_to_the_audit_table_and_deletes_nothing(enforcing_moto):
    ep = enforcing_moto
    outputs = create_stack(ep)
    role = outputs["BrokerRoleArn"].rsplit("/", 1)[1]
    widened = as_moto_enforces(broker_policy(ep, outputs["BrokerRoleArn"]))
    iam = client("iam", ep)
    iam.put_role_policy(
        RoleName=role, PolicyName="jitctl-broker", PolicyDocument=json.dumps(widened)
    )
    session = client("sts", ep).assume_role(
        RoleArn=outputs["BrokerRoleArn"], RoleSessionName="broker"
    )
    creds = session["Credentials"]
    enforce(ep)

    ddb = client(
        "dynamodb", ep, creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]
    )
    audit, requests_table = outputs["AuditTableName"], outputs["RequestsTableName"]
    record = {"chain": {"S": "c-1"}, "seq": {"N": "1"}, "record": {"S": "{}"}}
    ddb.put_item(TableName=audit, Item=record, ConditionExpression="attribute_not_exists(seq)")
    assert ddb.query(
        TableName=audit,
        KeyConditionExpression="chain = :c",
        ExpressionAttributeValues={":c": {"S": "c-1"}},
    )["Items"]
    ddb.put_item(TableName=requests_table, Item={"request_id": {"S": "r-1"}})
    ddb.put_item(TableName=outputs["NoncesTableName"], Item={"nonce": {"S": "n-1"}})
    key = {"chain": {"S": "c-1"}, "seq": {"N": "1"}}
    assert denied(ddb.delete_item, TableName=audit, Key=key)
    assert denied(ddb.delete_item, TableName=requests_table, Key={"request_id": {"S": "r-1"}})
    assert denied(ddb.delete_table, TableName=audit)
    assert denied(
        ddb.update_continuous_backups,
        TableName=audit,
        PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": False},
    )


def test_broker_role_is_refused_outside_its_roles(enforcing_moto):
    """The stack's role writes revocations on jit-* roles only, deletes nothing, assumes no
    other role; a requester allowed sts:AssumeRole everywhere is refused by the trust policy."""
    ep = enforcing_moto
    outputs = create_stack(ep)
    iam = client("iam", ep)
    iam.create_role(
        RoleName="jit-prod", AssumeRolePolicyDocument=trust_for(outputs["BrokerRoleArn"])
    )
    iam.create_role(RoleName="prod-other", AssumeRolePolicyDocument="{}")
    alice_arn = f"arn:aws:iam::{ACCOUNT}:user/alice@example.com"
    trusts_alice = json.loads(trust_for(alice_arn))
    del trusts_alice["Statement"][0]["Condition"]  # moto does not pass SourceIdentity to it
    iam.create_role(RoleName="jit-open", AssumeRolePolicyDocument=json.dumps(trusts_alice))
    iam.create_user(UserName="alice@example.com")
    iam.put_user_policy(
        UserName="alice@example.com",
        PolicyName="anything",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}],
            }
        ),
    )
    alice = iam.create_access_key(UserName="alice@example.com")["AccessKey"]
    session = client("sts", ep).assume_role(  # as Lambda would, before IAM is enforced
        RoleArn=outputs["BrokerRoleArn"], RoleSessionName="broker"
    )["Credentials"]
    enforce(ep)

    creds = (session["AccessKeyId"], session["SecretAccessKey"], session["SessionToken"])
    broker_iam = client("iam", ep, *creds)
    doc = json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]}
    )
    broker_iam.put_role_policy(
        RoleName="jit-prod", PolicyName="jitctl-revocations", PolicyDocument=doc
    )
    assert broker_iam.get_role_policy(RoleName="jit-prod", PolicyName="jitctl-revocations")
    assert denied(
        broker_iam.put_role_policy,
        RoleName="prod-other",
        PolicyName="jitctl-revocations",
        PolicyDocument=doc,
    )
    assert denied(
        broker_iam.delete_role_policy, RoleName="jit-prod", PolicyName="jitctl-revocations"
    )
    assert denied(broker_iam.create_role, RoleName="jit-new", AssumeRolePolicyDocument="{}")
    broker_sts = client("sts", ep, *creds)
    other = f"arn:aws:iam::{ACCOUNT}:role/prod-other"
    assert denied(broker_sts.assume_role, RoleArn=other, RoleSessionName="broker")
    alice_sts = client("sts", ep, alice["AccessKeyId"], alice["SecretAccessKey"])
    # The control: a role that trusts her is hers to assume, so the refusal below is the
    # template's trust policy at work, not moto refusing everything.
    opened = f"arn:aws:iam::{ACCOUNT}:role/jit-open"
    assert alice_sts.assume_role(RoleArn=opened, RoleSessionName="alice")["Credentials"]
    target = f"arn:aws:iam::{ACCOUNT}:role/jit-prod"
    assert denied(
        alice_sts.assume_role, RoleArn=target, RoleSessionName="alice", SourceIdentity="alice"
    )


def test_caller_policy_invokes_only_the_broker_and_only_through_its_url(stack):
    """A caller allowed plain lambda:InvokeFunction could hand the broker any event it likes;
    the policy callers get lets them reach the broker's URL and nothing else (no target role)."""
    text = (ROOT / "deploy" / "caller-policy.json").read_text()
    function = stack["BrokerFunctionArn"]
    document = json.loads(text.replace("BROKER_FUNCTION_ARN", function))
    url = "lambda:InvokeFunctionUrl"
    assert allows(document, url, function, **{"lambda:FunctionUrlAuthType": "AWS_IAM"})
    assert not allows(document, url, function, **{"lambda:FunctionUrlAuthType": "NONE"})
    assert not allows(document, url, function.replace("-broker", "-other"))
    assert not allows(document, "sts:AssumeRole", f"arn:aws:iam::{ACCOUNT}:role/jit-prod")
    assert not allows(document, "lambda:UpdateFunctionCode", function)
    # moto evaluates StringEquals only: the Bool that keeps plain Invoke to URL calls is read
    (invoke,) = [st for st in document["Statement"] if st["Action"] == "lambda:InvokeFunction"]
    assert invoke["Condition"] == {"Bool": {"lambda:InvokedViaFunctionUrl": "true"}}
    assert function.endswith(f":function:{stack['BrokerFunctionName']}")
