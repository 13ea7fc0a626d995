"""The lease loop of a node (runner/service/cluster.py), its rounds driven by hand on one SQLite register:
fair shares, capacity, a hung node that stops its cameras before its leases can expire, a node that is
taken over, dormant leases renewed after an outage, duties, and the checks of its options.
"""

from __future__ import annotations

import time

import pytest

from runner.core.errors import UsageError
from runner.register import Register
from runner.register.leases import OUTBOX_DUTY, PURGE_DUTY
from runner.service.cluster import MIN_LOOP_STALL_S, ClusterOptions, NodeCluster

SITE = "demo"
CAMERAS = [f"cam-{i}" for i in range(1, 7)]


class FakeClock:
    """The monotonic clock of a node's local deadlines, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def register(tmp_path):
    with Register(tmp_path / "vigie.db") as reg:
        yield reg


def _node(register, name: str, clock: FakeClock | None = None, config=None, **options) -> NodeCluster:
    opts = {"max_cameras": 6, "renew_s": 0.5, "ttl_s": 3.0, **options}
    options_ = ClusterOptions(name, **opts)
    node = NodeCluster(register, SITE, CAMERAS, options_, config=config, monotonic=clock or FakeClock())
    register.leases.join(name, SITE, options_.max_cameras, pid=1, host="h", ttl_s=options_.ttl_s, config=config)
    return node


def _run_cameras(node: NodeCluster) -> None:
    """What the analysis loop does each round: start the cameras wanted, stop the others."""
    wanted = node.wanted()
    for cid, lease in wanted.items():
        node.claim(cid, lease.token)
    for cid, held in list(node._held.items()):
        if cid not in wanted and held.started:
            node.camera_stopped(cid, held.lease.token)


def _settle(nodes: list[NodeCluster], rounds: int = 12) -> None:
    """Rounds of every node's loop, its analysis loop starting and stopping cameras at once."""
    for _ in range(rounds):
        for node in nodes:
            node.tick()
            _run_cameras(node)


def test_three_nodes_started_one_after_the_other_split_six_cameras_two_each(register):
    first = _node(register, "n1")
    _settle([first], 1)
    assert len(first.wanted()) == 6  # alone, it takes every camera
    nodes = [first, _node(register, "n2"), _node(register, "n3")]
    _settle(nodes)
    shares = [sorted(n.wanted()) for n in nodes]
    assert [len(s) for s in shares] == [2, 2, 2]
    assert sorted(c for s in shares for c in s) == CAMERAS


def test_seven_cameras_on_three_nodes_settle_at_three_two_two(register):
    nodes = [_node(register, "n1")]
    _settle(nodes, 1)
    nodes += [_node(register, "n2"), _node(register, "n3")]
    nodes[0].camera_ids.append("cam-7")
    for node in nodes[1:]:
        node.camera_ids.append("cam-7")
    _settle(nodes, 20)
    assert sorted(len(n.wanted()) for n in nodes) == [2, 2, 3]


def test_a_node_takes_no_more_than_its_capacity(register):
    small, big = _node(register, "small", max_cameras=1), _node(register, "big", max_cameras=3)
    _settle([small, big])
    assert len(small.wanted()) == 1 and len(big.wanted()) == 3
    held = [r["camera_id"] for r in register.leases.leases(SITE, live_only=True) if r["camera_id"] in CAMERAS]
    assert sorted(held) == sorted([*small.wanted(), *big.wanted()])  # two cameras left: nobody has room for them


def test_a_hung_node_stops_its_cameras_before_its_leases_expire(register):
    clock = FakeClock()
    node = _node(register, "n1", clock)
    node.tick()
    assert len(node.wanted()) == 6
    clock.now += node.options.hold_s - 0.01  # no renewal since (hung, or the register out of reach)
    assert len(node.wanted()) == 6
    clock.now += 0.02
    assert node.wanted() == {}  # ttl - renew after the last renewal: renew_s before the lease can expire
    rows = [r for r in register.leases.leases(SITE) if r["camera_id"] in CAMERAS]
    assert all(r["node"] == "n1" and r["expires_utc"] > r["now_utc"] for r in rows)  # still held for others


