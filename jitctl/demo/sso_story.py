"""The demo's IAM Identity Center step: a permission set assigned through the broker."""

from __future__ import annotations

from typing import TYPE_CHECKING

from jitctl.demo.identity_center import PERMISSION_SET, SSO_ACCOUNT

if TYPE_CHECKING:
    from jitctl.demo.stage import Stage


def story_step(story: Stage) -> None:
    """Alice, on call, gets the permission set: no credentials, her usual SSO sign-in."""
    story.say(
        f"Some access lives in IAM Identity Center: prod-sso assigns the permission set\n"
        f"{PERMISSION_SET} in account {SSO_ACCOUNT} to Alice's Identity Store user for the\n"
        "grant's length, through the broker. Nothing is written to her credentials file; she\n"
        "signs in as usual."
    )
    story.jitctl(
        "alice",
        "request",
        "prod-sso",
        "--reason",
        "INC-4211 checkout latency",
        "--duration",
        "20m",
        shows=[f"assigned in account {SSO_ACCOUNT}", "aws sso login"],
        broker=True,  # by now the broker is the gate: only it may assign
    )
