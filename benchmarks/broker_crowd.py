"""A normal call to `jitctl broker serve` while a crowd of idle and slow sockets is open.

    python -m benchmarks.broker_crowd     # exits 1 if the slowest call takes 2 s or more

Opens IDLE connections that never send a byte and SLOW ones that sent part of a request's
headers and stall (loopback only), then times signed `whoami` calls, against the same calls
with no crowd. The bound (2 s) is issue 20's; waitress's old connection limit (100) made the
call wait until idle sockets timed out (~150 s).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from tests.broker_world import BrokerWorld, crowd
from tests.pdsim import PagerDutySim, make_certs
from tests.test_broker_hardening import timed_whoami

IDLE, SLOW, CALLS, BOUND = 200, 20, 10, 2.0


def calls(world: BrokerWorld) -> list[float]:
    timings = []
    for _ in range(CALLS):
        status, seconds = timed_whoami(world)
        timings.append(seconds if status == 200 else float("inf"))
    return timings


def main() -> int:
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    with tempfile.TemporaryDirectory() as tmp:
        certs = make_certs(Path(tmp) / "tls")
        with PagerDutySim(certs) as pd:
            world = BrokerWorld(Path(tmp) / "world", f"http://{host}:{port}", pd)
            world.build()
            with world.serving():
                alone = calls(world)
                with crowd(world.url, idle=IDLE, slow=SLOW):
                    crowded = calls(world)
    moto.stop()
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {CALLS} signed whoami calls each")
    print("| broker serve | median | slowest | bound |")
    print("| --- | --- | --- | --- |")
    for name, timings in (("alone", alone), (f"{IDLE} idle + {SLOW} slow sockets", crowded)):
        median, slowest = statistics.median(timings), max(timings)
        print(f"| {name} | {median * 1000:.0f} ms | {slowest * 1000:.0f} ms | < {BOUND:g} s |")
    return 0 if max(crowded) < BOUND else 1


if __name__ == "__main__":
    sys.exit(main())
