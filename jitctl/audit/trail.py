"""The local audit log plus the central sinks: local first, then each sink.

A failing sink is itself recorded locally (``audit_sink_failed``) and, when ``[audit]
required`` (the default), stops the command with AuditError (exit 5) before anything is
issued; with ``required = false`` it becomes a warning.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from jitctl.audit.log import AuditLog
from jitctl.audit.signing import open_signer
from jitctl.audit.sink import ClientFactory, DynamoSink, Sink, one_line
from jitctl.errors import AuditError
from jitctl.timeutil import Clock


def open_sinks(settings: Any, client_factory: ClientFactory) -> list[Sink]:
    """The sinks ``[audit]`` configures (an AuditSettings), in a fixed order: table, bucket.
    With ``kms_key`` they share one Signer, so a record is signed once whatever the sinks."""
    sinks: list[Sink] = []
    if settings.table:
        sinks.append(DynamoSink(settings.table, client_factory))
    if settings.bucket:
        from jitctl.audit.s3 import S3Sink

        retention = (settings.retention_mode, settings.retention_days)
        sinks.append(S3Sink(settings.bucket, settings.prefix, client_factory, retention=retention))
    signer = open_signer(settings, client_factory)
    for sink in sinks:
        sink.signer = signer
    return sinks


class AuditTrail(AuditLog):
    """The local log plus central sinks, with AuditLog's ``append``."""

    def __init__(
        self,
        path: Path,
        clock: Clock,
        sinks: list[Sink],
        *,
        required: bool = True,
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(path, clock)
        self.sinks = sinks
        self.required = required
        self.on_warning = on_warning
        self.warnings: list[str] = []

    def append(
        self,
        event: str,
        *,
        request_id: str | None,
        actor: str,
        person: str | None,
        role: str | None,
        **fields: Any,
    ) -> dict[str, Any]:
        record = super().append(
            event, request_id=request_id, actor=actor, person=person, role=role, **fields
        )
        failures = self._deliver(record, self.sinks)
        if not failures:
            return record
        # Record every failure locally; pass the notes on to the sinks that still work (a
        # note that fails there too is a new failure, so this ends when the sinks run out).
        healthy = [s for s in self.sinks if all(s is not f[0] for f in failures)]
        pending, everything = failures, list(failures)
        while pending:
            more: list[tuple[Sink, str]] = []
            for sink, error in pending:
                note = super().append(
                    "audit_sink_failed",
                    request_id=request_id,
                    actor=actor,
                    person=person,
                    role=role,
                    sink=sink.name,
                    error=error,
                    failed_event=record["event"],
                    failed_seq=record["seq"],
                )
                for failed in self._deliver(note, healthy):
                    healthy = [s for s in healthy if s is not failed[0]]
                    more.append(failed)
            pending = more
            everything += more
        summary = "; ".join(f"{sink.name}: {error}" for sink, error in everything)
        if self.required:
            raise AuditError(
                f"the central audit sink failed ({summary}), so jitctl stops here: nothing is "
                "issued without a central record",
                f"the local log {self.path} has the record; list, status and audit verify still "
                "work. Fix the sink (e.g. `jitctl init`), or set [audit] required = false to "
                "carry on with the local log alone",
            )
        warning = f"the central audit sink failed ({summary}); recorded in the local log only"
        if warning not in self.warnings:
            self.warnings.append(warning)
            if self.on_warning is not None:
                self.on_warning(warning)
        return record

    def _deliver(self, record: dict[str, Any], sinks: Sequence[Sink]) -> list[tuple[Sink, str]]:
        failures = []
        for sink in sinks:
            try:
                sink.put(record)
            except Exception as exc:  # any failure at all: the record did not get there
                failures.append((sink, one_line(exc)))
        return failures
