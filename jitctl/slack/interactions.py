"""``POST /v1/slack/interactions``: Slack's signed calls, the one door Slack has to the broker.

It carries no AWS proof (Slack cannot sign one): what lets it in is Slack's signature, an
HMAC of the raw body and its timestamp with the app's signing secret, checked in constant time
(slack-sdk's SignatureVerifier) against the broker's own clock, within 5 minutes. Each signed
body is accepted once (the broker's nonce store). Anything else is HTTP 401 and changes
nothing. A signed call then acts for the Slack user only as ``people`` maps them, through the
lifecycle's own decision path (a break-glass grant's Review: ``break_glass.review``, as
`jitctl review`); a refusal is an ephemeral reply, HTTP 200.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from jitctl import errors
from jitctl.slack import api, message
from jitctl.slack.people import slack_caller

if TYPE_CHECKING:
    from jitctl.broker.nonces import NonceStore
    from jitctl.context import Environment

PATH = "/v1/slack/interactions"
WINDOW = timedelta(minutes=5)  # Slack's own rule for a request's timestamp
_REQUEST_ID = re.compile(r"r-[a-z0-9]{1,32}")
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,30}")


class Unsigned(errors.JitctlError):
    """Not a call Slack signed for this app just now (or one already accepted): HTTP 401."""

    exit_code = errors.ExitCode.DENIED


def handle(env: Environment, nonces: NonceStore, request: Any) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body for the broker's ``request`` (its HttpRequest): 200
    with an (often empty) body once verified, else 401 (404 off the one path)."""
    if request.path.split("?", 1)[0] != PATH or request.method != "POST":
        return 404, _error("no Slack endpoint there", 2)
    try:
        _verify(env, request)
        _accept_once(nonces, request)
    except Unsigned as exc:
        return 401, _error(exc.message, 3)
    return 200, _act(env, _payload(request.body))


def _error(text: str, code: int) -> dict[str, Any]:
    return {"error": {"message": text, "exit_code": code}}


def _verify(env: Environment, request: Any) -> None:
    from slack_sdk.signature import Clock, SignatureVerifier

    class BrokerClock(Clock):  # the broker's trusted clock, not the machine's
        def now(self) -> float:
            return env.clock.now().timestamp()

    verifier = SignatureVerifier(api.signing_secret(env), clock=BrokerClock())
    try:
        valid = verifier.is_valid_request(request.body, dict(request.headers))
    except (ValueError, UnicodeDecodeError):  # a timestamp that is no number, a body not UTF-8
        valid = False
    if not valid:
        raise Unsigned("not signed by Slack for this app within the last 5 minutes")


def _accept_once(nonces: NonceStore, request: Any) -> None:
    """A signed body is accepted once: remembered until its timestamp leaves the window."""
    stamp = int(request.headers.get("x-slack-request-timestamp", "0"))
    digest = hashlib.sha256(f"{stamp}:".encode() + request.body).hexdigest()
    until = datetime.fromtimestamp(stamp, UTC) + WINDOW + timedelta(minutes=1)
    if not nonces.claim(f"slack:{digest}", expires_at=until):
        raise Unsigned("this Slack call was accepted before")


def _payload(body: bytes) -> dict[str, Any]:
    try:
        raw = parse_qs(body.decode("utf-8"), strict_parsing=True).get("payload", [""])[0]
        doc = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _act(env: Environment, payload: dict[str, Any]) -> dict[str, Any]:
    kind = payload.get("type")
    if kind == "block_actions":
        return _clicked(env, payload)
    view = payload.get("view")
    view = view if isinstance(view, dict) else {}
    if kind == "view_submission" and view.get("callback_id") == message.DENY_CALLBACK:
        return _deny_submitted(env, payload, view)
    return {}  # something this app does not do: acknowledged, nothing changes


def _clicked(env: Environment, payload: dict[str, Any]) -> dict[str, Any]:
    actions = payload.get("actions") if isinstance(payload.get("actions"), list) else []
    action = actions[0] if actions and isinstance(actions[0], dict) else {}
    request_id = str(action.get("value") or "")
    if action.get("action_id") == message.APPROVE:
        _decide(env, payload, request_id, lambda service: service.approve(request_id, None))
    elif action.get("action_id") == message.REVIEW:  # `jitctl review ID`, from Slack
        _decide(env, payload, request_id, lambda service: service.review(request_id, None))
    elif action.get("action_id") == message.DENY:
        _decide(
            env, payload, request_id, lambda service: _open_deny(env, payload, request_id, service)
        )
    return {}


def _open_deny(env: Environment, payload: dict[str, Any], request_id: str, service: Any) -> None:
    """Ask why in a modal (trigger_id lives 3 s: at once), once the clicker may deny."""
    service.check_may_decide(request_id)
    view = message.deny_modal(request_id)
    api.call(env, "views_open", trigger_id=str(payload.get("trigger_id") or ""), view=view)


def _deny_submitted(env: Environment, payload: dict[str, Any], view: dict[str, Any]) -> dict[str, Any]:
    request_id = str(view.get("private_metadata") or "")
    values = ((view.get("state") or {}).get("values") or {}).get(message.REASON_BLOCK) or {}
    reason = str((values.get(message.REASON_ACTION) or {}).get("value") or "")
    problem = _decide(env, payload, request_id, lambda service: service.deny(request_id, reason))
    if problem is None:
        return {}  # the modal closes
    return {"response_action": "errors", "errors": {message.REASON_BLOCK: problem[:150]}}


def _decide(env: Environment, payload: dict[str, Any], request_id: str, act: Any) -> str | None:
    """Run ``act`` on a LocalService acting for the clicker; a refusal goes back to them
    (ephemeral) and is returned. Nothing else is done for a Slack user than for the CLI."""
    from jitctl.lifecycle.service import LocalService

    user = payload.get("user")

    user = user if isinstance(user, dict) else {}
    user_id = str(user.get("id") or "")
    try:
        if not _REQUEST_ID.fullmatch(request_id):
            raise errors.UsageError(f"{request_id[:40]!r} is not a request id")
        if not _USER_ID.fullmatch(user_id):
            raise errors.Denied("Slack named no user for this click")
        caller_env = env.for_caller(slack_caller(env, user_id))
        try:
            act(LocalService(caller_env))
        finally:
            caller_env.close()
    except errors.JitctlError as exc:
        text = f"Not done: {exc.message}" + (f" ({exc.hint})" if exc.hint else "")
        _tell(env, payload, text)
        return text
    return None


def _tell(env: Environment, payload: dict[str, Any], text: str) -> None:
    """An ephemeral reply to the clicker alone (best effort: the 200 is what Slack needs)."""
    from jitctl.sanitize import slack_text

    url = str(payload.get("response_url") or "")
    channel = (payload.get("channel") or {}) if isinstance(payload.get("channel"), dict) else {}
    user = (payload.get("user") or {}) if isinstance(payload.get("user"), dict) else {}
    try:
        if url:
            api.respond(env, url, slack_text(text))
        elif channel.get("id") and user.get("id"):
            api.call(
                env,
                "chat_postEphemeral",
                channel=channel["id"],
                user=user["id"],
                text=slack_text(text),
            )
    except (api.SlackError, errors.ConfigError):
        pass
