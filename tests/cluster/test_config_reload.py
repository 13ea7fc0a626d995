"""A new revision of a node's site file reaches the node without a restart by hand (`vigie run --node`).

One real node process (the bright-square detector of node_child.py, an SQLite register, short leases) runs a
camera that raises an alert on every loop of its clip. Its site file is rewritten with a changed detection
threshold: within a few seconds the node's row names the new revision and sha256, the audit log has one
`config_reloaded`, the same PID still runs (re-executed in place), and alerts come under the new sha256. Then
an invalid file: the node keeps running the revision it has, audits one `config_rejected` (one only, even when
the same bytes are written again), `vigie status` shows the refusal, and the node keeps analysing.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from runner.config.loading import load_config
from runner.register import Register
from runner.service.config_watch import RELOAD_TURN_PREFIX, ConfigWatch
from tests.cluster.node_child import CROSSING_RULE
from tests.cluster.test_nodes import CLIP_FPS, CLIP_FRAMES, _alerts, _start_node, _vigie, _wait_for
from tests.helpers import config_dict, make_video, write_config
from tests.runner.service.test_systemd import NotifyListener

pytestmark = pytest.mark.cluster
RELOAD_LIMIT_S = 15.0  # a poll (0.5 s), a settle poll, the stop, the re-executed process's start
NODE = "n1"
STATE_CHANGES = {"READY", "RELOADING", "STOPPING"}  # sd_notify's service state lines


def _node_row(db: str) -> dict:
    with Register(db, create=False, read_only=True) as register:
        (row,) = [n for n in register.leases.nodes() if n["name"] == NODE]
        return row


def _events(db: str, event: str) -> list[dict]:
    with Register(db, create=False, read_only=True) as register:
        rows = register.audit_rows(event=event)
    return [
        dict(row, details=json.loads(row["details"]) if isinstance(row["details"], str) else row["details"])
        for row in rows
    ]


def _site_data(revision: int, person_conf: object) -> dict:
    data = config_dict([CROSSING_RULE], loop=True, process_fps=5)
    data["revision"] = revision
    data["models"]["person"]["conf"] = person_conf
    return data


def test_a_node_reloads_a_new_site_file_in_place_and_refuses_an_invalid_one(tmp_path: Path, capsys, monkeypatch):
    listener = NotifyListener()  # as systemd's socket of a Type=notify unit: a reload is no stop
    monkeypatch.setenv("NOTIFY_SOCKET", listener.name)
    make_video(tmp_path / "clip.avi", CLIP_FRAMES, fps=CLIP_FPS, size=(160, 120))
    site = write_config(tmp_path / "site.yaml", _site_data(1, 0.3))
    first = load_config(site)
    db = str(tmp_path / "vigie.db")
    Register(db).close()
    node = _start_node(tmp_path, site, db, NODE)
    log_file = tmp_path / f"{NODE}.log"
    try:
        _wait_for(lambda: any(a["config_sha256"] == first.sha256 for a in _alerts(db)), 30, "an alert on revision 1")
        assert _node_row(db)["pid"] == node.pid

        # A valid new revision: a changed detection threshold.
        write_config(site, _site_data(2, 0.25))
        second = load_config(site)
        written_at = time.monotonic()
        _, reload_s = _wait_for(
            lambda: _node_row(db)["config_sha256"] == second.sha256 and _node_row(db)["state"] == "running",
            RELOAD_LIMIT_S,
            "the node's row names the new revision",
        )
        row = _node_row(db)
        assert row["config_revision"] == 2
        assert node.poll() is None and row["pid"] == node.pid, "re-executed in place: the same process"
        (reloaded,) = _events(db, "config_reloaded")
        assert reloaded["details"]["old_revision"] == 1 and reloaded["details"]["old_sha256"] == first.sha256
        assert reloaded["details"]["new_revision"] == 2 and reloaded["details"]["new_sha256"] == second.sha256
        stops = [e["details"]["reason"] for e in _events(db, "runner_stopped")]
        assert stops == ["config changed"], stops  # a clean stop (writer drained, leases released) before the exec
        _wait_for(lambda: any(a["config_sha256"] == second.sha256 for a in _alerts(db)), 20, "an alert on revision 2")
        analysing_s = time.monotonic() - written_at

        # An invalid file: refused, audited once per distinct file, the node goes on with revision 2.
        write_config(site, _site_data(3, "high"))
        _wait_for(lambda: _events(db, "config_rejected"), 10, "the invalid file refused")
        last_alert = max(a["id"] for a in _alerts(db))
        write_config(site, _site_data(3, "high"))  # the same bytes again: a new mtime, no new audit row
        _wait_for(
            lambda: any(a["id"] > last_alert and a["config_sha256"] == second.sha256 for a in _alerts(db)),
            20,
            "alerts on revision 2 after the refusal",
        )
        (rejected,) = _events(db, "config_rejected")
        assert rejected["details"]["running_revision"] == 2 and rejected["details"]["problem_count"] >= 1
        assert "models.person.conf" in rejected["details"]["problems"][0]
        assert len(_events(db, "config_reloaded")) == 1
        row = _node_row(db)
        assert (row["config_revision"], row["config_sha256"], row["pid"]) == (2, second.sha256, node.pid)
        assert node.poll() is None
        status = _vigie(tmp_path, "status", "--db", db, log_name="status.log")
        assert status.wait(timeout=60) == 0
        shown = (tmp_path / "status.log").read_text()
        assert "site file REFUSED" in shown and "still on revision 2" in shown, shown

        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=30) == 0, log_file.read_text()[-3000:]
        listener.drain()
    finally:
        if node.poll() is None:
            node.kill()
        listener.close()
    said = [line for m in listener.messages for line in m.splitlines() if line.split("=")[0] in STATE_CHANGES]
    assert said == ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"], said
    refused_lines = [
        line for line in log_file.read_text().splitlines() if "new site file" in line and "refused" in line
    ]
    assert len(refused_lines) == 1 and "models.person.conf" in refused_lines[0], refused_lines
    verify = _vigie(tmp_path, "audit", "verify", "--db", db, log_name="verify.log")
    assert verify.wait(timeout=60) == 0, (tmp_path / "verify.log").read_text()
    with capsys.disabled():
        print(
            f"\n[reload] SQLite, 1 node, renew 0.5 s, ttl 3 s: new revision in the node's row {reload_s:.1f} s after "
            f"the write, an alert on it after {analysing_s:.1f} s, same PID {node.pid}"
        )


def test_nodes_sharing_one_site_file_reload_one_at_a_time(tmp_path: Path, capsys):
    """Three nodes on one site file (a shared zones folder): each reloads the new revision in turn, never two at
    once (from the audit log: no node's `config_reloaded` between another's and its `node_started` again)."""
    make_video(tmp_path / "clip.avi", CLIP_FRAMES, fps=CLIP_FPS, size=(160, 120))
    data = _site_data(1, 0.3)
    data["cameras"] = [dict(data["cameras"][0], id=f"cam-{i}") for i in (1, 2, 3)]
    site = write_config(tmp_path / "site.yaml", data)
    db = str(tmp_path / "vigie.db")
    Register(db).close()
    names = ("n1", "n2", "n3")
    nodes = {name: _start_node(tmp_path, site, db, name) for name in names}

    def rows() -> dict[str, dict]:
        with Register(db, create=False, read_only=True) as register:
            return {n["name"]: n for n in register.leases.nodes()}

    try:
        _wait_for(lambda: len(rows()) == 3 and all(n["alive"] for n in rows().values()), 60, "three nodes running")
        data["revision"] = 2
        write_config(site, data)
        new_sha256 = load_config(site).sha256
        _, all_s = _wait_for(
            lambda: all(n["alive"] and n["config_sha256"] == new_sha256 for n in rows().values()) and len(rows()) == 3,
            45,
            "every node on the new revision",
        )
        assert {name: row["pid"] for name, row in rows().items()} == {name: p.pid for name, p in nodes.items()}
        for process in nodes.values():
            process.send_signal(signal.SIGTERM)
        for name, process in nodes.items():
            assert process.wait(timeout=30) == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
    finally:
        for process in nodes.values():
            if process.poll() is None:
                process.kill()
    with Register(db, create=False, read_only=True) as register:
        events = [
            (
                row["event"],
                row["actor"],
                json.loads(row["details"]) if isinstance(row["details"], str) else row["details"],
            )
            for row in register.audit_rows()
        ]
    reloading: str | None = None  # the node between its `config_reloaded` and its `node_started` again
    order = []
    for event, actor, details in events:
        if event == "config_reloaded":
            assert reloading is None, f"{details['node']} reloaded while {reloading} was reloading"
            reloading = details["node"]
            order.append(reloading)
        elif event == "node_started" and actor == reloading:
            reloading = None
    assert sorted(order) == list(names) and reloading is None, order
    with capsys.disabled():
        print(
            f"\n[reload] SQLite, 3 nodes on one site file: all on the new revision {all_s:.1f} s after the write, "
            f"one at a time: {order}"
        )


# -- the watch itself, in process (a real SQLite register, no node) -------------------------------------
@pytest.fixture(params=["sqlite", "postgresql"])
def watched(request, tmp_path: Path):
    """A site file, a register (SQLite, or PostgreSQL: the reload turn's SQL runs on both) and n1's watch."""
    site = write_config(tmp_path / "site.yaml", _site_data(1, 0.3))
    db = str(tmp_path / "vigie.db") if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    with Register(db, tmp_path / "media") as register:
        yield site, register, ConfigWatch(load_config(site), register, "n1", "runner")


def _rewrite(site: Path, data: dict) -> None:
    """Write the file with a new mtime even on a coarse-clock file system."""
    before = site.stat().st_mtime_ns
    write_config(site, data)
    os.utime(site, ns=(before + 1_000_000_000, before + 1_000_000_000))


def test_a_new_file_is_read_once_it_held_still_for_one_poll_and_a_touch_is_no_revision(watched):
    site, register, watch = watched
    assert watch.poll() is None
    _rewrite(site, _site_data(1, 0.3))  # the same bytes, a new mtime: no reload, no audit
    assert watch.poll() is None and watch.poll() is None
    _rewrite(site, _site_data(2, 0.25))
    assert watch.poll() is None, "changed since the last poll: maybe still being written"
    reloaded = watch.poll()
    assert reloaded is not None and reloaded.config.revision == 2
    assert [r["event"] for r in register.audit_rows(event="config_reloaded")] == ["config_reloaded"]


def test_a_node_waits_for_the_reload_turn_another_node_holds_and_goes_once_it_is_handed_back(watched):
    site, register, watch = watched
    later = ConfigWatch(load_config(site), register, "n2", "runner")
    _rewrite(site, _site_data(2, 0.25))
    assert watch.poll() is None and later.poll() is None
    assert watch.poll() is not None  # n1 takes the turn and reloads
    assert later.poll() is None and later.poll() is None, "n2 waits while n1 reloads"
    restarted = ConfigWatch(load_config(site), register, "n1", "runner")  # n1 runs again: its first poll hands it back
    assert restarted.poll() is None
    reloaded = later.poll()
    assert reloaded is not None and reloaded.config.revision == 2
    assert [json.loads(r["details"])["node"] for r in register.audit_rows(event="config_reloaded")] == ["n1", "n2"]


def test_a_turn_never_handed_back_lapses(watched):
    site, register, watch = watched
    register.set_meta(RELOAD_TURN_PREFIX + "test-site", "2000-01-01T00:00:00.000+00:00|n9")  # n9 died restarting
    _rewrite(site, _site_data(2, 0.25))
    assert watch.poll() is None
    assert watch.poll() is not None
