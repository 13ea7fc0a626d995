"""Three real `vigie run --node` processes, the real COCO detector, six cameras looping a real clip (PETS 2009,
Debian's opencv-doc sample) with the demo's rules: the nodes split the cameras, one is killed with SIGKILL,
the others take its cameras within 15 s and raise alerts on them again, no camera ever had two owners (the
alerts' fencing tokens and the lease history), and `vigie audit verify` passes.

tests/cluster/test_nodes.py checks the same on a synthetic clip with a detector of its bright square, where the
alerts can be compared frame by frame with a single-node run; this one checks it on real footage and models,
live (frames are dropped when the two cores cannot keep up, so the alerts are not compared one by one).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from runner.register import Register
from tests.cluster.test_nodes import (
    CAMERAS,
    TAKEOVER_LIMIT_S,
    _alerts,
    _never_two_owners_at_once,
    _owners,
    _split_evenly,
    _wait_for,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.data]
ROOT = Path(__file__).resolve().parents[2]
PETS = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
COCO = Path(os.environ.get("VIGIE_SHARED_DATA", ROOT.parent / "shared" / "data")) / "models/yolo11n_int8_openvino_model"
RENEW_S, TTL_S = 0.5, 3.0


def _site(folder: Path) -> Path:
    """The demo site's camera, its zones and rules, six times over the looping clip, on the COCO detector."""
    demo = yaml.safe_load((ROOT / "zones/demo/site.yaml").read_text())
    camera = dict(demo["cameras"][0], source=str(PETS), loop=True, process_fps=3)
    demo["models"] = {"person": {"weights": str(COCO), "imgsz": 640, "conf": 0.3, "task": "detect"}}
    demo["cameras"] = [dict(camera, id=cid, name=f"PETS {cid}") for cid in CAMERAS]
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(demo, sort_keys=False))
    return path


def _vigie(folder: Path, *argv: str, log_name: str) -> subprocess.Popen:
    """The installed `vigie` command, its output in a log file."""
    log = open(folder / log_name, "w")  # noqa: SIM115 - closed with the process, by the test's end
    vigie = Path(sys.executable).parent / "vigie"
    return subprocess.Popen([str(vigie), *argv], cwd=folder, env=dict(os.environ), stdout=log, stderr=log)


def _start_node(folder: Path, site: Path, db: str, name: str) -> subprocess.Popen:
    lease = ["--lease-renew-s", str(RENEW_S), "--lease-ttl-s", str(TTL_S)]
    return _vigie(folder, "run", str(site), "--db", db, "--node", name, *lease, log_name=f"{name}.log")


@pytest.mark.skipif(not PETS.exists(), reason="the PETS clip comes with Debian's opencv-doc (make test installs it)")
@pytest.mark.skipif(not COCO.exists(), reason="the COCO detector is in ../shared/data/models only")
def test_three_real_nodes_on_real_footage_take_over_a_killed_one(tmp_path: Path, capsys):
    db = str(tmp_path / "vigie.db")
    Register(db).close()
    site = _site(tmp_path)
    nodes = {name: _start_node(tmp_path, site, db, name) for name in ("n1", "n2", "n3")}
    victim = "n2"
    try:
        owners, split_s = _split_evenly(db, nodes)
        victim_cameras = sorted(c for c, owner in owners.items() if owner == victim)
        _wait_for(
            lambda: {a["camera_id"] for a in _alerts(db) if a["node"] == victim} >= set(victim_cameras),
            90,
            f"alerts of {victim} on each of its cameras",
        )
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
            90,
            "alerts again on the killed node's cameras",
        )
        resumed_s = time.monotonic() - killed_at
        for name, process in nodes.items():
            if name != victim:
                process.send_signal(signal.SIGTERM)
        for name, process in nodes.items():
            assert process.wait(timeout=60) in (0, -signal.SIGKILL), (tmp_path / f"{name}.log").read_text()[-3000:]
    finally:
        for process in nodes.values():
            if process.poll() is None:
                process.kill()
    assert takeover_s < TAKEOVER_LIMIT_S
    verify = _vigie(tmp_path, "audit", "verify", "--db", db, log_name="verify.log")
    assert verify.wait(timeout=120) == 0, (tmp_path / "verify.log").read_text()
    alerts = _alerts(db)
    _never_two_owners_at_once(db, alerts)
    with capsys.disabled():
        kinds = sorted({a["kind"] for a in alerts})
        print(
            f"\n[cluster, real] 3 nodes, COCO INT8, 6 cameras looping PETS: split 2/2/2 after {split_s:.1f} s; "
            f"kill -9 {victim}: its cameras taken over in {takeover_s:.1f} s, alerts again on them after "
            f"{resumed_s:.1f} s; {len(alerts)} alerts ({', '.join(kinds)})"
        )
