"""Lease takeover time, measured: `python -m tests.cluster.takeover [--kills N] [--renew-s S] [--ttl-s S]
[--db URL]` starts three `vigie run --node` processes on six cameras (tests/cluster/test_nodes.py's site),
then N times kills one node with SIGKILL, times until the others hold all its cameras, and restarts it.
Prints each time, the median and the maximum (for bench/ and docs/operations.md; nothing is asserted).
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from runner.register import Register
from tests.cluster import test_nodes as cluster


def measure_takeovers(folder: Path, db: str | None, kills: int, renew_s: float, ttl_s: float) -> list[float]:
    """Kill a node `kills` times (each node in turn) and time each takeover of its cameras.

    Args:
        folder: where the clip, the site file, the logs (and the SQLite register without `db`) go.
        db: the register (a PostgreSQL URL), or None for an SQLite file in `folder`.
        kills: how many kills.
        renew_s: the lease renewal period.
        ttl_s: the lease ttl.

    Returns:
        Seconds from each kill until every camera of the killed node was held by another node.
    """
    cluster.RENEW_S, cluster.TTL_S = renew_s, ttl_s
    site = cluster._site(folder)
    db = db or str(folder / "vigie.db")
    Register(db, folder / "media").close()
    nodes = {name: cluster._start_node(folder, site, db, name) for name in ("n1", "n2", "n3")}
    times = []
    try:
        cluster._split_evenly(db, nodes)
        for kill in range(kills):
            victim = f"n{kill % 3 + 1}"
            cameras = [c for c, owner in cluster._owners(db).items() if owner == victim]
            time.sleep(renew_s * (kill % 4) / 4)  # kills at different points of the renewal period
            nodes[victim].send_signal(signal.SIGKILL)
            nodes[victim].wait()
            _, seconds = cluster._wait_for(
                lambda: all(cluster._owners(db)[c] not in (None, victim) for c in cameras), 4 * ttl_s, "takeover"
            )
            times.append(seconds)
            print(f"kill {kill + 1}: {victim} {sorted(cameras)} taken over in {seconds:.2f} s", flush=True)
            nodes[victim] = cluster._start_node(folder, site, db, victim)
            cluster._split_evenly(db, nodes)
    finally:
        for process in nodes.values():
            process.kill()
    return times


def main(argv: list[str]) -> int:
    """Measure and print.

    Args:
        argv: the command line (see the module's docstring).

    Returns:
        0.
    """
    parser = argparse.ArgumentParser(prog="python -m tests.cluster.takeover")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--renew-s", type=float, default=2.0)
    parser.add_argument("--ttl-s", type=float, default=10.0)
    parser.add_argument("--db", default=None, help="a PostgreSQL URL (default: an SQLite file)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        times = measure_takeovers(Path(folder), args.db, args.kills, args.renew_s, args.ttl_s)
    print(
        f"lease takeover, renew {args.renew_s} s, ttl {args.ttl_s} s, {len(times)} kills: "
        f"median {statistics.median(times):.2f} s, max {max(times):.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
