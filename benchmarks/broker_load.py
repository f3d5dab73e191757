"""`jitctl broker serve` in one process with 20 signing clients at once: requests per second,
and nothing lost or doubled.

    python -m benchmarks.broker_load       # exits 1 if any request is lost or doubled
    BENCH_PYTHONPATH=DIR python -m benchmarks.broker_load   # the broker from another tree

With ``BENCH_PYTHONPATH`` the broker (and its `jitctl init`) runs the jitctl found in DIR (an
export of another commit, e.g. ``git archive main | tar -x -C DIR``), with the same harness,
so a change's figures before and after come from one machine in the same minutes.

CLIENTS threads, each a person on call with AWS keys of their own, sign (as `jitctl` does) and
send PER_CLIENT on-call requests one after another to POST /v1/requests, all starting at one
barrier. Each answer must carry credentials. Afterwards: the broker's store rows, its `issued`
audit records and the credentials handed out must each number CLIENTS x PER_CLIENT, once per
request id. moto runs in a process of its own (so the clients' threads and moto do not share
one interpreter lock); its IAM enforcement is off: this measures speed, the tests measure who
may do what.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.broker import on_call
from tests.broker_world import REGION, SERVER_ID, TABLE, BrokerWorld
from tests.conftest import moto_process
from tests.pdsim import PagerDutySim, make_certs

CLIENTS, PER_CLIENT = 20, 10
PATH = "/v1/requests"


def signed_post(world: BrokerWorld, person: str, body: bytes) -> dict[str, Any]:
    """POST ``body`` to /v1/requests with the proof headers `jitctl` sends; the answer."""
    from botocore.credentials import Credentials

    from jitctl.broker.proof import make_proof

    keys = world.keys[person]
    creds = Credentials(keys["AWS_ACCESS_KEY_ID"], keys["AWS_SECRET_ACCESS_KEY"])
    headers = make_proof(
        creds.get_frozen_credentials(),
        sts_url=world.moto,
        sts_region=REGION,
        server_id=SERVER_ID,
        method="POST",
        path=PATH,
        body=body,
        now=datetime.now(UTC),
    )
    call = urllib.request.Request(world.url + PATH, data=body, method="POST", headers=headers)
    with urllib.request.urlopen(call, timeout=120) as answer:
        doc: dict[str, Any] = json.loads(answer.read())
    return doc


def crowd_of(world: BrokerWorld) -> list[str]:
    people = [f"load{i}@example.com" for i in range(CLIENTS)]
    for person in people:
        world.user(person)
        world.pd_ids[person] = world.pd.add_user(person)
        on_call(world, person)
    return people


def load(world: BrokerWorld, people: list[str]) -> tuple[list[dict[str, Any]], float]:
    """Every client's answers, and the seconds from the barrier to the last answer."""
    start = threading.Barrier(len(people) + 1)

    def client(person: str) -> list[dict[str, Any]]:
        start.wait()
        bodies = (
            json.dumps({"role": "prod-readonly", "reason": f"load {person} {k}"}).encode()
            for k in range(PER_CLIENT)
        )
        return [signed_post(world, person, body) for body in bodies]

    with ThreadPoolExecutor(len(people)) as pool:
        futures = [pool.submit(client, person) for person in people]
        start.wait()
        began = time.perf_counter()
        answers = [doc for future in futures for doc in future.result()]
        seconds = time.perf_counter() - began
    return answers, seconds


def counts(world: BrokerWorld, answers: list[dict[str, Any]]) -> dict[str, int]:
    """How many of each: answers, distinct ids, credentials, store rows, `issued` records."""
    ids = {a["request"]["request_id"] for a in answers}
    keys = {a["issued"]["credentials"]["access_key_id"] for a in answers if a.get("issued")}
    db = world.boto("broker", "dynamodb")
    rows: Counter[str] = Counter()
    for page in db.get_paginator("scan").paginate(TableName=TABLE):
        for item in page["Items"]:
            body = json.loads(item["body"]["S"]) if "body" in item else {}
            if str(body.get("reason", "")).startswith("load ") and body["status"] == "issued":
                rows[body["request_id"]] += 1
    audit = (world.broker_dir / "audit.jsonl").read_text().splitlines()
    issued = Counter(r["request_id"] for r in map(json.loads, audit) if r["event"] == "issued")
    return {
        "answers": len(answers),
        "distinct ids": len(ids),
        "credentials": len(keys),
        "store rows (issued)": sum(rows[i] for i in ids),
        "`issued` records": sum(issued[i] for i in ids),
    }


def cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) so far of this process ("clients and PagerDuty") and of
    its children, by what they run ("broker", "moto"); Linux's /proc, else nothing."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    found: dict[str, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError):
            continue
        pid, parent = int(stat.parent.name), int(fields[1])
        if pid == os.getpid():
            name = "clients and PagerDuty"
        elif parent == os.getpid():
            name = "broker" if "broker serve" in cmdline else "moto"
        else:
            continue
        found[name] = found.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return found


def other_tree(tmp: Path, world: BrokerWorld) -> None:
    """Run the broker from ``BENCH_PYTHONPATH`` (when set): a launcher that puts that tree
    ahead of the installed jitctl (the console script's own directory comes first on
    sys.path, then PYTHONPATH, then the editable install's finder)."""
    tree = os.environ.get("BENCH_PYTHONPATH")
    if not tree:
        return
    launcher = tmp / "jitctl-other"
    launcher.write_text(
        f'#!/bin/sh\nPYTHONPATH="{Path(tree).resolve()}" exec "{sys.executable}" '
        f'"{world.exe}" "$@"\n'
    )
    launcher.chmod(0o755)
    world.exe = str(launcher)
    print(f"broker from {tree}", file=sys.stderr)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp, moto_process() as moto:
        certs = make_certs(Path(tmp) / "tls")
        with PagerDutySim(certs) as pd:
            world = BrokerWorld(Path(tmp) / "world", moto, pd)
            other_tree(Path(tmp), world)
            world.build()
            people = crowd_of(world)
            with world.serving():
                before = cpu_seconds()
                answers, seconds = load(world, people)
                after = cpu_seconds()
            found = counts(world, answers)
    total = CLIENTS * PER_CLIENT
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {CLIENTS} clients x {PER_CLIENT} requests")
    print("| broker serve, on-call requests | measured | expected |")
    print("| --- | --- | --- |")
    print(f"| requests per second | {total / seconds:.1f} ({total} in {seconds:.1f} s) | |")
    for name, value in found.items():
        print(f"| {name} | {value} | {total} |")
    for name, used in sorted(after.items()):
        spent = used - before.get(name, 0.0)
        print(f"| CPU of {name} | {spent:.1f} s, {1000 * spent / total:.0f} ms per request | |")
    return 0 if all(value == total for value in found.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
