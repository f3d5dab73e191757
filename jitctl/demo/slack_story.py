"""The demo's Slack chapter: approve from your phone, through the broker.

A local Slack stand-in (:mod:`jitctl.demo.slacksim`, HTTPS on 127.0.0.1) receives the message
the broker posts for a waiting prod-admin request; the story renders it in the terminal,
"clicks" Approve as bob (a payload signed exactly as Slack signs it), and shows the message
change as carol approves from the CLI and alice's credentials are issued.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from jitctl.demo.failure import StepFailed
from jitctl.demo.slacksim import SIGNING_SECRET, TOKEN, Message, SlackSim, click, form, post, signed
from jitctl.demo.team import PEOPLE, email
from jitctl.sanitize import clean

if TYPE_CHECKING:
    from jitctl.demo.stage import Stage
    from jitctl.demo.team import DemoTeam

ROLE = "prod-admin"


def slack_user(name: str) -> str:
    return f"U0{name.upper()}"


def start(story: Stage) -> SlackSim:
    """The Slack stand-in, its people, and the broker's [slack] config (before it serves)."""
    return story.cleanup.enter_context(stand_in(story.team))


@contextmanager
def stand_in(team: DemoTeam, write: Callable[[str], None] | None = None) -> Iterator[SlackSim]:
    """Slack's stand-in for ``team``'s broker; with ``write``, every message it is sent is
    rendered there (`demo --serve`)."""
    with SlackSim(team.pd.certs) as slack:
        for name in PEOPLE:
            slack.add_user(slack_user(name), email(name))
        _configure(team, slack)
        if write is not None:

            def show(msg: Message) -> None:
                for line in render(msg):
                    write(line)

            slack.on_message = show
        yield slack


def _configure(team: DemoTeam, slack: SlackSim) -> None:
    config = team.broker_dir / "config.toml"
    with config.open("a", encoding="utf-8") as out:
        out.write(
            f'\n[slack]\nbot_token = "{TOKEN}"\nsigning_secret = "{SIGNING_SECRET}"\n'
            f'api_url = "{slack.api_url}"\nca_bundle = "{team.pd.certs.ca.as_posix()}"\n'
        )


def render(msg: Message) -> list[str]:
    """The message as a phone would show it: text, then the buttons it still has."""
    lines = [f"  ┌ Slack, {msg.where} ─"]
    if not msg.blocks:
        lines.append(f"  │ {clean(html.unescape(msg.text))}")
    for block in msg.blocks:
        text = str((block.get("text") or {}).get("text") or "")
        lines += [f"  │ {clean(html.unescape(t)).replace('*', '')}" for t in text.splitlines()]
    buttons = "  ".join(f"[ {b['text']['text']} ]" for b in msg.buttons)
    if not msg.ts:  # an ephemeral reply: text alone
        return [*lines, "  └─"]
    return [*lines, f"  │ {buttons}" if buttons else "  │ (no buttons)", "  └─"]


class SlackChapter:
    def __init__(self, story: Stage) -> None:
        self.story = story
        self.team = story.team

    def steps(self) -> list[tuple[str, Callable[[], None]]]:
        return [("approve from Slack", self.from_slack)]

    def from_slack(self) -> None:
        s = self.story
        slack = s.slack
        if slack is None:
            raise StepFailed("Slack's stand-in was not started with the broker")
        s.say(
            'prod-admin takes decisions from Slack as well (approve_from = ["cli", "slack"]).\n'
            "Alice asks the broker; it sends each approver a Slack message with two buttons:"
        )
        argv = ["request", ROLE, "--reason", "rotate the leaked deploy key", "--no-wait"]
        rid = s.jitctl("alice", *argv, "--fresh", broker=True).stdout.strip()
        bobs = self._message(slack, rid, "bob")
        self._show(bobs)
        s.say(
            "Bob taps Approve on his phone. Slack signs the click (HMAC of the body with the\n"
            "app's signing secret); the broker checks it, asks Slack who U0BOB is (a confirmed\n"
            "email: bob@example.com), and records his approval exactly as `jitctl approve` would:"
        )
        body = form(click(slack_user("bob"), "jitctl_approve", rid, slack))
        code, _ = post(f"{self.team.broker_url}/v1/slack/interactions", body, signed(body))
        s.write(f"slack: POST {self.team.broker_url}/v1/slack/interactions -> HTTP {code}")
        if code != 200 or not slack.wait_for(lambda: bobs.updates >= 1, timeout=10):
            raise StepFailed(f"bob's signed click was not taken (HTTP {code})")
        self._show(bobs)
        s.say("prod-admin needs two approvals; carol gives the second from her terminal:")
        s.jitctl("carol", "approve", rid, "--yes", broker=True, shows=["approved"])
        if not slack.wait_for(lambda: not bobs.buttons, timeout=10):
            raise StepFailed("the Slack message kept its buttons after the request was approved")
        self._show(bobs)
        s.jitctl("alice", "wait", rid, broker=True, shows=["credentials in profile"])
        if not slack.wait_for(lambda: "issued" in bobs.shown, timeout=10):
            raise StepFailed("the Slack message does not say the request was issued")
        self._show(bobs)

    def _message(self, slack: SlackSim, rid: str, name: str) -> Message:
        found = [m for m in slack.message_for(rid) if m.channel == "D" + slack_user(name)]
        if not found:
            raise StepFailed(f"the broker posted no Slack message for {rid} to {name}")
        return found[0]

    def _show(self, msg: Message) -> None:
        for line in render(msg):
            self.story.write(line)
