"""What every transition of the state machine is made of: a planner's Step, and its errors.

Kept apart from ``jitctl.store.base`` so that the issue claims (``jitctl.store.claims``) plan
with the same pieces without an import cycle."""

from __future__ import annotations

import builtins
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jitctl.errors import JitctlError, UsageError
from jitctl.models import AccessRequest


class TransitionError(UsageError):
    """The request's current status does not allow this transition (exit 2)."""


@dataclass
class Step:
    """What a transition decided: the record to write (None: nothing changes), an error to raise
    once that write has committed, and extra keys to keep in the stored document."""

    write: AccessRequest | None = None
    error: JitctlError | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# A planner sees the current record and returns a Step, or raises if the transition is illegal.
Planner = Callable[[AccessRequest], Step]


def copy_request(req: AccessRequest, **changes: Any) -> AccessRequest:
    """``req`` with ``changes``; its lists are copied, never shared with the record read."""
    changes.setdefault("approvers", builtins.list(req.approvers))
    changes.setdefault("reissued_after", builtins.list(req.reissued_after))
    changes.setdefault("approved_from", dict(req.approved_from))
    return dataclasses.replace(req, **changes)
