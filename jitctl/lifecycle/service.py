"""What a command asks of jitctl's core: one interface, two implementations.

``LocalService`` runs the core in this process with the caller's own AWS credentials (direct
mode). ``jitctl.broker.client.BrokerService`` sends the same questions to a broker, which runs
``LocalService`` on its side with its own credentials and the authenticated caller. The CLI
depends only on ``AccessService`` (jitctl.lifecycle.contract); the host picks the
implementation (``jitctl.wiring``).
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from jitctl.errors import JitctlError
from jitctl.lifecycle.contract import Outcome, PollCallback, Revoked
from jitctl.models import AccessRequest, Caller, Issued

if TYPE_CHECKING:
    from jitctl.context import Environment

class LocalService:
    """The core, run here: every check, AWS call, store write and audit record in-process."""

    def __init__(self, env: Environment) -> None:
        from jitctl.filelock import require_regular

        # Contract "Files": an audit log that is not a regular file is exit 2 before any
        # command changes anything (a decision is stored before it is recorded).
        require_regular(env.config.audit.path, "the audit log")
        self.env = env

    def whoami(self) -> Caller:
        return self.env.caller

    def request(
        self,
        role: str,
        reason: str | None,
        duration: timedelta | None,
        break_glass: bool = False,
        *,
        incident: str | None = None,
    ) -> Outcome:
        from jitctl.lifecycle.flow import submit

        # Contract "Files": a store that is not a regular file is exit 2 before anything is
        # recorded (the request's first record is the audit's); it checks its path when opened.
        _ = self.env.store
        submitted = submit(
            self.env,
            role_name=role,
            reason=reason,
            duration=duration,
            break_glass=break_glass,
            incident=incident,
        )
        return self._settle(submitted)

    def extend(self, request_id: str, by: timedelta | None, reason: str | None) -> Outcome:
        """More time on the caller's live grant: a request of its own (``extends``), decided
        and issued by the same steps as ``request`` (jitctl.lifecycle.extend)."""
        from jitctl.lifecycle.extend import check_extendable
        from jitctl.lifecycle.flow import submit

        grant = check_extendable(self.env, request_id, by)  # refusals change nothing
        submitted = submit(
            self.env, role_name=grant.role, reason=reason, duration=by, extends=grant.request_id
        )
        return self._settle(submitted)

    def _settle(self, submitted: Any) -> Outcome:
        """A submitted request's outcome: issued at once when fast-tracked, else pending."""
        from jitctl.lifecycle.flow import issue

        outcome = Outcome(
            request=submitted.request,
            fast_path_reason=submitted.on_call.reason,
            approvers=[a for a in submitted.approvers if a != submitted.request.requester],
            warnings=list(submitted.warnings),
        )
        if submitted.fast_tracked:
            evidence = submitted.on_call.evidence
            outcome.issued = issue(self.env, submitted.request, evidence=evidence)
            outcome.issued.notes[:0] = outcome.warnings  # shown with the grant
            outcome.request = outcome.issued.request
        return outcome

    def get(self, request_id: str) -> AccessRequest:
        from jitctl.lifecycle.decisions import get_request

        return get_request(self.env, request_id)

    def list(
        self,
        *,
        pending_only: bool,
        mine: bool,
        role: str | None,
        limit: int,
        unreviewed: bool = False,
    ) -> builtins.list[AccessRequest]:
        from jitctl.lifecycle.decisions import list_requests

        if unreviewed:
            from jitctl.lifecycle.break_glass import unreviewed as awaiting_review

            return awaiting_review(self.env, mine=mine, role=role, limit=limit)
        return list_requests(self.env, pending_only=pending_only, mine=mine, role=role, limit=limit)

    def decidable(self) -> builtins.list[AccessRequest]:
        from jitctl.lifecycle.decisions import decidable

        return decidable(self.env)

    def check_may_decide(self, request_id: str) -> AccessRequest:
        from jitctl.lifecycle.decisions import check_may_decide

        req = self.get(request_id)
        check_may_decide(self.env, req)
        return req

    def approvers_for(self, request_id: str) -> builtins.list[str]:
        from jitctl.lifecycle.decisions import approvers_for

        return approvers_for(self.env, self.get(request_id))

    def approve(
        self, request_id: str, reason: str | None
    ) -> tuple[AccessRequest, builtins.list[str]]:
        from jitctl.lifecycle.decisions import approve

        return approve(self.env, request_id, reason=reason)

    def deny(self, request_id: str, reason: str | None) -> tuple[AccessRequest, builtins.list[str]]:
        from jitctl.lifecycle.decisions import deny

        return deny(self.env, request_id, reason=reason)

    def cancel(self, request_id: str, *, interrupted: bool = False) -> AccessRequest:
        from jitctl.lifecycle.decisions import cancel

        return cancel(self.env, request_id, interrupted=interrupted)

    def wait(
        self,
        request_id: str,
        *,
        timeout: timedelta | None,
        on_poll: PollCallback | None = None,
    ) -> AccessRequest:
        """Until a decision; a Ctrl-C ends the run through ``jitctl.lifecycle.interrupts``."""
        from jitctl.lifecycle.waiting import wait_for_decision

        self._check_own(self.get(request_id), "wait for")
        return wait_for_decision(self.env, request_id, timeout=timeout, on_poll=on_poll)

    def issue(self, request_id: str) -> Issued:
        """Credentials for an approved peer request (the fast path issues inside ``request``)."""
        from jitctl.lifecycle.flow import issue

        req = self.get(request_id)
        self._check_own(req, "get credentials for")
        return issue(self.env, req, evidence=None)

    def delivery_failed(self, request_id: str, error: str) -> None:
        """The caller could not write the credentials it was given: mark the request so that
        `jitctl wait ID` may issue again while the approval holds (once), and audit it."""
        from jitctl.audit.fields import audit_fields

        req = self.get(request_id)
        self._check_own(req, "report a delivery for")
        env = self.env
        try:
            env.store.mark_delivery_failed(request_id, now=env.clock.now())
            retry = None
        except JitctlError as exc:  # the delivery error is still the one to report
            retry = exc.message
        fields = audit_fields(env, req)
        env.audit.append("delivery_failed", **fields, error=error[:300], retry_not_recorded=retry)

    def revoke(self, request_id: str, reason: str | None) -> Revoked:
        from jitctl.revocation.revoke import revoke

        done = revoke(self.env, request_id, reason=reason)
        return Revoked(
            request=done.request,
            details=done.as_dict(),
            notes=list(done.notes),
            already_revoked=done.already_revoked,
        )

    def review(self, request_id: str, reason: str | None) -> AccessRequest:
        """An approver's after-the-fact review of a break-glass grant (never the requester)."""
        from jitctl.lifecycle.break_glass import review

        return review(self.env, request_id, reason)

    def describe_caller(self) -> dict[str, Any]:
        """`jitctl whoami`: principal, person, PagerDuty user and on-calls now."""
        from jitctl.doctor.whoami import whoami

        return whoami(self.env)

    def roles(self) -> builtins.list[dict[str, Any]]:
        """`jitctl roles`: each role, and whether it would fast-track the caller now."""
        from jitctl.doctor.whoami import roles

        return roles(self.env)

    def audit_records(
        self, *, since: str | None, request_id: str | None, person: str | None, local: bool
    ) -> Iterable[dict[str, Any]]:
        """Audit records, oldest first, one at a time: the central copy when configured, else
        the local log."""
        from jitctl.audit.read import read_audit

        return read_audit(self.env, since=since, request_id=request_id, person=person, local=local)

    def audit_verify(self, *, remote: bool) -> dict[str, Any]:
        """The local log's chain and, with ``remote``, the central copy's chains and signatures."""
        from jitctl.audit.verify import verify_report

        return verify_report(self.env, remote=remote)

    def grants(self) -> builtins.list[AccessRequest]:
        """The caller's live grants, newest first: issued, not expired, not cut off."""
        from jitctl.lifecycle.grants import live

        mine = self.list(pending_only=False, mine=True, role=None, limit=1000)
        # an extension is part of the grant it extends, which shows its new end
        return [r for r in live(mine, self.env.clock.now()) if not r.extends]

    def reuse(self, request_id: str, reason: str | None = None) -> AccessRequest:
        """`exec`, `request` or `console` is about to use the caller's cached credentials of
        this grant: only the caller's own, only while live (the one rule, jitctl.lifecycle.grants), and
        audited as a use (``reused``, with the ``reason`` given for this use, if any), not a
        new request. Denied (exit 3) otherwise."""
        from jitctl.audit.fields import audit_fields
        from jitctl.errors import Denied
        from jitctl.lifecycle.grants import liveness
        from jitctl.lifecycle.request_rules import check_reason

        why = check_reason(reason) if reason is not None and reason.strip() else None

        req = self.get(request_id)
        self._check_own(req, "reuse")
        theirs = self.list(pending_only=False, mine=True, role=req.role, limit=1000)
        state = liveness(req, theirs, self.env.clock.now())
        if state is None or not state.live:
            why = state.state.replace("_", " ") if state else req.status
            raise Denied(f"grant {request_id} is not live ({why})", "request a new one")
        self.env.audit.append("reused", **audit_fields(self.env, req), **_reason(why))
        return req

    def explain(self, role: str, as_person: str | None) -> dict[str, Any]:
        """`jitctl policy explain`: who may request, who is fast-tracked, who approves."""
        from jitctl.oncall.approvers import resolve
        from jitctl.policy.explain import explain

        on_call = resolve(self.env, self.env.policy.role(role))
        return explain(self.env.policy, role, as_person, on_call)

    def sweep(self) -> dict[str, Any]:
        """`jitctl sweep`: expire, resolve pages, end grants whose incident resolved."""
        from jitctl.lifecycle.sweep import sweep

        return sweep(self.env).as_dict()

    def _check_own(self, req: AccessRequest, verb: str) -> None:
        from jitctl.errors import Denied

        if req.requester != self.env.caller.person:
            raise Denied(
                f"request {req.request_id} belongs to {req.requester}; only they can {verb} it"
            )


def _reason(reason: str | None) -> dict[str, str]:
    """The reason given for this use of a grant, when one was (the grant keeps its own)."""
    return {"reason": reason} if reason else {}
