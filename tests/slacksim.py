"""The Slack simulator lives in the package (``jitctl demo`` uses it); re-exported here."""

from jitctl.demo.slacksim import (
    SIGNING_SECRET,
    TOKEN,
    Call,
    Message,
    SlackSim,
    click,
    deny_submission,
    form,
    post,
    signed,
)

__all__ = [
    "SIGNING_SECRET",
    "TOKEN",
    "Call",
    "Message",
    "SlackSim",
    "click",
    "deny_submission",
    "form",
    "post",
    "signed",
]
