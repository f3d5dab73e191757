"""Slack approvals through the broker (CONTRACT "Slack approvals (broker)").

A waiting request on a role whose ``approve_from`` lists "slack" is posted with Approve and
Deny buttons (``announce``); Slack's clicks come back signed to ``POST /v1/slack/interactions``
(``interactions``), where the Slack user becomes a person only by Slack's own account record
or the policy's ``[identities] "slack:U…"`` (``people``), and then decides through exactly the
path `jitctl approve`/`deny` takes (``jitctl.lifecycle.decisions``). ``api`` is the one way
out to Slack's Web API (slack-sdk's WebClient); ``message`` builds the Block Kit.
"""
