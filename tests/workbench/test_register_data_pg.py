"""The workbench over a PostgreSQL register: the dashboards' loaders give the same frames as over SQLite, the
social dashboard reads the rights requests, a console sees a new alert written by another process within 2 s.

The loader tests of test_dashboards.py run here again with `register` a PostgreSQL register (imported, not
copied); each needs a real server (tests/servers/postgres.py), hence the cluster mark.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from runner.core.access import Principal
from runner.core.errors import StoreError
from runner.register import Register
from tests.workbench.conftest import ROOT
from tests.workbench.test_dashboards import (  # noqa: F401 - collected here against PostgreSQL
    known_frames,
    test_alerts_are_joined_with_their_decisions,
    test_alerts_per_local_hour,
    test_audit_frame_lists_every_row,
    test_counts_per_kind_camera_revision,
    test_false_alert_causes_and_follow_ups,
    test_filters,
    test_heatmap_counts_box_centres_on_the_grid,
    test_revision_comparison,
    test_timeline_buckets,
    test_validation_rate_with_wilson_interval,
)
from workbench import register_data as rd
from workbench import social
from workbench._setup_paths import register_path, tuning_register_path
from workbench.console_app import POLL_INTERVAL_S, ConsoleModel

pytestmark = pytest.mark.cluster
DPO = Principal("dpo", "dpo")
# Never equal between two registers: the wall clock when stored or decided, and the snapshot's random name.
UNCOMPARABLE_COLUMNS = ("created_utc", "decided_utc", "decision_delay_s", "snapshot")


@pytest.fixture
def register(postgres_url, tmp_path):
    """A PostgreSQL register (the imported tests' `register`), its media in a temporary folder."""
    with Register(postgres_url, tmp_path / "media") as reg:
        yield reg


@pytest.fixture
def known(register):
    """The dashboards' known alerts and decisions (test_dashboards.py), in the PostgreSQL register, loaded."""
    return known_frames(register)


def test_a_url_stays_a_url_and_the_files_beside_it_go_to_var(monkeypatch, postgres_url):
    monkeypatch.setenv("VIGIE_DB", postgres_url)
    monkeypatch.delenv("VIGIE_TUNING_DB", raising=False)
    monkeypatch.delenv("VIGIE_MEDIA_DIR", raising=False)
    assert register_path() == postgres_url
    assert tuning_register_path() == ROOT / "var" / "tuning.db"
    assert rd.media_dir(postgres_url) == ROOT / "var" / "media"


def test_the_frames_are_those_of_the_same_register_in_sqlite(known, tmp_path):
    with Register(tmp_path / "sqlite" / "vigie.db") as sqlite_register:
        expected = known_frames(sqlite_register)
    assert known.alerts.schema == expected.alerts.schema and known.audit.schema == expected.audit.schema
    comparable = [c for c in expected.alerts.columns if c not in UNCOMPARABLE_COLUMNS]
    assert known.alerts.select(comparable).equals(expected.alerts.select(comparable))
    assert known.audit.select("event", "actor", "camera_id").equals(
        expected.audit.select("event", "actor", "camera_id")
    )
    for column in UNCOMPARABLE_COLUMNS:
        assert known.alerts[column].is_null().equals(expected.alerts[column].is_null()), column


def test_restricted_alerts_stay_out_and_the_connection_is_read_only(known, register, postgres_url):
    register.rights.restrict("DPO-26-01", [1, 2], by=DPO)
    visible = rd.load_register(postgres_url, include_restricted=False).alerts["id"].to_list()
    assert visible == [3, 4, 5, 6, 7, 8, 9]
    assert rd.load_register(postgres_url, include_restricted=True).alerts.height == 9
    assert rd.latest_alert_id(postgres_url) == 9
    conn = rd.connect_readonly(postgres_url)
    try:
        with pytest.raises(rd.database_errors(), match="read-only"):
            conn.execute("DELETE FROM decisions")
    finally:
        conn.close()


def test_a_missing_database_is_one_line_without_the_password(postgres_url):
    url = postgres_url.replace("vigie@", "vigie:s3cret-pw@").rsplit("/", 1)[0] + "/no_such_db"
    with pytest.raises(StoreError) as raised:
        rd.load_register(url)
    message = str(raised.value)
    assert "no_such_db" in message and "s3cret-pw" not in message and "\n" not in message
    assert social.requests_from_register(url) is None


def test_social_reads_the_rights_requests_from_postgresql(register, postgres_url):
    assert social.requests_from_register(postgres_url).is_empty()
    received = datetime.now(UTC) - timedelta(days=40)
    register.open_rights_request("DPO-26-05", by=DPO, kind="access", received=received)
    register.open_rights_request("DPO-26-06", by=DPO, kind="erasure", received=received + timedelta(days=35))
    register.close_rights_request("DPO-26-06", "answered", by=DPO)
    frame = social.requests_from_register(postgres_url)
    assert frame["request_id"].to_list() == ["DPO-26-05", "DPO-26-06"]
    totals = social.request_indicators(frame).row(-1, named=True)
    assert (totals["requests"], totals["open"]) == (2, 1)


# A writer of its own: another process (a runner node) stores one alert when told to, and says its id.
WRITER = """
import sys
from runner.register import Register
from tests.helpers import alert_record
with Register(sys.argv[1], sys.argv[2]) as register:
    print("ready", flush=True)
    for line in sys.stdin:
        print(register.add_alert(alert_record(is_test=False), None).id, flush=True)
"""


def test_a_new_alert_of_another_process_reaches_the_console_within_2_s(register, postgres_url, tmp_path, monkeypatch):
    monkeypatch.setenv("VIGIE_ROLE", "operator")
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, postgres_url, str(tmp_path / "media")],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    model = ConsoleModel(postgres_url, tmp_path / "media")
    try:
        assert writer.stdout.readline().strip() == "ready"
        assert model.poll().error is None and model.pending == {}
        delays_s = []
        for _ in range(3):
            writer.stdin.write("go\n")
            writer.stdin.flush()
            alert_id = int(writer.stdout.readline())
            stored = time.monotonic()
            time.sleep(POLL_INTERVAL_S)  # the worst case: stored just after the console's last poll
            while alert_id not in model.poll().new_ids:  # the console's timer, by hand
                assert time.monotonic() - stored < 5.0, f"alert {alert_id} never reached the console"
                time.sleep(POLL_INTERVAL_S)
            delays_s.append(time.monotonic() - stored)
        assert max(delays_s) < 2.0, delays_s
        assert sorted(model.pending) == [1, 2, 3]
    finally:
        model.close()
        writer.stdin.close()
        writer.wait(timeout=30)
