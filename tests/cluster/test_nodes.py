"""Three `vigie run --node` processes share one site of six cameras on one register; one is killed with
SIGKILL: its cameras resume on the others within 15 s, two nodes never analyse one camera at once (the
alerts' node and fencing token, and the lease history in the audit log, say so), the alerts are those of a
single-node run of the same clip, and `vigie audit verify` passes.

The cameras loop a short clip of a bright square crossing a tripwire (one alert per loop, always on the same
frame); the person model is a detector of that square (tests/cluster/node_child.py), so that three nodes fit
on two cores. Leases are short (renewed every 0.5 s, expiring after 3 s) to keep the test short. The
figures (takeover time, alerts per node) are printed, for docs/operations.md.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest

from runner.register import Register
from tests.cluster.node_child import CROSSING_RULE
from tests.helpers import config_dict, make_video, write_config

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]
CAMERAS = [f"cam-{i}" for i in range(1, 7)]
CLIP_FRAMES, CLIP_FPS = 40, 10  # a 4 s loop: the square crosses the tripwire once per loop
RENEW_S, TTL_S = 0.5, 3.0
TAKEOVER_LIMIT_S = 15.0


def _site(folder: Path) -> Path:
    make_video(folder / "clip.avi", CLIP_FRAMES, fps=CLIP_FPS, size=(160, 120))
    data = config_dict([CROSSING_RULE], loop=True, process_fps=5)
    data["cameras"] = [dict(data["cameras"][0], id=camera) for camera in CAMERAS]
    return write_config(folder / "site.yaml", data)


def _vigie(folder: Path, *argv: str, log_name: str) -> subprocess.Popen:
    """The real `vigie` command line (with the bright-square detector), its output in a log file."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    log = open(folder / log_name, "w")  # noqa: SIM115 - closed with the process, by the test's end
    return subprocess.Popen(
        [sys.executable, "-m", "tests.cluster.node_child", *argv], cwd=folder, env=env, stdout=log, stderr=log
    )


def _start_node(folder: Path, site: Path, db: str, name: str) -> subprocess.Popen:
    lease = ["--lease-renew-s", str(RENEW_S), "--lease-ttl-s", str(TTL_S)]
    return _vigie(folder, "run", str(site), "--db", db, "--node", name, *lease, log_name=f"{name}.log")


def _owners(db: str) -> dict[str, str | None]:
    """Camera -> the node holding its lease now (None: free or expired), read as `vigie status` reads it."""
    with Register(db, create=False, read_only=True) as register:
        return {
            row["camera_id"]: row["node"] if row["node"] and row["expires_utc"] > row["now_utc"] else None
            for row in register.leases.leases()
            if row["camera_id"] in CAMERAS
        }


def _wait_for(check: Callable[[], object], timeout_s: float, what: str) -> tuple[object, float]:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            value = check()
        except Exception:  # a register being created or written: try again
            value = None
        if value:
            return value, time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout_s} s: {what}")


def _alerts(db: str) -> list[dict]:
    with Register(db, create=False, read_only=True) as register:
        return register.alerts()


def _reference_positions(folder: Path, site: Path) -> set[int]:
    """The clip's frames that raise an alert in a single-node run (`vigie replay`, the same pipeline)."""
    replay = _vigie(folder, "replay", str(site), "--camera", CAMERAS[0], "--json", "--db", "ref.db", log_name="ref.log")
    assert replay.wait(timeout=120) == 0, (folder / "ref.log").read_text()[-2000:]
    positions = {a["frame_index"] % CLIP_FRAMES for a in _alerts(str(folder / "ref.db"))}
    assert positions, "the single-node run raised no alert: the clip or the detector changed"
    return positions


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path) -> str:
    """The shared register: one SQLite file (the nodes of one machine), or a PostgreSQL database."""
    if request.param == "sqlite":
        path = str(tmp_path / "vigie.db")
        Register(path).close()
        return path
    url = request.getfixturevalue("postgres_url")
    Register(url, tmp_path / "media").close()
    return url


