"""The demo's incident chapter, played through the broker: an approver paged for a waiting
request, an incident assigned to carol that fast-tracks her, the note on its timeline, and
`jitctl sweep` cutting her access when the incident resolves (``end_with_incident``).

PagerDuty's side (the incident opening, being assigned, resolving) happens in the simulator;
the story says so and shows the timeline as PagerDuty would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from jitctl.demo.failure import StepFailed
from jitctl.demo.team import APPROVAL_SERVICE, CHECKOUT_SERVICE, email

if TYPE_CHECKING:
    from jitctl.demo.stage import Stage

ROLE = "prod-admin"


class IncidentChapter:
    def __init__(self, story: Stage) -> None:
        self.story = story
        self.team = story.team
        self.incident = ""
        self.request_id = ""

    def steps(self) -> list[tuple[str, Callable[[], None]]]:
        return [
            ("an incident: paged, assigned, fast-tracked", self.fast_track),
            ("the incident resolves; sweep cuts the access", self.resolved),
        ]

    def fast_track(self) -> None:
        s, pd = self.story, self.team.pd
        pages = [i for i in pd.incidents.incidents.values() if i["service"] == APPROVAL_SERVICE]
        s.say(
            f"prod-admin pages its approvers (page_service {APPROVAL_SERVICE}) while a request\n"
            "waits. Carol's earlier request rang their phones; bob's denial resolved the page:"
        )
        for page in pages:
            s.write(f"  PagerDuty {page['id']} [{page['status']}] {page['title']}")
        if not pages or any(p["status"] != "resolved" for p in pages):
            raise StepFailed("the approvers' page was not opened and resolved")
        carol = self._pd_id("carol")
        self.incident = pd.incidents.add(
            CHECKOUT_SERVICE, "Checkout 5xx above 2% after deploy 812", assigned=(carol,)
        )
        s.say(
            f"03:12: checkout's error rate pages. PagerDuty opens incident {self.incident} on\n"
            f"{CHECKOUT_SERVICE} and assigns it to carol. prod-admin's [incident] table\n"
            "fast-tracks whoever works an open incident there, until it resolves:"
        )
        argv = ["request", ROLE, "--reason", "roll back deploy 812", "--no-wait"]
        done = s.jitctl("carol", *argv, broker=True, shows=["fast-tracked: assigned incident"])
        self.request_id = done.stdout.strip()  # --no-wait: the id on stdout, issued or not
        self._timeline(1)

    def resolved(self) -> None:
        s, pd = self.story, self.team.pd
        pd.incidents.set_status(self.incident, "resolved")
        s.say(
            f"03:40: the rollback worked; incident {self.incident} is resolved in PagerDuty.\n"
            "The broker's housekeeping (a 1-minute schedule under Lambda; cron of `jitctl sweep`\n"
            "otherwise) revokes grants whose incident ended. Run by hand here:"
        )
        s.jitctl("bob", "sweep", broker=True, shows=[f"revoked {self.request_id}"])
        s.jitctl("carol", "status", self.request_id, broker=True, shows=["revoked"])
        self._timeline(2)

    def _timeline(self, expected: int) -> None:
        notes = self.team.pd.incidents.notes_of(self.incident)
        self.story.say(f"The timeline of incident {self.incident} in PagerDuty:")
        for note in notes:
            self.story.write(f"  note: {note}")
        if len(notes) != expected:
            raise StepFailed(f"incident {self.incident} has {len(notes)} notes, not {expected}")

    def _pd_id(self, name: str) -> str:
        """The simulator's id for a person (the demo owns the simulator; no API call needed)."""
        with self.team.pd._lock:
            users = self.team.pd._users.items()
            return next(uid for uid, u in users if u["email"] == email(name))
