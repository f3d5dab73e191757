"""Who clicked: a Slack user becomes a person only by the policy's word or Slack's record.

In order: the policy's ``[identities] "slack:USER_ID" = "email"``; else ``users.info``: the
profile's email, only when Slack says the address is confirmed and the account is a full
member (not a bot, not deleted, not a guest). A display name, a username or anything else in
the payload is the clicker's own choice and never names anyone. Anyone else is refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jitctl.errors import Denied
from jitctl.identity.rule import EMAIL
from jitctl.models import Caller
from jitctl.policy.schema import SLACK
from jitctl.slack import api

if TYPE_CHECKING:
    from jitctl.context import Environment

HOW_TO_MAP = 'or have the policy map you: [identities] "slack:{user}" = "you@example.com"'
# Slack's flags that make an account no one's approver, and why each is refused.
_NOT_A_PERSON = (
    ("is_bot", "is a bot"),
    ("deleted", "is deactivated"),
    ("is_restricted", "is a guest (multi-channel)"),
    ("is_ultra_restricted", "is a guest (single-channel)"),
)


def slack_caller(env: Environment, user_id: str) -> Caller:
    """The caller a click from ``user_id`` acts as: a person, channel "slack"."""
    return Caller(arn=f"slack:{user_id}", account="", person=person_of(env, user_id), channel=SLACK)


def person_of(env: Environment, user_id: str) -> str:
    mapped = env.policy.slack_person(user_id)
    if mapped:
        return mapped
    user = api.call(env, "users_info", user=user_id).get("user")
    if not isinstance(user, dict):
        raise api.SlackError("Slack users.info sent no user")
    return _email_of(user, user_id)


def _email_of(user: dict[str, Any], user_id: str) -> str:
    for flag, why in _NOT_A_PERSON:
        if user.get(flag) is not False:  # missing counts as set: Slack always says
            raise Denied(f"Slack user {user_id} {why}: only full members decide")
    profile = user.get("profile")
    profile = profile if isinstance(profile, dict) else {}
    email = str(profile.get("email") or "").strip().lower()
    if not email or not EMAIL.fullmatch(email):
        raise Denied(
            f"Slack shows no email for user {user_id}",
            "the app needs the users:read.email scope, " + HOW_TO_MAP.format(user=user_id),
        )
    if user.get("is_email_confirmed") is not True:
        raise Denied(
            f"Slack has not confirmed the email of user {user_id}",
            "confirm it in Slack, " + HOW_TO_MAP.format(user=user_id),
        )
    return email
