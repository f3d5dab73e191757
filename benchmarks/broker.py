"""The broker's budgets, measured in one run against a running `jitctl broker serve`.

    python -m benchmarks.broker         # exits 1 if any budget is exceeded

* an on-call `jitctl request` through the broker / the same request in direct mode (same
  moto server, same PagerDuty simulator, same DynamoDB table and policy);
* `approve` returning → the waiting requester holds credentials, through the broker;
* 50 concurrent requests from 10 clients: nothing lost, nothing issued twice.

moto's IAM enforcement is off here: this measures speed, the tests measure who may do what.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.run import REQUEST, median_seconds, run
from tests.broker_world import BrokerWorld
from tests.pdsim import PagerDutySim, make_certs

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"
CLIENTS, PER_CLIENT = 10, 5


def on_call(world: BrokerWorld, email: str) -> None:
    now = datetime.now(UTC)
    world.pd.add_oncall(
        world.pd_ids[email],
        "PEP1234",
        1,
        start=now - timedelta(hours=1),
        end=now + timedelta(hours=8),
    )


def direct_env(world: BrokerWorld, person: str) -> dict[str, str]:
    """The same person in direct mode: the broker's config (less its token secret and its
    [broker] table), their own keys and a token in the environment."""
    direct = world.broker_dir / "direct.toml"
    if not direct.exists():
        text = (world.broker_dir / "config.toml").read_text()
        kept = [line for line in text.splitlines() if not line.startswith("token_secret")]
        direct.write_text("\n".join(kept).split("[broker]")[0])
    env = world.client_env(person)
    env["JITCTL_CONFIG"] = str(direct)
    env["JITCTL_PAGERDUTY_TOKEN"] = world.pd.token or ""
    return env


def bench_request(world: BrokerWorld) -> tuple[float, float]:
    on_call(world, ALICE)
    args = [world.exe, *REQUEST]
    broker = median_seconds(lambda: run(args, world.client_env(ALICE)))
    direct = median_seconds(lambda: run(args, direct_env(world, ALICE)))
    return broker, direct


def bench_approval(world: BrokerWorld, runs: int = 5) -> float:
    latencies = []
    for _ in range(runs):
        waiter = world.popen(BOB, *REQUEST)
        rid = None
        while rid is None:
            rows = json.loads(world.run(CAROL, "list", "--pending", "--json").stdout)
            mine = [r for r in rows if r["requester"] == BOB]
            rid = mine[0]["request_id"] if mine else None
        done = world.run(CAROL, "approve", rid, "--yes")
        assert done.returncode == 0, done.stderr
        returned = time.perf_counter()
        out, err = waiter.communicate(timeout=60)
        assert waiter.returncode == 0, err
        latencies.append(time.perf_counter() - returned)
    return statistics.median(latencies)


def bench_concurrent(world: BrokerWorld) -> tuple[int, int, float]:
    """(requests issued, distinct request ids, seconds) for CLIENTS x PER_CLIENT requests."""
    people = [f"load{i}@example.com" for i in range(CLIENTS)]
    for person in people:
        world.user(person)
        world.pd_ids[person] = world.pd.add_user(person)
        on_call(world, person)

    def client(person: str) -> list[str]:
        ids = []
        for _ in range(PER_CLIENT):
            out = world.run(
                person, "request", "prod-readonly", "--reason", "load", "--json", "--fresh"
            )
            assert out.returncode == 0, out.stderr
            ids.append(json.loads(out.stdout)["request_id"])
        return ids

    start = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        ids = [rid for batch in pool.map(client, people) for rid in batch]
    seconds = time.perf_counter() - start
    issued = [r for r in _audit(world) if r["event"] == "issued" and r["request_id"] in set(ids)]
    return len(issued), len(set(ids)), seconds


def _audit(world: BrokerWorld) -> list[dict]:
    path = world.broker_dir / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def main() -> int:
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        certs = make_certs(Path(tmp) / "tls")
        with PagerDutySim(certs) as pd:
            world = BrokerWorld(Path(tmp) / "world", f"http://{host}:{port}", pd)
            world.build()
            with world.serving():
                broker, direct = bench_request(world)
                ratio = broker / direct
                rows.append(
                    (
                        "on-call `jitctl request` through the broker / direct mode",
                        f"{ratio:.2f}x ({broker * 1000:.0f} ms / {direct * 1000:.0f} ms)",
                        "≤ 1.2x",
                        ratio <= 1.2,
                    )
                )
                latency = bench_approval(world)
                rows.append(
                    (
                        "`approve` returning → requester holds credentials, through the broker",
                        f"{latency:.2f} s",
                        "≤ 1.5 s",
                        latency <= 1.5,
                    )
                )
                issued, distinct, seconds = bench_concurrent(world)
                total = CLIENTS * PER_CLIENT
                rows.append(
                    (
                        f"{total} concurrent requests from {CLIENTS} clients",
                        f"{issued} issued once each, {distinct} distinct ids, {seconds:.1f} s",
                        f"= {total}",
                        issued == distinct == total,
                    )
                )
    moto.stop()
    print("| benchmark | measured | budget | ok |")
    print("| --- | --- | --- | --- |")
    for name, value, budget, ok in rows:
        print(f"| {name} | {value} | {budget} | {'yes' if ok else 'NO'} |")
    return 0 if all(ok for *_, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
