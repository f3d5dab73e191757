"""Verifying the central copy of the audit trail, chain by chain, against the local log.

Each record carries ``chain`` (which local log it came from) and ``seq`` (its position there),
so the central copy can be checked like the local one: contiguous seqs from 1, every hash per
the contract's formula, every ``prev`` the previous record's hash, and every record of this
machine's local log present and identical. With ``[audit] kms_key``, every record must also
carry the key's signature (jitctl.audit.signing).

Each writer (a person's machine, a broker instance) has its own local log and so its own
chain; the copy is checked chain by chain, however many there are. What no check here can
notice: a whole chain removed, or the newest records of a chain removed, when no local log
that still holds them is compared (each writer can only vouch for its own chain). Signatures
prove who wrote a record, not that none is missing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jitctl.audit.log import REQUIRED_FIELDS, is_seq, parse_line, record_hash

if TYPE_CHECKING:
    from jitctl.audit.signing import Verifier


@dataclass(frozen=True)
class CentralEntry:
    """One record as a central sink holds it: the key it is stored under, and its text."""

    chain: str
    seq: int
    text: str
    where: str  # for messages: "dynamodb table T", "s3://bucket/key"
    sig: str | None = None  # base64 signature stored beside the record (jitctl.audit.signing)
    key_id: str | None = None
    problem: str | None = None  # what the sink itself found wrong (e.g. an overwritten object)
    # An item whose index attributes disagree with its record: checked last, once the
    # records themselves hold up (jitctl.audit.index).
    index_problem: str | None = None


@dataclass(frozen=True)
class CentralResult:
    ok: bool
    chains: int
    records: int
    chain: str | None = None
    seq: int | None = None
    problem: str | None = None


def verify_central(
    entries: Iterable[CentralEntry],
    local: Iterable[dict[str, Any]] = (),
    *,
    sink: str = "",
    verifier: Verifier | None = None,
    origin: str | None = None,
) -> CentralResult:
    """Check a central copy: per chain, seqs contiguous from 1, every hash right, every prev
    the previous seq's hash, each record stored under its own chain/seq and (with a
    ``verifier``) signed by the audit key; then every record of ``local`` (this machine's log)
    that has a position must be there, identical; and the central copy may hold nothing of
    this log's chains (those in ``local``, and those whose first record names ``origin``)
    beyond the local log's end: the local log's newest records removed, or the log emptied.

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
    try:
        _collect(entries, held)
        found: dict[tuple[str, int], dict[str, Any]] = {}
        for chain in sorted(held):
            found.update(_check_chain(chain, held[chain], undelivered, verifier))
        _check_local(local, found, undelivered)
        _check_tail(local, found, origin)
        _check_index(held)
    except _Failure as bad:  # the counts say how far the check got
        return CentralResult(False, len(held), _count(held), bad.chain, bad.seq, bad.problem)
    return CentralResult(True, len(held), _count(held))


class _Failure(Exception):
    """The first problem found; `verify_central` turns it into its result."""

    def __init__(self, chain: str, seq: int, problem: str) -> None:
        super().__init__(problem)
        self.chain, self.seq, self.problem = chain, seq, problem


def _count(held: dict[str, dict[int, CentralEntry]]) -> int:
    return sum(len(seqs) for seqs in held.values())


def _collect(entries: Iterable[CentralEntry], held: dict[str, dict[int, CentralEntry]]) -> None:
    """Index the entries by chain and seq into ``held``; two under one position fail."""
    for entry in entries:
        seqs = held.setdefault(entry.chain, {})
        if entry.seq in seqs:
            where = f"{seqs[entry.seq].where} and {entry.where}"
            raise _Failure(entry.chain, entry.seq, f"stored twice: {where}")
        if entry.problem:
            raise _Failure(entry.chain, entry.seq, entry.problem)
        seqs[entry.seq] = entry


def _check_chain(
    chain: str,
    seqs: dict[int, CentralEntry],
    undelivered: set[Any],
    verifier: Verifier | None,
) -> dict[tuple[str, int], dict[str, Any]]:
    """One chain's records, in order: contiguous from 1 and linked by ``prev``."""
    found: dict[tuple[str, int], dict[str, Any]] = {}
    previous: dict[str, Any] | None = None
    for expected, seq in enumerate(sorted(seqs), start=1):
        if seq != expected:
            raise _Failure(chain, expected, _missing(chain, expected, undelivered))
        entry = seqs[seq]
        record = _check_record(chain, seq, entry)
        if previous is not None and record["prev"] != previous["hash"]:
            raise _Failure(
                chain,
                seq,
                f"{entry.where}: prev does not match seq {seq - 1}'s hash: "
                "a record was edited, removed or reordered",
            )
        unsigned = verifier and verifier.problem(record, entry.sig, entry.key_id)
        if unsigned:
            raise _Failure(chain, seq, f"{entry.where}: {unsigned}")
        found[(chain, seq)] = record
        previous = record
    return found


def _check_record(chain: str, seq: int, entry: CentralEntry) -> dict[str, Any]:
    """One stored record on its own: it parses, is complete, sits under its own position
    and its hash is right."""
    record, problem = parse_line(entry.text.encode("utf-8", "surrogatepass"))
    if record is None:
        raise _Failure(chain, seq, f"{entry.where}: {problem}")
    missing = [name for name in REQUIRED_FIELDS if name not in record]
    if missing:
        raise _Failure(chain, seq, f"{entry.where}: missing field {missing[0]!r}")
    if record.get("chain") != chain or record.get("seq") != seq:
        raise _Failure(
            chain,
            seq,
            f"{entry.where} holds the record of chain {record.get('chain')} seq "
            f"{record.get('seq')}: records were moved or swapped",
        )
    if not isinstance(record["hash"], str) or record_hash(record) != record["hash"]:
        raise _Failure(chain, seq, f"{entry.where}: hash mismatch: the record was edited")
    return record


def _check_index(held: dict[str, dict[int, CentralEntry]]) -> None:
    """No item hides from the indexes behind attributes other than its record's."""
    for chain in sorted(held):
        for seq, entry in sorted(held[chain].items()):
            if entry.index_problem:
                raise _Failure(chain, seq, entry.index_problem)


def _check_local(
    local: list[dict[str, Any]],
    found: dict[tuple[str, int], dict[str, Any]],
    undelivered: set[Any],
) -> None:
    """Every positioned record of this machine's log is in the central copy, identical."""
    for record in local:
        chain, seq = record.get("chain"), record.get("seq")
        if not isinstance(chain, str) or not is_seq(seq):
            continue
        central = found.get((chain, seq))
        if central is None:
            raise _Failure(chain, seq, _missing(chain, seq, undelivered, local=True))
        if central != record:
            raise _Failure(chain, seq, "differs from the local log: the central record was edited")


def _check_tail(
    local: list[dict[str, Any]], found: dict[tuple[str, int], dict[str, Any]], origin: str | None
) -> None:
    """The central copy anchors the local log's tail: of this log's chains, it holds no record
    after the local log's last one (the local log is written first, so it is never behind)."""
    ends = local_ends(local)
    for (chain, seq), record in found.items():
        if origin and seq == 1 and record.get("origin") == origin:
            ends.setdefault(chain, 0)  # this log's chain, even if it holds none of it now
    held: dict[str, int] = {}
    for chain, seq in found:
        held[chain] = max(held.get(chain, 0), seq)
    for chain in sorted(ends):
        end, last = ends[chain], held.get(chain, 0)
        if last > end:
            raise _Failure(chain, end + 1, _rolled_back(chain, end, last))


def local_ends(local: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Each chain of the local log, and its last seq there."""
    ends: dict[str, int] = {}
    for record in local:
        chain, seq = record.get("chain"), record.get("seq")
        if isinstance(chain, str) and is_seq(seq):
            ends[chain] = max(ends.get(chain, 0), seq)
    return ends


def _rolled_back(chain: str, end: int, last: int) -> str:
    if end == 0:
        return (
            f"the central copy holds {last} records of chain {chain}, written by this local "
            "log, and the local log holds none of them: it was emptied or replaced"
        )
    return (
        f"the central copy holds chain {chain} up to seq {last}, the local log only up to seq "
        f"{end}: the local log's newest records were removed"
    )


def _missing(chain: str, seq: int, undelivered: set[Any], *, local: bool = False) -> str:
    what = "in the local log but missing from the central copy" if local else "missing"
    if (chain, seq) in undelivered:
        return f"{what}: never delivered (the local log records the sink failing for it)"
    return f"{what}: a record was removed"
