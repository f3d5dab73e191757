"""The broker under AWS Lambda, behind a function URL with ``AuthType: AWS_IAM``.

Lambda has verified the SigV4 signature of the HTTP call before this runs and names the key
in ``requestContext.authorizer.iam``; the broker still checks the caller's own proof, and
that the proof was signed with that same key. One broker is built per container and reused.
An EventBridge schedule invokes the function with ``{"jitctl": "housekeeping"}``.

``slack_handler`` is the same broker behind a second function URL with ``AuthType: NONE``
(Slack cannot sign AWS requests): it serves ``/v1/slack/*`` alone, which Slack's own
signature guards (jitctl.slack.interactions); every other path there is 404.
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

from jitctl.broker import wire
from jitctl.broker.handler import Broker, HttpRequest
from jitctl.errors import JitctlError, Unavailable
from jitctl.sanitize import clean

_broker: Broker | None = None


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    if event.get("jitctl") == "housekeeping":
        return housekeeping()
    try:
        gate = broker()
    except JitctlError as exc:  # a misconfigured broker serves nobody; its log says why
        _log_warning(f"jitctl broker cannot start: {exc}")
        refusal = Unavailable(
            "the broker is not configured correctly", "its operators' log says why"
        )
        status, body = wire.error_out(refusal)
        return {"statusCode": status, "body": json.dumps(body), "isBase64Encoded": False}
    response = gate.handle(to_request(event))
    return {
        "statusCode": response.status,
        "headers": response.headers,
        "body": response.encoded().decode(),
        "isBase64Encoded": False,
    }


def slack_handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """The unauthenticated function URL: Slack's calls only, nothing with a proof."""
    path = str(event.get("rawPath") or "/")
    if not path.startswith(f"{wire.API}/slack/"):
        body = {"error": {"message": f"no endpoint {clean(path)[:100]} here", "exit_code": 2}}
        return {"statusCode": 404, "body": json.dumps(body), "isBase64Encoded": False}
    return handler(event, context)


def housekeeping() -> dict[str, Any]:
    """The scheduled event: `jitctl sweep` as the broker. A failure is logged, not raised
    (EventBridge would retry a whole run; the next one finishes it anyway)."""
    try:
        report = broker().housekeeping()
    except JitctlError as exc:
        _log_warning(f"jitctl housekeeping failed: {exc}")
        return {"ok": False}
    for problem in report["problems"]:
        _log_warning(f"housekeeping: {problem}")
    return {"ok": True, "report": report}


def broker() -> Broker:
    global _broker
    if _broker is None:
        from jitctl.broker.build import build_broker
        from jitctl.context import Environment

        # A warning (a central audit copy failed, not required) goes to the function's log.
        _broker = build_broker(Environment(on_warning=_log_warning))
    return _broker


def _log_warning(text: str) -> None:
    sys.stderr.write(f"jitctl: warning: {clean(text)}\n")


def to_request(event: dict[str, Any]) -> HttpRequest:
    """A function-URL event (payload format 2.0) as the broker's transport-free request."""
    ctx = event.get("requestContext") or {}
    body = event.get("body") or ""
    raw = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
    path = event.get("rawPath") or "/"
    if event.get("rawQueryString"):
        path += "?" + event["rawQueryString"]
    iam = (ctx.get("authorizer") or {}).get("iam") or {}
    return HttpRequest(
        method=(ctx.get("http") or {}).get("method", "GET"),
        path=path,
        headers={k.lower(): v for k, v in (event.get("headers") or {}).items()},
        body=raw,
        lambda_access_key=iam.get("accessKey") or "",
    )