def _split_evenly(db: str, nodes: dict) -> tuple[dict[str, str | None], float]:
    def even() -> dict[str, str | None] | None:
        owners = _owners(db)
        return owners if sorted(list(owners.values()).count(n) for n in nodes) == [2, 2, 2] else None

    split, split_s = _wait_for(even, 90, "the nodes split the six cameras 2/2/2")
    return cast(dict, split), split_s


def test_three_nodes_share_six_cameras_and_take_over_a_killed_one(db: str, tmp_path: Path, capsys):
    site = _site(tmp_path)
    reference = _reference_positions(tmp_path, site)
    nodes = {name: _start_node(tmp_path, site, db, name) for name in ("n1", "n2", "n3")}
    try:
        split, split_s = _split_evenly(db, nodes)
        victim = "n2"
        victim_cameras = sorted(c for c, owner in split.items() if owner == victim)
        _wait_for(
            lambda: {a["camera_id"] for a in _alerts(db) if a["node"] == victim} >= set(victim_cameras),
            30,
            f"alerts of {victim} on each of its cameras",
        )
        pause_s = _pause_and_resume_reach_every_node(tmp_path, db)
        last_id_before_kill = max(a["id"] for a in _alerts(db))
        killed_at = time.monotonic()
        nodes[victim].send_signal(signal.SIGKILL)
        nodes[victim].wait(timeout=10)
        _, takeover_s = _wait_for(
            lambda: all(_owners(db)[c] not in (None, victim) for c in victim_cameras),
            TAKEOVER_LIMIT_S + 5,
            f"the other nodes take {victim}'s cameras",
        )
        _wait_for(
            lambda: {a["camera_id"] for a in _alerts(db) if a["id"] > last_id_before_kill} >= set(victim_cameras),
            30,
            "alerts again on the killed node's cameras",
        )
        resumed_s = time.monotonic() - killed_at
        for name, process in nodes.items():
            if name != victim:
                process.send_signal(signal.SIGTERM)
        for name, process in nodes.items():
            assert process.wait(timeout=30) in (0, -signal.SIGKILL), (tmp_path / f"{name}.log").read_text()[-3000:]
    finally:
        for process in nodes.values():
            if process.poll() is None:
                process.kill()
    assert takeover_s < TAKEOVER_LIMIT_S
    verify = _vigie(tmp_path, "audit", "verify", "--db", db, log_name="verify.log")
    assert verify.wait(timeout=60) == 0, (tmp_path / "verify.log").read_text()
    alerts = _alerts(db)
    _never_two_owners_at_once(db, alerts)
    # The same events as a single node: every alert on one of the reference frames, at most one per loop.
    assert {a["frame_index"] % CLIP_FRAMES for a in alerts} <= reference
    for camera in CAMERAS:
        mine = sorted((a for a in alerts if a["camera_id"] == camera), key=lambda a: a["id"])
        for before, after in zip(mine, mine[1:]):
            if before["lease_token"] == after["lease_token"]:  # one owner: at most one alert per loop of the clip
                gap = after["frame_index"] - before["frame_index"]  # more than one loop: the pause above
                assert gap > 0 and gap % CLIP_FRAMES == 0, (camera, before, after)
    with capsys.disabled():
        per_node = {n: sum(1 for a in alerts if a["node"] == n) for n in nodes}
        print(
            f"\n[cluster] {_backend(db)}: 3 nodes, 6 cameras, renew {RENEW_S} s, ttl {TTL_S} s: "
            f"split 2/2/2 after {split_s:.1f} s; "
            f"kill -9 {victim}: its cameras {victim_cameras} taken over in {takeover_s:.1f} s, alerts again on "
            f"them after {resumed_s:.1f} s; alerts per node {per_node}; `vigie pause` applied on all 6 cameras "
            f"by their 3 nodes within {pause_s:.1f} s"
        )


