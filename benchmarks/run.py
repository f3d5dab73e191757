"""jitctl's performance budgets, each a ratio (or a count) measured in one run on this machine.

    python -m benchmarks.run            # all of them; exits 1 if any budget is exceeded

Local servers only: moto's server for AWS and the PagerDuty simulator from tests/ over HTTPS.
Every timing is the median of several runs of whole processes, as a user would see them.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.conftest import clean_env
from tests.harness import Team
from tests.pdsim import PagerDutySim, make_certs

RUNS = 7
# --fresh: a new request every run, not the live grant of the run before handed out again.
REQUEST = ["request", "prod-readonly", "--reason", "bench", "--json", "--fresh"]
ALICE, BOB = "alice@example.com", "bob@example.com"


def median_seconds(fn: Callable[[], None], runs: int = RUNS) -> float:
    fn()  # warm-up: bytecode caches written, files in the page cache, as for any real user
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def alternating_medians(fns: list[Callable[[], None]], runs: int = RUNS) -> list[float]:
    """The median seconds of each of ``fns``, run in turn round after round (after one warm-up
    round), so a change in the machine's load falls on all of them alike."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for fn, seen in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            seen.append(time.perf_counter() - start)
    return [statistics.median(seen) for seen in times]


def run(cmd: list[str], env: dict[str, str]) -> None:
    # An installed package has its .pyc files; a sandbox's PYTHONDONTWRITEBYTECODE would make
    # every run recompile jitctl's own modules (and none of boto3's, compiled at install).
    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:  # say why, not only that it failed
        raise SystemExit(f"{cmd[:3]} exited {done.returncode}: {done.stderr[-2000:]}")


def bench_help() -> tuple[float, float]:
    env = clean_env()
    jitctl = median_seconds(lambda: run([sys.executable, "-m", "jitctl", "--help"], env))
    boto3 = median_seconds(lambda: run([sys.executable, "-c", "import boto3"], env))
    return jitctl, boto3


PLAIN_SCRIPT = r"""
# The same API calls jitctl's fast path makes, with no checks, no audit, no store: boto3 for
# AWS, the standard library's urllib for PagerDuty (no other HTTP client), configparser for
# the profile. The plainest floor (issue 25): an HTTP client library would flatter the ratio.
import os, sys, json, ssl, configparser, urllib.parse, urllib.request, boto3
sts = boto3.client("sts")
arn = sts.get_caller_identity()["Arn"]
email = arn.rsplit("/", 1)[-1]
tls = ssl.create_default_context(cafile=os.environ["PD_CA"])
auth = {"Authorization": "Token token=" + os.environ["PD_TOKEN"],
        "Accept": "application/vnd.pagerduty+json;version=2"}
def pd(path, **query):
    url = os.environ["PD_URL"] + path + "?" + urllib.parse.urlencode(query)
    with urllib.request.urlopen(urllib.request.Request(url, headers=auth), context=tls) as r:
        return json.load(r)
users = pd("/users", query=email)["users"]
uid = [u for u in users if u["email"].lower() == email][0]["id"]
oncalls = pd("/oncalls", **{"user_ids[]": uid})["oncalls"]
assert any(o["escalation_policy"]["id"] == "PEP1234" for o in oncalls)
creds = sts.assume_role(RoleArn="arn:aws:iam::123456789012:role/prod-readonly",
                        RoleSessionName=email, SourceIdentity=email, DurationSeconds=3600)["Credentials"]
ini = configparser.ConfigParser()
ini["jit-prod-readonly"] = {"aws_access_key_id": creds["AccessKeyId"],
                            "aws_secret_access_key": creds["SecretAccessKey"],
                            "aws_session_token": creds["SessionToken"]}
with open(os.environ["AWS_SHARED_CREDENTIALS_FILE"], "w") as fh:
    ini.write(fh)
"""


# Today's earlier floor, kept beside for comparison: the same calls through httpx2.
HTTPX_SCRIPT = PLAIN_SCRIPT.replace(
    "tls = ssl.create_default_context", "import httpx2\ntls = ssl.create_default_context"
).replace(
    "    with urllib.request.urlopen(urllib.request.Request(url, headers=auth), context=tls) as r:\n"
    "        return json.load(r)",
    "    return httpx2.get(url, headers=auth, verify=os.environ['PD_CA']).json()",
)


def bench_oncall(team: Team) -> tuple[float, float, float]:
    """Median seconds of the on-call request, the urllib floor and the httpx2 floor."""
    now = datetime.now(UTC)
    team.pd.add_oncall(
        team.pd_user(ALICE),
        "PEP1234",
        1,
        start=now - timedelta(hours=1),
        end=now + timedelta(hours=8),
    )
    env = team.env(ALICE)
    team.credentials_file(ALICE).parent.mkdir(parents=True, exist_ok=True)
    plain_env = dict(
        env,
        PD_URL=team.pd.url,
        PD_CA=str(team.pd.ca_bundle),
        PD_TOKEN=team.pd.token,
        AWS_DEFAULT_REGION="us-east-1",
        # A file of its own: jitctl never overwrites a profile it did not write, and the runs
        # alternate.
        AWS_SHARED_CREDENTIALS_FILE=str(team.credentials_file(ALICE)) + ".floor",
    )
    jitctl, plain, httpx = alternating_medians(
        [
            lambda: run([team.exe, *REQUEST], env),
            lambda: run([sys.executable, "-c", PLAIN_SCRIPT], plain_env),
            lambda: run([sys.executable, "-c", HTTPX_SCRIPT], plain_env),
        ]
    )
    return jitctl, plain, httpx