def test_a_node_whose_analysis_loop_hangs_stops_renewing_and_another_takes_its_cameras(register):
    clock_1, clock_2 = FakeClock(), FakeClock()
    silent_s = [0.0]
    hung = _node(register, "n1", clock_1, max_cameras=6)
    hung.loop_silent_s = lambda: silent_s[0]
    _settle([hung], rounds=2)
    assert len(hung.wanted()) == 6
    silent_s[0] = MIN_LOOP_STALL_S + 1  # inference hung: the lease thread alone would keep renewing
    renewed = {r["camera_id"]: r["renewed_utc"] for r in register.leases.leases(SITE)}
    hung.tick()
    assert {r["camera_id"]: r["renewed_utc"] for r in register.leases.leases(SITE)} == renewed  # no renewal
    clock_1.now += hung.options.hold_s + 0.01
    hung.tick()
    assert hung.wanted() == {}
    other = _node(register, "n2", clock_2, max_cameras=6)
    time.sleep(hung.options.ttl_s)  # the leases expire on the register's clock
    _settle([other], rounds=2)
    assert set(other.wanted()) == set(CAMERAS)


def test_a_node_whose_lease_was_taken_over_stops_and_never_gets_it_back_under_its_token(register):
    clock = FakeClock()
    old = _node(register, "old", clock, max_cameras=1)
    old.tick()
    (cid, lease) = next(iter(old.wanted().items()))
    register.database.conn.execute("UPDATE camera_leases SET expires_utc = '2000-01-01T00:00:00.000+00:00'")
    new = _node(register, "new", max_cameras=6)
    new.tick()
    assert new.wanted()[cid].token == lease.token + 1
    old.tick()  # its renewal is refused
    assert cid not in old.wanted()
    old.camera_stopped(cid, lease.token)
    old.tick()
    assert cid not in old._held


def test_dormant_leases_come_back_under_the_same_token_after_an_outage(register):
    clock = FakeClock()
    node = _node(register, "n1", clock, max_cameras=2)
    node.tick()
    _run_cameras(node)
    before = node.wanted()
    clock.now += node.options.hold_s + 1  # the register was out of reach: the cameras stopped
    _run_cameras(node)
    assert node.wanted() == {} and not any(h.started for h in node._held.values())
    node.tick()
    after = node.wanted()
    assert {c: lease.token for c, lease in after.items()} == {c: lease.token for c, lease in before.items()}


def test_each_duty_runs_on_one_node(register):
    changes: list[tuple[str, str, bool]] = []
    nodes = [_node(register, "n1"), _node(register, "n2")]
    for node in nodes:
        node.on_duty = lambda duty, held, name=node.node: changes.append((name, duty, held))
    _settle(nodes, 2)
    for duty in (PURGE_DUTY, OUTBOX_DUTY):
        assert [n.holds_duty(duty) for n in nodes].count(True) == 1
        assert sum(1 for _, d, held in changes if d == duty and held) == 1


def test_a_camera_given_back_before_it_started_is_released_without_waiting(register):
    first = _node(register, "n1")
    first.tick()  # takes all six; its analysis loop has started none yet
    second = _node(register, "n2")
    second.tick()
    first.tick()  # six against none: gives one back, never started
    first.tick()  # so released at once (and gives another back: n2 has not taken the first yet)
    held_in_register = [r["camera_id"] for r in register.leases.leases(SITE, live_only=True) if r["node"] == "n1"]
    assert len([c for c in held_in_register if c in CAMERAS]) == 5 and len(first.wanted()) == 4


def test_a_claim_is_refused_once_the_lease_is_lost_or_given_back(register):
    clock = FakeClock()
    node = _node(register, "n1", clock, max_cameras=1)
    node.tick()
    (cid, lease) = next(iter(node.wanted().items()))
    clock.now += node.options.hold_s
    assert node.claim(cid, lease.token) is False
    assert node.claim("cam-unknown", 1) is False


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_cameras": 0}, "--max-cameras must be at least 1"),
        ({"renew_s": 0}, "--lease-renew-s must be above 0"),
        ({"renew_s": 2, "ttl_s": 4}, r"--lease-ttl-s \(4 s\) must be more than twice --lease-renew-s \(2 s\)"),
    ],
)
def test_options_that_cannot_keep_the_fencing_promise_are_refused(options, message):
    with pytest.raises(UsageError, match=message):
        ClusterOptions("n1", **{"max_cameras": 2, **options})


def test_a_node_name_has_no_space():
    with pytest.raises(UsageError, match="--node: a name of 1 to 64 characters without spaces"):
        ClusterOptions("node one", 2)


def test_a_node_on_an_older_config_revision_says_so_once(register, caplog):
    old, new = _node(register, "old", config=(3, "a" * 64)), _node(register, "new", config=(4, "b" * 64))
    _settle([old, new], 3)
    warnings = [r.getMessage() for r in caplog.records if "another node of the site runs revision" in r.getMessage()]
    assert warnings == [
        "node old runs config revision 3, another node of the site runs revision 4: restart this node on the new "
        "site file"
    ]
    assert {n["name"]: n["config_revision"] for n in register.leases.nodes(SITE)} == {"new": 4, "old": 3}