def _pause_and_resume_reach_every_node(folder: Path, db: str) -> float:
    """`vigie pause` (everything) then `vigie resume`: every camera's owner applies each (its audit row)."""

    def applied(event: str, after: int) -> set[str]:
        with Register(db, create=False, read_only=True) as register:
            return {r["camera_id"] for r in register.audit_rows(event=event) if r["id"] > after}

    def command(verb: str) -> int:
        """Runs it; returns the newest audit row before it (the nodes apply it before the command has exited)."""
        with Register(db, create=False, read_only=True) as register:
            before = register.audit_rows(limit=1)[0]["id"]
        process = _vigie(folder, verb, "--db", db, "--user", "alice", "--role", "operator", log_name=f"{verb}.log")
        assert process.wait(timeout=60) == 0, (folder / f"{verb}.log").read_text()
        return before

    paused_at = command("pause")
    _wait_for(lambda: applied("pause_applied", paused_at) >= set(CAMERAS), 10, "pause applied")
    with Register(db, create=False, read_only=True) as register:
        rows = [r for r in register.audit_rows(event="pause_applied") if r["id"] > paused_at]
    resumed_at = command("resume")
    _wait_for(lambda: applied("resume_applied", resumed_at) >= set(CAMERAS), 10, "resume applied")
    return max(json.loads(r["details"])["latency_s"] for r in rows)  # from the pause's row to each node's


def _never_two_owners_at_once(db: str, alerts: list[dict]) -> None:
    """Each alert names its camera's owner and token; per camera, in commit order, the tokens never go back
    (an old owner never stored an alert after a new one took over), and each token is the one node's that
    the audit log says acquired it."""
    with Register(db, create=False, read_only=True) as register:
        acquired = {
            (details["lease"], details["token"]): row["actor"]
            for row in register.audit_rows(event="lease_acquired")
            for details in [json.loads(row["details"]) if isinstance(row["details"], str) else row["details"]]
        }
    for camera in CAMERAS:
        mine = sorted((a for a in alerts if a["camera_id"] == camera), key=lambda a: a["id"])
        assert mine, f"no alert on {camera}"
        tokens = [a["lease_token"] for a in mine]
        assert tokens == sorted(tokens), f"{camera}: an alert under an older lease after a newer one: {tokens}"
        for alert in mine:
            assert acquired[(camera, alert["lease_token"])] == alert["node"], alert


def _backend(db: str) -> str:
    return "PostgreSQL" if "://" in db else "SQLite"


