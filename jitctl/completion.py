"""Candidates for the shells' <TAB>: role names and request ids, as (value, help) pairs.

A completion must never get in the way: whatever goes wrong (no config, no policy, AWS or the
broker unreachable, a slow network) offers nothing, silently, within ``TIMEOUT`` seconds.
Role names come from the policy file alone (no AWS, no PagerDuty: boto3 is not imported for
them); in broker mode the client has no policy, so they come from the broker. Request ids
come from the same listing as `jitctl list`, which may need AWS (a DynamoDB store, the broker).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from jitctl import models

if TYPE_CHECKING:
    from jitctl.context import Environment
    from jitctl.models import AccessRequest

Candidates = list[tuple[str, str]]
TIMEOUT = 3.0  # seconds: past this a <TAB> offers nothing rather than hang the shell
LIMIT = 50  # newest requests looked at for ids
HELP_MAX = 60

# Which requests each command can act on: (only pending ones, only the caller's, statuses).
REQUEST_KINDS: dict[str, tuple[bool, bool, frozenset[str]]] = {
    "decide": (True, False, frozenset({models.PENDING})),  # approve, deny
    "cancel": (True, True, frozenset({models.PENDING})),
    "wait": (False, True, frozenset({models.PENDING, models.APPROVED})),
    "revoke": (False, False, frozenset({models.ISSUED})),
    "extend": (False, True, frozenset({models.ISSUED})),
    "any": (False, False, frozenset(models.STATUSES)),  # status, review
}


def bounded(produce: Callable[[], Candidates], timeout: float = TIMEOUT) -> Candidates:
    """``produce()`` run in a daemon thread: its result, or nothing if it fails or is late."""
    result: Candidates = []

    def work() -> None:
        try:
            result.extend(produce())
        except Exception:  # a <TAB> never reports a problem: it offers nothing
            result.clear()

    worker = threading.Thread(target=work, name="jitctl-complete", daemon=True)
    worker.start()
    worker.join(timeout)
    return list(result) if not worker.is_alive() else []


def role_names(env: Environment, incomplete: str) -> Candidates:
    def produce() -> Candidates:
        if env.config.broker.client:
            found = [(str(r["role"]), str(r.get("description") or "")) for r in env.service.roles()]
        else:
            found = [(r.name, r.description or "") for r in env.policy.roles.values()]
        return _matching(found, incomplete)

    return bounded(produce)


def request_ids(env: Environment, incomplete: str, kind: str) -> Candidates:
    pending_only, mine, statuses = REQUEST_KINDS[kind]

    def produce() -> Candidates:
        found = env.service.list(pending_only=pending_only, mine=mine, role=None, limit=LIMIT)
        return _matching(
            [(r.request_id, _describe(r)) for r in found if r.status in statuses], incomplete
        )

    return bounded(produce)


def _describe(req: AccessRequest) -> str:
    return _printable(f"{req.role} {req.status} {req.requester}: {req.reason}")


def _printable(text: str) -> str:
    """One short line of plain text: someone else typed the reason."""
    flat = "".join(ch if ch.isprintable() else " " for ch in text)
    return flat if len(flat) <= HELP_MAX else flat[: HELP_MAX - 1] + "…"


def _matching(found: Candidates, incomplete: str) -> Candidates:
    return sorted((v, _printable(h)) for v, h in found if v.startswith(incomplete))
