"""The command line of nodes: `vigie run --node` options refused in one line before anything loads, and
`vigie status` (text and `--json`) listing the nodes and the camera leases."""

from __future__ import annotations

import json

import pytest

from runner.cli import main as vigie
from runner.register import Register
from runner.register.leases import PURGE_DUTY


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-cameras", "2"], "vigie: --max-cameras is an option of a node: add --node NAME\n"),
        (
            ["--node", "n1", "--lease-renew-s", "2", "--lease-ttl-s", "3"],
            "vigie: --lease-ttl-s (3.0 s) must be more than twice --lease-renew-s (2.0 s)\n",
        ),
        (["--node", "n 1"], "vigie: --node: a name of 1 to 64 characters without spaces, not 'n 1'\n"),
    ],
)
def test_bad_node_options_are_refused_in_one_line(tmp_path, capsys, argv, message):
    code = vigie(["run", str(tmp_path / "missing.yaml"), "--db", str(tmp_path / "vigie.db"), *argv])
    assert (code, capsys.readouterr().err) == (2, message)
    assert not (tmp_path / "vigie.db").exists()  # refused before the register is opened


def test_status_lists_nodes_and_leases(tmp_path, capsys):
    db = str(tmp_path / "vigie.db")
    with Register(db) as register:
        register.leases.join("n1", "demo", 3, pid=11, host="host-a", ttl_s=600, config=(4, "c" * 64))
        register.leases.join("n2", "demo", 3, pid=12, host="host-b", ttl_s=600, config=(4, "c" * 64))
        register.leases.acquire("demo", "cam-1", "n1", ttl_s=600)
        register.leases.acquire("demo", "cam-2", "n2", ttl_s=600)
        register.leases.acquire("demo", PURGE_DUTY, "n2", ttl_s=600)
        register.leases.leave("n2")
        register.set_health("cam-1", "ok", "running on node n1 (lease 1)")
    assert vigie(["status", "--db", db, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    nodes = {n["name"]: n for n in status["nodes"]}
    assert nodes["n1"]["alive"] and nodes["n1"]["cameras"] == ["cam-1"] and nodes["n1"]["capacity"] == 3
    assert not nodes["n2"]["alive"] and nodes["n2"]["state"] == "stopped" and nodes["n2"]["cameras"] == []
    cameras = {c["camera"]: c for c in status["cameras"]}
    assert (cameras["cam-1"]["owner"], cameras["cam-1"]["token"], cameras["cam-1"]["health"]) == ("n1", 1, "ok")
    assert cameras["cam-1"]["lease_age_s"] >= 0 and cameras["cam-2"]["owner"] is None
    assert [(d["camera"], d["owner"]) for d in status["duties"]] == [(PURGE_DUTY, None)]
    assert vigie(["status", "--db", db]) == 0
    text = capsys.readouterr().out
    assert (
        "nodes:\n  n1           alive   heartbeat" in text and "cameras 1/3  cam-1  (config revision 4, host-a)" in text
    )
    assert "  n2           stopped" in text
    assert "  cam-1            n1           token 1" in text and "  cam-2            (free)       token 1" in text
