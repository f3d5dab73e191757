"""Reading a long audit log: time per record and peak memory of whole `jitctl` processes.

    python -m benchmarks.audit [RECORDS]     # default 1,000,000; exits 1 over a budget
    python -m benchmarks.audit central [RECORDS]   # default 10,000: the central copy by index
    BENCH_PYTHONPATH=/tmp/old-tree python -m benchmarks.audit 100000   # another jitctl's figures

The log is written directly (a valid hash chain, the contract's formula, records shaped like
jitctl's own), so a million records take seconds to make rather than a million appends. Each
command runs as its own process with its output going to a file; its peak memory is the
child's maximum resident set size (``os.wait4``). Budget: every command under 100 MiB.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

PEOPLE = [f"person{i:03d}@example.com" for i in range(500)]
EVENTS = ("requested", "auto_approved", "issued", "revoked")
BUDGET_MIB = 100
RUNS = int(os.environ.get("BENCH_RUNS", "3"))


def write_log(path: Path, count: int) -> str:
    """A chained log of ``count`` records; returns one request id that appears in it."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    prev = None
    with open(path, "w", encoding="utf-8") as out:
        for seq in range(1, count + 1):
            person = PEOPLE[seq % len(PEOPLE)]
            record = {
                "ts": (start + timedelta(seconds=30 * seq)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "event": EVENTS[seq % len(EVENTS)],
                "request_id": f"r-{seq // len(EVENTS):08x}",
                "actor": f"arn:aws:iam::123456789012:user/{person}",
                "person": person,
                "role": "prod-readonly",
                "reason": "INC-1234 looking at the load balancer logs",
                "chain": "0123456789abcdef",
                "seq": seq,
                "prev": prev,
            }
            body = json.dumps(record, sort_keys=True, separators=(",", ":"))
            record["hash"] = prev = hashlib.sha256(body.encode()).hexdigest()
            out.write(json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n")
    return f"r-{(count // 2) // len(EVENTS):08x}"


def child_env(base: Path, log: Path) -> dict[str, str]:
    """No AWS or jitctl settings of the developer's; this log, no config file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "JITCTL_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed jitctl has its bytecode
    (base / "config.toml").write_text("")  # the defaults: no store, no central copy
    env.update(JITCTL_AUDIT_LOG=str(log), JITCTL_CONFIG=str(base / "config.toml"))
    if os.environ.get("BENCH_PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["BENCH_PYTHONPATH"]
    return env


def measure(cmd: list[str], env: dict[str, str], out: Path) -> tuple[float, float]:
    """(seconds, peak MiB) of one run of ``cmd``, its stdout to ``out``."""
    with open(out, "wb") as sink:
        start = time.perf_counter()
        child = subprocess.Popen(cmd, env=env, stdout=sink, stderr=subprocess.PIPE, cwd=out.parent)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        assert child.stderr is not None
        raise RuntimeError(f"{cmd} exited {child.returncode}: {child.stderr.read()[-500:]!r}")
    return seconds, usage.ru_maxrss / 1024  # Linux reports KiB


def central(count: int) -> int:
    """`audit log --request ID` (and --person/--since) on the DynamoDB central copy, in moto:
    items DynamoDB handed back (a botocore after-call hook on the sink's own client) against
    records printed, through the indexes (the broker) and by scan (direct mode). Exits 1 if the
    indexed read of a request reads more than it prints."""
    from moto import mock_aws

    with mock_aws():
        sink, request_id = _central_table(count)
        asks = {
            "--request ID": {"request_id": request_id},
            "--person P --since 1d": {
                "person": PEOPLE[7],
                "since": _START + timedelta(seconds=30 * count) - timedelta(days=1),
            },
            "--since 1h": {"since": _START + timedelta(seconds=30 * count) - timedelta(hours=1)},
        }
        rows, ok = [], True
        for name, filters in asks.items():
            trusted = _read_central(sink, True, filters)
            scanned = _read_central(sink, False, filters)
            assert trusted[0] == scanned[0], name  # same records, same order
            rows.append((name, len(trusted[0]), trusted[1:], scanned[1:]))
            ok = ok and (name != "--request ID" or trusted[1] == len(trusted[0]))
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {count:,} records in the table (moto)")
    print("| `audit log` | printed | items read, index | time | items read, scan | time |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, printed, (items, secs), (scan_items, scan_secs) in rows:
        print(
            f"| `{name}` | {printed} | {items:,} | {secs:.2f} s | {scan_items:,} | "
            f"{scan_secs:.2f} s |"
        )
    return 0 if ok else 1


_START = datetime(2026, 1, 1, tzinfo=UTC)


def _central_table(count: int) -> tuple[object, str]:
    """A table as `jitctl init` makes it, filled with ``count`` chained records (the sink's
    own item shape, written 25 at a time); returns it and a request id it holds."""
    import boto3

    from jitctl.audit.index import index_attributes
    from jitctl.audit.sink import DynamoSink

    os.environ.update(AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x")
    sink = DynamoSink("jitctl-bench-audit", lambda service: boto3.client(service), poll_interval=0)
    sink.init()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "audit.jsonl"
        request_id = write_log(log, count)
        batch = []
        with open(log, encoding="utf-8") as lines:
            for line in lines:
                record = json.loads(line)
                item = {"chain": {"S": record["chain"]}, "seq": {"N": str(record["seq"])}}
                item |= {"record": {"S": line.rstrip("\n")}, **index_attributes(record)}
                batch.append({"PutRequest": {"Item": item}})
                if len(batch) == 25:
                    sink.client.batch_write_item(RequestItems={sink.table: batch})
                    batch = []
        if batch:
            sink.client.batch_write_item(RequestItems={sink.table: batch})
    return sink, request_id


def _read_central(sink: object, trusted: bool, filters: dict[str, object]) -> tuple[list, int, float]:
    """(records, items DynamoDB returned, seconds) of one `audit log` read of the sink."""
    read = [0]

    def count(parsed: dict[str, object], **_: object) -> None:
        read[0] += int(parsed.get("ScannedCount", parsed.get("Count", 0)))  # type: ignore[call-overload]

    sink.trust_index = trusted  # type: ignore[attr-defined]
    client = sink.client  # type: ignore[attr-defined]
    client.meta.events.register("after-call.dynamodb", count)
    start = time.perf_counter()
    kw = {"since": None, "request_id": None, "person": None} | filters
    now = _START + timedelta(days=30)  # a since-only read asks each day from since to now
    found = list(sink.records(now=now, **kw))  # type: ignore[attr-defined]
    seconds = time.perf_counter() - start
    client.meta.events.unregister("after-call.dynamodb", count)
    return found, read[0], seconds


def main() -> int:
    if sys.argv[1:2] == ["central"]:
        return central(int(sys.argv[2]) if len(sys.argv) > 2 else 10_000)
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        log = base / "audit.jsonl"
        request_id = write_log(log, count)
        env = child_env(base, log)
        exe = [sys.executable, "-m", "jitctl"]
        measure([*exe, "--help"], env, base / "out")  # bytecode written before anything is timed
        commands = {
            "audit log --json": ["audit", "log", "--local", "--json"],
            "audit log (table)": ["audit", "log", "--local"],
            "audit export --format jsonl": ["audit", "export", "--local", "--format", "jsonl"],
            "audit export --format csv": ["audit", "export", "--local", "--format", "csv"],
            "audit log --request ID --json": [
                *("audit", "log", "--local", "--json", "--request", request_id)
            ],
            "audit verify": ["audit", "verify"],
        }
        only = os.environ.get("BENCH_ONLY")  # e.g. "audit log --json,audit export --format jsonl"
        if only:
            commands = {k: v for k, v in commands.items() if k in only.split(",")}
        rows, ok = [], True
        for name, args in commands.items():
            runs = [measure([*exe, *args], env, base / "out") for _ in range(RUNS)]
            seconds = statistics.median(s for s, _ in runs)
            peak = max(m for _, m in runs)
            ok = ok and peak < BUDGET_MIB
            rows.append((name, seconds, peak))
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {count:,} records, median of {RUNS} runs")
    print("| command | time | µs per record | peak memory | budget |")
    print("| --- | --- | --- | --- | --- |")
    for name, seconds, peak in rows:
        print(
            f"| `jitctl {name}` | {seconds:.2f} s | {seconds / count * 1e6:.1f} | "
            f"{peak:.0f} MiB | < {BUDGET_MIB} MiB |"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
