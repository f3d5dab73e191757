"""`jitctl doctor` on a broker that takes Slack decisions: the bot token works (auth.test)
and the signing secret is there. Skipped where nothing uses Slack."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from jitctl.policy.schema import SLACK

if TYPE_CHECKING:
    from jitctl.context import Environment


def slack_checks(env: Environment) -> list[tuple[str, Callable[[], str]]]:
    settings = env.config.slack
    roles = [
        r.name for r in env.policy.roles.values() if r.approval and SLACK in r.approval.approve_from
    ]
    if not (roles or settings.has_token or settings.has_signing_secret):
        return []
    return [
        ("slack bot token", lambda: _bot_token(env, roles)),
        ("slack signing secret", lambda: _signing_secret(env)),
    ]


def _bot_token(env: Environment, roles: list[str]) -> str:
    from jitctl.slack import api

    who = api.call(env, "auth_test")
    used = f"; roles decided from Slack: {', '.join(roles)}" if roles else ""
    return f"Slack says the token is {who.get('user_id')} in team {who.get('team_id')}{used}"


def _signing_secret(env: Environment) -> str:
    from jitctl.slack import api

    api.signing_secret(env)  # a ConfigError (the fix in its hint) when there is none
    return "present: Slack's calls to /v1/slack/interactions can be verified"
