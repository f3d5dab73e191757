"""deploy/broker.yaml with Slack: /v1/slack/* on a function URL of its own with AuthType NONE,
whose handler serves nothing else; every other path keeps the AWS_IAM URL."""

from __future__ import annotations

import json

from jitctl.broker import aws_lambda
from tests.test_deploy import template


def test_slacks_url_is_unauthenticated_and_serves_only_the_slack_function():
    res = template()["Resources"]
    assert res["BrokerUrl"]["Properties"]["AuthType"] == "AWS_IAM"
    url = res["SlackUrl"]
    assert url["Properties"] == {
        "TargetFunctionArn": {"Fn::GetAtt": ["SlackFunction", "Arn"]},
        "AuthType": "NONE",
    }
    fn = res["SlackFunction"]["Properties"]
    assert fn["Handler"] == "jitctl.broker.aws_lambda.slack_handler"
    for name in ("SlackUrl", "SlackFunction", "SlackUrlPermission", "SlackPolicy"):
        assert res[name]["Condition"] == "HasSlack", name
    secrets = res["SlackPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert secrets["Action"] == "secretsmanager:GetSecretValue"


def test_the_slack_handler_refuses_every_path_but_slacks():
    for path in ("/v1/requests/r-1/approve", "/v1/whoami", "/v1/slacker", "/"):
        event = {
            "rawPath": path,
            "requestContext": {"http": {"method": "POST"}},
            "headers": {"x-jitctl-proof": "x"},
            "body": "{}",
        }
        answer = aws_lambda.slack_handler(event)
        assert answer["statusCode"] == 404, path
        assert json.loads(answer["body"])["error"]["exit_code"] == 2