def bench_approval_latency(team: Team, runs: int = 5) -> float:
    """Seconds from `jitctl approve` returning to the waiting requester holding credentials."""
    latencies = []
    for _ in range(runs):
        waiter = team.popen(
            ALICE, "request", "prod-admin", "--reason", "bench", "--json", "--fresh"
        )
        request_id = None
        while request_id is None:
            rows = json.loads(team.run(BOB, "list", "--pending", "--json").stdout)
            request_id = rows[0]["request_id"] if rows else None
        first = team.run(BOB, "approve", request_id)
        assert first.returncode == 0, first.stderr
        second = team.run("carol@example.com", "approve", request_id)
        assert second.returncode == 0, second.stderr
        returned = time.perf_counter()
        stdout, stderr = waiter.communicate(timeout=60)
        assert waiter.returncode == 0, stderr
        assert json.loads(stdout)["status"] == "issued"
        latencies.append(time.perf_counter() - returned)
    return statistics.median(latencies)


def bench_pending_reads(moto: str, decided: int = 10_000, pending: int = 10) -> tuple[int, int]:
    """Items DynamoDB reads for `list --pending` with many decided requests in the table."""
    import boto3

    from jitctl.store.base import ts
    from jitctl.store.dynamodb import DynamoStore

    client = boto3.client(
        "dynamodb",
        endpoint_url=moto,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    table = f"bench-{uuid.uuid4().hex[:8]}"
    store = DynamoStore(table, lambda _service: client)
    store.init()
    now = datetime.now(UTC)
    items = []
    for i in range(decided + pending):
        item = {
            "request_id": {"S": f"r-{i:06d}"},
            "role": {"S": "prod-readonly"},
            "requester": {"S": ALICE},
            "created_at": {"S": ts(now - timedelta(seconds=i))},
        }
        items.append(item)
    # Seed through the store's own create() so the items have exactly its shape.
    from jitctl.models import AccessRequest

    for i in range(decided + pending):
        req = AccessRequest(
            request_id=f"r-{i:06d}",
            role="prod-readonly",
            requester=ALICE,
            requester_arn="arn:aws:iam::123456789012:user/alice@example.com",
            reason="bench",
            duration_seconds=3600,
            status="pending",
            created_at=now - timedelta(seconds=i),
            expires_at=now + timedelta(hours=1),
        )
        store.create(req)
        if i >= pending:
            store.deny(req.request_id, BOB, now=now, reason="bench")
    listed = store.list(pending_only=True, limit=100, now=now)
    return len(listed), store.last_items_read


def main() -> int:
    from moto.server import ThreadedMotoServer

    results: list[tuple[str, str, str, bool]] = []
    jitctl_help, import_boto3 = bench_help()
    ratio = jitctl_help / import_boto3
    results.append(
        (
            "`jitctl --help` / `python -c 'import boto3'`",
            f"{ratio:.2f}x ({jitctl_help * 1000:.0f} ms / {import_boto3 * 1000:.0f} ms)",
            "≤ 0.3x",
            ratio <= 0.3,
        )
    )

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    moto_url = f"http://{host}:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        certs = make_certs(Path(tmp) / "tls")
        with PagerDutySim(certs) as pd:
            team = Team(Path(tmp) / "team", moto_url, pd)
            jitctl_req, plain, httpx = bench_oncall(team)
            ratio = jitctl_req / plain
            results.append(
                (
                    "on-call `jitctl request` / plain script (boto3, urllib, configparser)",
                    f"{ratio:.2f}x ({jitctl_req * 1000:.0f} ms / {plain * 1000:.0f} ms)",
                    "≤ 1.15x",
                    ratio <= 1.15,
                )
            )
            results.append(
                (
                    "(for comparison) the same against the earlier floor using httpx2",
                    f"{jitctl_req / httpx:.2f}x ({httpx * 1000:.0f} ms floor)",
                    "none",
                    True,
                )
            )
            latency = bench_approval_latency(team)
            results.append(
                (
                    "`approve` returning → requester holds credentials (median)",
                    f"{latency:.2f} s",
                    "≤ 1.5 s",
                    latency <= 1.5,
                )
            )
    listed, read = bench_pending_reads(moto_url)
    results.append(
        (
            "DynamoDB items read by `list --pending` (10,000 decided, 10 pending)",
            f"{read} read, {listed} listed",
            "= 10",
            read == 10 and listed == 10,
        )
    )
    moto.stop()

    print("| benchmark | measured | budget | ok |")
    print("| --- | --- | --- | --- |")
    for name, value, budget, ok in results:
        print(f"| {name} | {value} | {budget} | {'yes' if ok else 'NO'} |")
    return 0 if all(ok for *_, ok in results) else 1


if __name__ == "__main__":
    sys.exit(main())
