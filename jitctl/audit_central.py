"""Verifying the central copy of the audit trail, chain by chain, against the local log.

Each record carries ``chain`` (which local log it came from) and ``seq`` (its position there),
so the central copy can be checked like the local one: contiguous seqs from 1, every hash per
the contract's formula, every ``prev`` the previous record's hash, and every record of this
machine's local log present and identical.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from jitctl.audit import REQUIRED_FIELDS, is_seq, parse_line, record_hash


@dataclass(frozen=True)
class CentralEntry:
    """One record as a central sink holds it: the key it is stored under, and its text."""

    chain: str
    seq: int
    text: str
    where: str  # for messages: "dynamodb table T", "s3://bucket/key"


@dataclass(frozen=True)
class CentralResult:
    ok: bool
    chains: int
    records: int
    chain: str | None = None
    seq: int | None = None
    problem: str | None = None


def verify_central(
    entries: Iterable[CentralEntry], local: Iterable[dict[str, Any]] = (), *, sink: str = ""
) -> CentralResult:
    """Check a central copy: per chain, seqs contiguous from 1, every hash right, every prev
    the previous seq's hash, each record stored under its own chain/seq; then every record of
    ``local`` (this machine's log) that has a position must be there, identical.

    Other people's chains cannot be checked for a removed newest record: only their own
    ``audit verify --remote`` can, against their local logs.
    """
    local = list(local)
    undelivered = {
        (r.get("chain"), r.get("failed_seq"))
        for r in local
        if r.get("event") == "audit_sink_failed" and r.get("sink") == sink
    }
    held: dict[str, dict[int, CentralEntry]] = {}
    count = 0
    for entry in entries:
        seqs = held.setdefault(entry.chain, {})
        if entry.seq in seqs:
            where = f"{seqs[entry.seq].where} and {entry.where}"
            return CentralResult(
                False, len(held), count, entry.chain, entry.seq, f"stored twice: {where}"
            )
        seqs[entry.seq] = entry
        count += 1

    def bad(chain: str, seq: int, problem: str) -> CentralResult:
        return CentralResult(False, len(held), count, chain, seq, problem)

    found: dict[tuple[str, int], dict[str, Any]] = {}
    for chain in sorted(held):
        previous: dict[str, Any] | None = None
        for expected, seq in enumerate(sorted(held[chain]), start=1):
            if seq != expected:
                return bad(chain, expected, _missing(chain, expected, undelivered))
            entry = held[chain][seq]
            record, problem = parse_line(entry.text.encode("utf-8", "surrogatepass"))
            if record is None:
                return bad(chain, seq, f"{entry.where}: {problem}")
            missing = [name for name in REQUIRED_FIELDS if name not in record]
            if missing:
                return bad(chain, seq, f"{entry.where}: missing field {missing[0]!r}")
            if record.get("chain") != chain or record.get("seq") != seq:
                return bad(
                    chain,
                    seq,
                    f"{entry.where} holds the record of chain {record.get('chain')} seq "
                    f"{record.get('seq')}: records were moved or swapped",
                )
            if not isinstance(record["hash"], str) or record_hash(record) != record["hash"]:
                return bad(chain, seq, f"{entry.where}: hash mismatch: the record was edited")
            if previous is not None and record["prev"] != previous["hash"]:
                return bad(
                    chain,
                    seq,
                    f"{entry.where}: prev does not match seq {seq - 1}'s hash: "
                    "a record was edited, removed or reordered",
                )
            found[(chain, seq)] = record
            previous = record
    for record in local:
        chain, seq = record.get("chain"), record.get("seq")
        if not isinstance(chain, str) or not is_seq(seq):
            continue
        central = found.get((chain, seq))
        if central is None:
            return bad(chain, seq, _missing(chain, seq, undelivered, local=True))
        if central != record:
            return bad(chain, seq, "differs from the local log: the central record was edited")
    return CentralResult(True, len(held), count)


def _missing(chain: str, seq: int, undelivered: set[Any], *, local: bool = False) -> str:
    what = "in the local log but missing from the central copy" if local else "missing"
    if (chain, seq) in undelivered:
        return f"{what}: never delivered (the local log records the sink failing for it)"
    return f"{what}: a record was removed"
