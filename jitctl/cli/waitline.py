"""The live "waiting for approval" line a person at a terminal sees while a request waits
(`request`, `wait`, `exec`, `console`); scripts see nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from jitctl.cli.output import interactive, stderr_console

if TYPE_CHECKING:
    from rich.status import Status
    from rich.text import Text

    from jitctl.lifecycle.contract import PollCallback
    from jitctl.models import AccessRequest


class WaitLine:
    """The live "waiting for approval" line, for a person at a terminal; nothing for scripts.
    Used as a context manager, so the line stops however the wait ends."""

    def __init__(self) -> None:
        self._status: Status | None = None

    def for_request(
        self, request_id: str, approvers: Callable[[], list[str]]
    ) -> PollCallback | None:
        """The per-poll callback (None when nobody watches: ``approvers`` is not even asked)."""
        if not interactive():
            return None
        everyone = approvers()
        status = self._status = stderr_console().status("", spinner="dots")
        status.start()

        def on_poll(current: AccessRequest, elapsed: float) -> None:
            # who is still to be asked: an approver who has approved is no longer waited on
            left = [a for a in everyone if a not in current.approvers]
            shown = ", ".join(left) or "nobody (check the policy)"
            status.update(_wait_text(current, request_id, shown, elapsed))

        return on_poll

    def __enter__(self) -> WaitLine:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.stop()


def _wait_text(current: AccessRequest, request_id: str, shown: str, elapsed: float) -> Text:
    """The wait line at the terminal's width (a longer one is cropped at the edge, taking the
    approve command with it): the approvers go first, then the words; what is left is cut."""
    from rich.text import Text

    from jitctl.sanitize import clean
    from jitctl.timeutil import format_duration

    waited = format_duration(timedelta(seconds=int(elapsed)))
    got = (
        f" ({len(current.approvers)}/{current.min_approvals} approvals)"
        if current.min_approvals > 1
        else ""
    )
    tail = f"; send them: jitctl approve {request_id}  (Ctrl-C cancels)"
    width = stderr_console().width - 3  # the spinner and its space
    for text in (
        f"waiting {waited} for approval{got} of {request_id} from {shown}{tail}",
        f"waiting {waited} for approval{got} of {request_id}{tail}",
        f"waiting {waited}{got}: jitctl approve {request_id}  (Ctrl-C cancels)",
    ):
        line = Text(clean(text), no_wrap=True, overflow="ellipsis")
        if line.cell_len <= width:
            break
    line.truncate(max(width, 1), overflow="ellipsis")
    line.highlight_words([f"jitctl approve {request_id}"], style="bold")
    return line
