"""`jitctl audit verify`: the local log's chain and, with ``--remote``, each central copy.

Kept apart from ``central`` (the comparison itself), which the sinks import: this module
reads the run's ``Environment`` (config, sinks, the signing key), so it sits above them.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from jitctl.audit.central import CentralResult, verify_central
from jitctl.audit.log import is_seq

if TYPE_CHECKING:
    from jitctl.audit.signing import Verifier
    from jitctl.context import Environment


def verify_report(env: Environment, *, remote: bool) -> dict[str, Any]:
    """`jitctl audit verify [--remote] --json`'s document: the local log's chain and, with
    ``remote``, each central sink's copy (chains, signatures, this log's records present).
    ``ok`` is the verdict; ``failure`` the one line that explains a False (else None).

    Raises ConfigError when ``remote`` is asked for and no central sink is configured. A
    server (the broker) can return this document as it is.
    """
    from jitctl.audit.log import log_origin, read_records
    from jitctl.audit.log import verify as verify_log
    from jitctl.errors import AuditTampered, ConfigError

    path = env.config.audit_path
    result = verify_log(path)
    doc: dict[str, Any] = {
        "path": str(path),
        "ok": result.ok,
        "records": result.records,
        "first_bad_line": result.first_bad_line,
        "problem": result.problem,
        "failure": None if result.ok else f"{path}:{result.first_bad_line}: {result.problem}",
        "anchored": False,  # whether a copy the writer cannot quietly roll back vouches for
        "anchor": None,  # the tail: {sink, chain, seq, hash} of the head it holds
        "anchor_note": _unanchored(env, remote),
    }
    if not remote or not result.ok:
        return doc
    sinks = list(env.audit.sinks) if env.config.audit.central else []
    if not sinks:
        raise ConfigError(
            "no central audit sink is configured",
            'set [audit] table = "NAME" and/or bucket = "NAME" in the config',
        )
    local = read_records(path)
    verifier = _verifier(env)
    origin = log_origin(path)
    doc["signed"] = verifier is not None
    doc["remote"] = []
    for sink in sinks:
        try:
            central = verify_central(
                sink.entries(), local, sink=sink.name, verifier=verifier, origin=origin
            )
        except AuditTampered as exc:  # e.g. a stray object in the bucket: still a verdict
            central = CentralResult(False, 0, 0, problem=exc.message)
        doc["remote"].append({"sink": sink.name, **asdict(central)})
        if not central.ok and doc["failure"] is None:
            where = f" chain {central.chain} seq {central.seq}" if central.chain else ""
            doc["failure"] = f"{sink.name}:{where}: {central.problem}"
    doc["ok"] = doc["failure"] is None
    if doc["ok"]:
        doc.update(anchored=True, anchor=_anchor(sinks[0].name, local), anchor_note=None)
    return doc


def _unanchored(env: Environment, remote: bool) -> str:
    """What a check of the local log alone cannot prove: the hash chain shows edits and gaps,
    but the writer can drop the newest records (or empty the log) and the rest still verifies."""
    text = (
        "the newest records are not anchored: removing them, or emptying the log, leaves a "
        "chain that still verifies"
    )
    if not env.config.audit.central:
        return f"{text}; a central copy ([audit] table or bucket) would anchor them"
    if remote:  # asked for, but the local log failed first
        return text
    return f"{text}; `jitctl audit verify --remote` checks them against the central copy"


def _anchor(sink: str, local: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The local log's head, as the central copy holds it (None for an empty log)."""
    head = next((r for r in reversed(local) if is_seq(r.get("seq"))), None)
    if head is None:
        return None
    return {"sink": sink, "chain": head["chain"], "seq": head["seq"], "hash": head["hash"]}


def _verifier(env: Environment) -> Verifier | None:
    from jitctl.audit.signing import open_verifier

    settings = env.config.audit
    return open_verifier(settings, lambda service: env.aws.client(service, region=settings.region))