def test_the_database_restarted_under_load_loses_nothing(postgres_server, tmp_path: Path, capsys):
    """PostgreSQL stopped for longer than a lease's ttl while three nodes store alerts: the nodes stop their
    cameras, keep the alerts raised meanwhile, reconnect, take their cameras back (under the same token when
    nobody took them), store every alert held back, and the register verifies."""
    url = postgres_server.create_database()
    Register(url, tmp_path / "media").close()
    site = _site(tmp_path)
    nodes = {name: _start_node(tmp_path, site, url, name) for name in ("n1", "n2", "n3")}
    try:
        _split_evenly(url, nodes)
        _wait_for(lambda: {a["camera_id"] for a in _alerts(url)} >= set(CAMERAS), 30, "alerts on every camera")
        before = max(a["id"] for a in _alerts(url))
        postgres_server.stop()
        time.sleep(TTL_S + 2.0)  # every lease runs out on its node: the cameras stop
        postgres_server.start()
        restarted_at = time.monotonic()
        _, back_s = _wait_for(lambda: all(_owners(url).values()) and len(_owners(url)) == 6, 30, "cameras held again")
        _wait_for(
            lambda: {a["camera_id"] for a in _alerts(url) if a["id"] > before} >= set(CAMERAS),
            30,
            "alerts again on every camera after the restart",
        )
        resumed_s = time.monotonic() - restarted_at
        for process in nodes.values():
            assert process.poll() is None, "a node exited when the database went away"
            process.send_signal(signal.SIGTERM)
        for name, process in nodes.items():
            assert process.wait(timeout=30) == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
    finally:
        for process in nodes.values():
            if process.poll() is None:
                process.kill()
    verify = _vigie(tmp_path, "audit", "verify", "--db", url, log_name="verify.log")
    assert verify.wait(timeout=60) == 0, (tmp_path / "verify.log").read_text()
    alerts = _alerts(url)
    _never_two_owners_at_once(url, alerts)
    with Register(url, tmp_path / "media", create=False, read_only=True) as register:
        fenced = register.audit_rows(event="alert_fenced")
    logs = "".join((tmp_path / f"{name}.log").read_text() for name in nodes)
    assert "given up" not in logs  # the writers kept every alert raised during the outage
    # ... and stored them: each node renewed its own leases under the same tokens before anyone took them
    assert fenced == [], fenced
    with capsys.disabled():
        print(
            f"\n[cluster] PostgreSQL stopped {TTL_S + 2.0:.0f} s under 3 nodes: cameras held again "
            f"{back_s:.1f} s and alerts on all 6 cameras {resumed_s:.1f} s after it restarted; "
            f"{len(alerts)} alerts, {len(fenced)} refused to a node that lost its lease"
        )


def test_a_hung_node_woken_up_stores_nothing_under_the_leases_it_lost(tmp_path: Path, capsys):
    """SIGSTOP one node for twice the ttl: the others take its cameras; woken up (SIGCONT), it stops them at
    once, and whatever it had raised is refused (`alert_fenced`), never stored beside the new owners' alerts."""
    db = str(tmp_path / "vigie.db")
    Register(db).close()
    site = _site(tmp_path)
    nodes = {name: _start_node(tmp_path, site, db, name) for name in ("n1", "n2", "n3")}
    hung = "n3"
    try:
        split, _ = _split_evenly(db, nodes)
        hung_cameras = sorted(c for c, owner in split.items() if owner == hung)
        _wait_for(lambda: {a["camera_id"] for a in _alerts(db)} >= set(CAMERAS), 30, "alerts on every camera")
        nodes[hung].send_signal(signal.SIGSTOP)
        _, takeover_s = _wait_for(
            lambda: all(_owners(db)[c] not in (None, hung) for c in hung_cameras), 20, "its cameras taken over"
        )
        time.sleep(TTL_S)
        nodes[hung].send_signal(signal.SIGCONT)
        _wait_for(lambda: "taken over" in (tmp_path / f"{hung}.log").read_text(), 10, "the woken node notices")
        time.sleep(2 * TTL_S)  # it may take cameras again, under new tokens, once the others give them back
        for process in nodes.values():
            process.send_signal(signal.SIGTERM)
        for name, process in nodes.items():
            assert process.wait(timeout=30) == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
    finally:
        for process in nodes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.kill()
    verify = _vigie(tmp_path, "audit", "verify", "--db", db, log_name="verify.log")
    assert verify.wait(timeout=60) == 0, (tmp_path / "verify.log").read_text()
    alerts = _alerts(db)
    _never_two_owners_at_once(db, alerts)
    with Register(db, create=False, read_only=True) as register:
        fenced = [json.loads(r["details"]) for r in register.audit_rows(event="alert_fenced")]
    woken_log = (tmp_path / f"{hung}.log").read_text()
    for camera in hung_cameras:  # stopped by the node itself once awake, not only refused by the register
        assert f"camera {camera} stopped on node {hung}" in woken_log
    with capsys.disabled():
        print(
            f"\n[cluster] SQLite: node {hung} stopped (SIGSTOP) with {hung_cameras}: taken over in {takeover_s:.1f} s; "
            f"woken up, it stopped them; {len(fenced)} of its alerts refused (alert_fenced)"
        )
