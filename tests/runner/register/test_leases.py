"""Camera leases (runner/register/leases.py): take, renew, expiry and takeover with a larger token, renewal
refused after a takeover, release, and the fencing of alerts; several processes racing for one camera.

On SQLite, and on PostgreSQL (marked `postgres`: it starts a server, tests/servers/postgres.py).
"""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import pytest

from runner.core.errors import UsageError
from runner.register import Register
from runner.register.leases import PURGE_DUTY, LeaseLost
from tests.helpers import alert_record, tiny_jpeg

SITE = "demo"
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def db(request, tmp_path) -> str:
    """Where the register lives: an SQLite file, or a fresh database of the session's PostgreSQL server."""
    if request.param == "sqlite":
        return str(tmp_path / "vigie.db")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def register(db, tmp_path):
    with Register(db, tmp_path / "media") as reg:
        yield reg


def test_a_free_camera_is_taken_with_token_one_and_not_twice(register):
    first = register.leases.acquire(SITE, "cam1", "n1", ttl_s=10)
    assert first is not None and first.token == 1 and first.node == "n1"
    assert register.leases.acquire(SITE, "cam1", "n2", ttl_s=10) is None
    assert register.leases.acquire(SITE, "cam1", "n1", ttl_s=10) is None  # held: even its owner waits for expiry
    rows = register.leases.leases(SITE)
    assert [(r["camera_id"], r["node"], r["token"]) for r in rows] == [("cam1", "n1", 1)]


def test_renewal_extends_until_another_node_takes_over_after_expiry(register):
    lease = register.leases.acquire(SITE, "cam1", "n1", ttl_s=0.3)
    renewed = register.leases.renew(lease, ttl_s=0.3)
    assert renewed is not None and renewed.expires_utc >= lease.expires_utc and renewed.token == lease.token
    assert register.leases.acquire(SITE, "cam1", "n2", ttl_s=10) is None
    time.sleep(0.4)  # no renewal: expired
    stolen = register.leases.acquire(SITE, "cam1", "n2", ttl_s=10)
    assert stolen is not None and stolen.token == lease.token + 1 and stolen.node == "n2"
    assert register.leases.renew(renewed, ttl_s=10) is None  # the old owner's renewal is refused for good
    assert register.leases.release(renewed) is False  # and it cannot free the new owner's lease
    assert register.leases.renew(stolen, ttl_s=10) is not None


def test_release_frees_at_once_and_the_next_owner_gets_a_larger_token(register):
    lease = register.leases.acquire(SITE, "cam1", "n1", ttl_s=60)
    assert register.leases.release(lease, "rebalanced") is True
    assert register.leases.leases(SITE, live_only=True) == []
    again = register.leases.acquire(SITE, "cam1", "n2", ttl_s=60)
    assert again is not None and again.token == 2
    events = [(r["event"], r["actor"]) for r in register.audit_rows() if r["event"].startswith("lease_")]
    assert events == [("lease_acquired", "n1"), ("lease_released", "n1"), ("lease_acquired", "n2")]


def test_free_for_leaves_a_freshly_released_camera_to_the_others(register):
    lease = register.leases.acquire(SITE, "cam1", "n1", ttl_s=60)
    register.leases.release(lease)
    assert register.leases.acquire(SITE, "cam1", "n1", ttl_s=60, free_for_s=30) is None
    assert register.leases.acquire(SITE, "cam1", "n2", ttl_s=60) is not None


def test_duties_are_leases_too_and_do_not_count_as_cameras(register):
    register.leases.join("n1", SITE, 4, pid=1, host="h", ttl_s=10)
    assert register.leases.acquire(SITE, PURGE_DUTY, "n1", ttl_s=60) is not None
    assert register.leases.acquire(SITE, "cam1", "n1", ttl_s=60) is not None
    assert register.leases.acquire(SITE, PURGE_DUTY, "n2", ttl_s=60) is None
    (node,) = register.leases.nodes(SITE)
    assert node["cameras"] == ["cam1"] and node["capacity"] == 4 and node["state"] == "running"


def test_a_node_leaving_frees_its_leases(register):
    register.leases.join("n1", SITE, 2, pid=1, host="h", ttl_s=10)
    register.leases.acquire(SITE, "cam1", "n1", ttl_s=60)
    register.leases.leave("n1")
    assert register.leases.nodes(SITE)[0]["state"] == "stopped"
    assert register.leases.acquire(SITE, "cam1", "n2", ttl_s=60).token == 2


def test_a_node_needs_room_for_one_camera(register):
    with pytest.raises(UsageError, match="capacity must be at least 1"):
        register.leases.join("n1", SITE, 0, pid=1, host="h", ttl_s=10)


def test_alerts_carry_their_owner_and_are_refused_once_the_lease_is_lost(register):
    lease = register.leases.acquire(SITE, "cam1", "n1", ttl_s=0.3)
    owned = register.owned_by(lease)
    stored = owned.add_alert(alert_record(site=SITE, camera_id="cam1", uid="a1"), tiny_jpeg())
    row = register.alert(stored.id)
    assert (row["node"], row["lease_token"]) == ("n1", 1)
    time.sleep(0.4)
    assert register.leases.acquire(SITE, "cam1", "n2", ttl_s=60) is not None
    with pytest.raises(LeaseLost, match="no longer holds the camera under token 1"):
        owned.add_alert(alert_record(site=SITE, camera_id="cam1", uid="a2"), tiny_jpeg())
    assert [a["uid"] for a in register.alerts()] == ["a1"]
    fenced = register.audit_rows(event="alert_fenced")
    details = [(r["actor"], json.loads(r["details"])) for r in fenced]
    assert [(actor, d["uid"], d["token"]) for actor, d in details] == [("n1", "a2", 1)]
    assert len(list(register.media_dir.rglob("*.jpg"))) == 1  # the refused alert's image is not kept
    report = register.verify()
    assert report.ok, report.problem


def test_a_single_runner_keeps_the_digest_of_before_schema_7(register):
    stored = register.add_alert(alert_record(uid="plain"))
    row = register.alert(stored.id)
    assert row["node"] is None and row["lease_token"] is None
    assert register.verify().ok


def test_the_owner_of_an_alert_is_covered_by_its_digest(tmp_path, raw):
    register = Register(tmp_path / "tampered.db")
    lease = register.leases.acquire(SITE, "cam1", "n1", ttl_s=60)
    register.owned_by(lease).add_alert(alert_record(site=SITE, camera_id="cam1", uid="a1"))
    raw(register).execute("UPDATE alerts SET node = 'n2'")
    report = register.verify()
    assert not report.ok and "differs from its audit record" in report.problem


def _race(db: str, media: Path, node: str, start_at: float, results) -> None:
    with Register(db, media) as register:
        time.sleep(max(0.0, start_at - time.time()))
        lease = register.leases.acquire(SITE, "cam1", node, ttl_s=60)
        results.put((node, lease.token if lease else None))


def test_of_eight_processes_racing_for_one_camera_exactly_one_wins(db: str, tmp_path: Path):
    Register(db, tmp_path / "media").close()
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    start_at = time.time() + 3.0  # every process imported and opened by then
    processes = [
        context.Process(target=_race, args=(db, tmp_path / "media", f"n{i}", start_at, results)) for i in range(8)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=10)
    winners = [(node, token) for node, token in outcomes if token is not None]
    assert len(winners) == 1 and winners[0][1] == 1, outcomes
