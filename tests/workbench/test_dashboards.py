"""Analysis dashboards: polars aggregates over a register with known alerts and decisions, plots, export."""

from __future__ import annotations

import sqlite3
from datetime import datetime

import numpy as np
import polars as pl
import pytest

from runner.core.access import Principal
from runner.core.errors import StoreError
from tests.workbench.conftest import add_alert
from workbench import register_data as rd
from workbench.analysis_app import AnalysisDashboard, analyst_only, format_duration, html_table, summary_tables
from workbench.i18n import t
from workbench.stats import wilson_interval

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def known(register):
    """The register of `known_frames`, loaded."""
    return known_frames(register)


def known_frames(register):
    """Eight real alerts and one test alert, 10:00 UTC on 2025-05-14 + the minutes given:

    id  camera  kind            revision  box centre    decision
    1   cam-01  zone_intrusion  1         (0.10, 0.10)  confirmed, intervention
    2   cam-01  zone_intrusion  1         (0.10, 0.10)  rejected, shadow
    3   cam-01  zone_intrusion  2         (0.90, 0.90)  rejected, shadow
    4   cam-02  zone_intrusion  2         (0.90, 0.10)  confirmed, field_check
    5   cam-02  wrong_way       2         (0.50, 0.50)  rejected, reflection
    6   cam-02  wrong_way       2         (0.50, 0.50)  pending
    7   cam-01  crowd_density   1         -             pending (no box)
    8   cam-01  zone_intrusion  2         (0.10, 0.90)  confirmed, none   (at 21:30 UTC)
    9   cam-02  fire            2         (0.50, 0.50)  pending, TEST
    """

    def box(cx, cy):
        return [cx - 0.05, cy - 0.05, cx + 0.05, cy + 0.05]

    spec = [
        dict(minutes=0, camera_id="cam-01", kind="zone_intrusion", config_revision=1, bbox=box(0.1, 0.1)),
        dict(minutes=5, camera_id="cam-01", kind="zone_intrusion", config_revision=1, bbox=box(0.1, 0.1)),
        dict(minutes=65, camera_id="cam-01", kind="zone_intrusion", config_revision=2, bbox=box(0.9, 0.9)),
        dict(minutes=70, camera_id="cam-02", kind="zone_intrusion", config_revision=2, bbox=box(0.9, 0.1)),
        dict(minutes=75, camera_id="cam-02", kind="wrong_way", config_revision=2, bbox=box(0.5, 0.5)),
        dict(minutes=80, camera_id="cam-02", kind="wrong_way", config_revision=2, bbox=box(0.5, 0.5)),
        dict(minutes=85, camera_id="cam-01", kind="crowd_density", config_revision=1, bbox=None),
        dict(minutes=690, camera_id="cam-01", kind="zone_intrusion", config_revision=2, bbox=box(0.1, 0.9)),
    ]
    ids = [add_alert(register, is_test=False, **fields) for fields in spec]
    ids.append(
        add_alert(
            register, minutes=90, camera_id="cam-02", kind="fire", config_revision=2, bbox=box(0.5, 0.5), is_test=True
        )
    )
    decide = register.decide
    A, B = Principal("a", "operator"), Principal("b", "operator")
    decide(ids[0], "confirmed", by=A, follow_up="intervention")
    decide(ids[1], "rejected", by=A, reason="shadow")
    decide(ids[2], "rejected", by=B, reason="shadow")
    decide(ids[3], "confirmed", by=B, follow_up="field_check")
    decide(ids[4], "rejected", by=B, reason="reflection")
    decide(ids[7], "confirmed", by=A, follow_up="none")
    return rd.load_register(register.target.url or register.db_path)  # a PostgreSQL register: its URL


def as_dict(frame: pl.DataFrame, key: str | list[str], value: str) -> dict:
    keys = [key] if isinstance(key, str) else key
    return {(row[0] if len(keys) == 1 else tuple(row[:-1])): row[-1] for row in frame.select(*keys, value).iter_rows()}


# -- loading ------------------------------------------------------------------------------------
def test_alerts_are_joined_with_their_decisions(known, register):
    alerts = known.alerts
    assert alerts.height == 9
    first = alerts.row(0, named=True)
    assert (first["status"], first["decision"], first["operator"], first["follow_up"]) == (
        "confirmed",
        "confirmed",
        "a",
        "intervention",
    )
    assert first["ts_utc"] == datetime.fromisoformat("2025-05-14T10:00:00+00:00")
    assert (first["cx"], first["cy"]) == pytest.approx((0.1, 0.1))
    assert alerts.filter(pl.col("status") == "pending")["decision"].to_list() == [None, None, None]
    assert alerts.row(6, named=True)["cx"] is None  # no box


def test_time_to_decision_is_decided_minus_the_event_time_not_the_row_creation(known, register):
    with sqlite3.connect(register.db_path) as conn:
        rows = conn.execute(
            "SELECT a.id, a.ts_utc, d.decided_utc FROM alerts a JOIN decisions d ON d.alert_id = a.id"
        ).fetchall()
    expected = {i: (datetime.fromisoformat(d) - datetime.fromisoformat(c)).total_seconds() for i, c, d in rows}
    delays = as_dict(known.alerts.filter(pl.col("decision_delay_s").is_not_null()), "id", "decision_delay_s")
    assert delays == pytest.approx(expected)
    assert rd.decision_delays(known.alerts, "kind")["decisions"].sum() == 6


def test_audit_frame_lists_every_row(known, register):
    assert known.audit["event"].to_list() == [r["event"] for r in register.audit_rows()]
    assert known.audit.filter(pl.col("event") == "decision")["actor"].to_list() == ["a", "a", "b", "b", "b", "a"]


def test_the_register_is_opened_read_only(known, register, tmp_path):
    conn = rd.connect_readonly(register.db_path)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        conn.execute("DELETE FROM decisions")
    conn.close()
    missing = tmp_path / "missing" / "vigie.db"
    with pytest.raises(StoreError, match="no such file"):
        rd.load_register(missing)
    assert not missing.exists()


# -- aggregates ---------------------------------------------------------------------------------
def test_counts_per_kind_camera_revision(known):
    alerts = rd.filter_alerts(known.alerts, include_tests=False)
    assert as_dict(rd.alert_counts(alerts, "kind"), "kind", "alerts") == {
        "zone_intrusion": 5,
        "wrong_way": 2,
        "crowd_density": 1,
    }
    assert rd.alert_counts(alerts, "kind")["kind"].to_list()[0] == "zone_intrusion"  # largest first
    assert as_dict(rd.alert_counts(alerts, "camera_id"), "camera_id", "alerts") == {"cam-01": 5, "cam-02": 3}
    assert as_dict(rd.alert_counts(alerts, "config_revision"), "config_revision", "alerts") == {1: 3, 2: 5}
    assert as_dict(rd.alert_counts(known.alerts, "kind"), "kind", "alerts")["fire"] == 1  # tests included


def test_alerts_per_local_hour(known):
    per_hour = rd.alerts_per_hour(rd.filter_alerts(known.alerts, include_tests=False), "Europe/Paris")
    assert per_hour.height == 24
    counts = as_dict(per_hour, "hour", "alerts")
    # 10:00-11:25 UTC is 12:00-13:25 in Paris (summer time); 21:30 UTC is 23:30.
    assert {h: c for h, c in counts.items() if c} == {12: 2, 13: 5, 23: 1}
    assert as_dict(rd.alerts_per_hour(known.alerts, "UTC"), "hour", "alerts")[21] == 1


def test_validation_rate_with_wilson_interval(known):
    stats = rd.validation_stats(rd.filter_alerts(known.alerts, include_tests=False), ["kind", "camera_id"])
    row = stats.filter((pl.col("kind") == "zone_intrusion") & (pl.col("camera_id") == "cam-01")).row(0, named=True)
    assert (row["alerts"], row["confirmed"], row["rejected"], row["pending"]) == (4, 2, 2, 0)
    expected = wilson_interval(2, 4)
    assert (row["validation_rate"], row["rate_low"], row["rate_high"]) == pytest.approx(
        (0.5, expected.low, expected.high)
    )
    density = stats.filter(pl.col("kind") == "crowd_density").row(0, named=True)
    assert density["validation_rate"] is None and density["pending"] == 1  # nothing decided: no rate


def test_false_alert_causes_and_follow_ups(known):
    alerts = rd.filter_alerts(known.alerts, include_tests=False)
    causes = rd.rejection_causes(alerts, "kind")
    assert as_dict(causes, ["kind", "reason"], "rejected") == {
        ("zone_intrusion", "shadow"): 2,
        ("wrong_way", "reflection"): 1,
    }
    assert as_dict(causes, ["kind", "reason"], "share") == {
        ("zone_intrusion", "shadow"): 1.0,
        ("wrong_way", "reflection"): 1.0,
    }
    per_camera = rd.rejection_causes(alerts, "camera_id")
    assert as_dict(per_camera, ["camera_id", "reason"], "share") == pytest.approx(
        {("cam-01", "shadow"): 1.0, ("cam-02", "reflection"): 1.0}
    )
    follow_ups = rd.follow_up_counts(alerts, "kind")
    assert as_dict(follow_ups, ["kind", "follow_up"], "decisions") == {
        ("zone_intrusion", "intervention"): 1,
        ("zone_intrusion", "none"): 3,
        ("zone_intrusion", "field_check"): 1,
        ("wrong_way", "none"): 1,
    }


def test_revision_comparison(known):
    comparison = rd.revision_comparison(rd.filter_alerts(known.alerts, include_tests=False))
    assert comparison["config_revision"].to_list() == [1, 2]
    assert comparison["alerts"].to_list() == [3, 5]
    assert comparison["validation_rate"].to_list() == pytest.approx([0.5, 0.5])
    assert comparison["first_utc"][0] == datetime.fromisoformat("2025-05-14T10:00:00+00:00")
    assert comparison["last_utc"][1] == datetime.fromisoformat("2025-05-14T21:30:00+00:00")


def test_timeline_buckets(known):
    buckets = rd.timeline(rd.filter_alerts(known.alerts, include_tests=False), every="1h")
    counts = {(b.hour, k): n for b, k, n in buckets.iter_rows()}
    assert counts == {
        (10, "zone_intrusion"): 2,
        (11, "zone_intrusion"): 2,
        (11, "wrong_way"): 2,
        (11, "crowd_density"): 1,
        (21, "zone_intrusion"): 1,
    }


def test_heatmap_counts_box_centres_on_the_grid(known):
    grid = rd.heatmap_counts(rd.filter_alerts(known.alerts, include_tests=False), bins_x=2, bins_y=2)
    # rows are image rows, top first: (x 0.1, y 0.1) x2 top-left; (0.9, 0.1) top-right;
    # (0.1, 0.9) bottom-left; (0.9, 0.9) and the two centred boxes (0.5 falls in the second bin) bottom-right.
    assert grid.tolist() == [[2, 1], [1, 3]]
    assert rd.heatmap_counts(known.alerts.clear(), 4, 3).shape == (3, 4)


def test_filters(known):
    alerts = known.alerts
    assert rd.filter_alerts(alerts, cameras=["cam-02"], include_tests=True).height == 4
    assert rd.filter_alerts(alerts, kinds=["wrong_way"]).height == 2
    assert rd.filter_alerts(alerts, revisions=[1]).height == 3


# -- export -------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_round_trip(known, tmp_path, fmt):
    tables = {"alerts": known.alerts, "by_kind": rd.alert_counts(known.alerts, "kind")}
    written = rd.export_tables(tables, tmp_path / "exports", "run-1", fmt)
    assert written == [(tmp_path / "exports" / "run-1" / f"{name}.{fmt}").resolve() for name in tables]
    read = pl.read_parquet if fmt == "parquet" else pl.read_csv
    back = read(written[1])
    assert back.sort("kind").to_dicts() == tables["by_kind"].sort("kind").to_dicts()
    assert read(written[0])["id"].to_list() == known.alerts["id"].to_list()


@pytest.mark.parametrize("folder", ["../outside", "/tmp/elsewhere", "", "  ", "a/../../b", ".", "a//b/.."])
def test_export_stays_inside_its_folder(tmp_path, folder):
    with pytest.raises(ValueError, match="export folder"):
        rd.export_tables({"t": pl.DataFrame({"a": [1]})}, tmp_path / "exports", folder, "csv")
    assert not (tmp_path / "outside").exists()


def test_export_refuses_a_symlink_out_of_its_folder(tmp_path):
    root = tmp_path / "exports"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(ValueError, match="must stay inside"):
        rd.export_tables({"t": pl.DataFrame({"a": [1]})}, root, "link", "csv")


def test_export_refuses_unknown_format_and_odd_table_names(tmp_path):
    with pytest.raises(ValueError, match="format"):
        rd.export_tables({"t": pl.DataFrame({"a": [1]})}, tmp_path, "x", "xlsx")
    with pytest.raises(ValueError, match="table name"):
        rd.export_tables({"../t": pl.DataFrame({"a": [1]})}, tmp_path, "x", "csv")


# -- the dashboard widgets ----------------------------------------------------------------------
def test_dashboard_shows_tables_and_plots_of_real_alerts(known, register, workbench_env):
    dashboard = AnalysisDashboard(register.db_path, export_root=workbench_env / "exports")
    assert dashboard.include_tests.value is False  # real alerts exist: tests are left out by default
    overview_html = dashboard.overview.children[0].children[0].value
    assert t("register.kind.zone_intrusion") in overview_html and t("register.kind.fire") not in overview_html
    plots = [
        w
        for tab in (dashboard.overview, dashboard.validation, dashboard.revisions_panel, dashboard.heatmap_plot)
        for w in tab.children
        if hasattr(w, "format") and w.format == "png"
    ]
    assert len(plots) == 5  # hourly profile, timeline, validation rates, revisions, heatmap
    assert all(bytes(p.value).startswith(PNG_SIGNATURE) for p in plots)
    assert dashboard.heatmap_camera.value == "cam-01"

    dashboard.include_tests.value = True
    assert t("register.kind.fire") in dashboard.overview.children[0].children[0].value
    dashboard.cameras.value = ("cam-02",)
    assert dashboard.filtered()["camera_id"].unique().to_list() == ["cam-02"]
    assert dashboard.heatmap_camera.options == ("cam-02",)


def test_dashboard_over_a_design_phase_register_includes_tests(register, workbench_env):
    add_alert(register, minutes=0, is_test=True)
    dashboard = AnalysisDashboard(register.db_path)
    assert dashboard.include_tests.value is True
    assert dashboard.filtered().height == 1


def test_dashboard_export_button(known, register, workbench_env, monkeypatch):
    monkeypatch.setenv("VIGIE_ROLE", "analyst")
    monkeypatch.setenv("VIGIE_USER", "analyste-3")
    dashboard = AnalysisDashboard(register.db_path, export_root=workbench_env / "exports")
    dashboard.export_folder.value = "after-festival"
    dashboard.export_format.value = "parquet"
    written = dashboard.export()
    names = sorted(p.name for p in written)
    assert names == sorted(f"{n}.parquet" for n in ["alerts", "audit", *summary_tables(known.alerts, "UTC")])
    assert all(p.parent == (workbench_env / "exports" / "after-festival").resolve() for p in written)
    assert pl.read_parquet(workbench_env / "exports" / "after-festival" / "alerts.parquet").height == 8  # no tests

    dashboard.export_folder.value = "../../etc"
    assert dashboard.export() == []
    assert "export folder" in dashboard.export_result.value


def test_dashboard_reports_a_missing_register(tmp_path, workbench_env):
    dashboard = AnalysisDashboard(tmp_path / "none.db")
    assert "no such file" in dashboard.message.value
    assert dashboard.export() == []


def test_html_table_escapes_and_translates():
    table = pl.DataFrame(
        {
            "kind": ["wrong_way"],
            "camera_id": ["<script>x</script>"],
            "validation_rate": [0.5],
            "rate_low": [0.25],
            "rate_high": [0.75],
        }
    )
    text = html_table(table)
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert t("register.kind.wrong_way") in text
    assert "[25%, 75%]" in text
    assert t("analysis.col.validation_rate") in text


def test_heatmap_over_the_cameras_latest_snapshot(known, register):
    path = rd.latest_snapshot(known.alerts, "cam-01", register.media_dir)
    newest = known.alerts.filter(pl.col("camera_id") == "cam-01").sort("id")["snapshot"].to_list()[-1]
    assert path == (register.media_dir / newest).resolve()
    assert rd.latest_snapshot(known.alerts, "cam-99", register.media_dir) is None
    assert isinstance(rd.heatmap_counts(known.alerts), np.ndarray)


# -- issue 19: sites, durations, the analysts' view ------------------------------------------------------
def test_durations_read_in_seconds_minutes_and_hours():
    assert [format_duration(s) for s in (0.4, 45, 245, 3599.4, 7620, 30 * 3600)] == [
        "0 s",
        "45 s",
        "4 min 05 s",
        "59 min 59 s",
        "2 h 07 min",
        "30 h 00 min",
    ]
    table = pl.DataFrame({"kind": ["fire"], "decisions": [2], "median_s": [245.0], "max_s": [7620.0]})
    text = html_table(table)
    assert "4 min 05 s" in text and "2 h 07 min" in text and "(s)" not in text


def test_the_dashboard_shows_one_site_at_a_time_so_revisions_of_two_sites_never_mix(known, register, workbench_env):
    add_alert(register, minutes=3, is_test=False, site="gare-nord", config_revision=7, camera_id="quai-1")
    dashboard = AnalysisDashboard(register.db_path, export_root=workbench_env / "exports")
    assert list(dashboard.site_filter.options) == ["gare-nord", "test-site"]
    assert dashboard.site_filter.value == "gare-nord"
    assert dashboard.filtered()["site"].unique().to_list() == ["gare-nord"]
    assert list(dashboard.revisions.options) == [7] and list(dashboard.cameras.options) == ["quai-1"]
    dashboard.site_filter.value = "test-site"
    assert list(dashboard.revisions.options) == [1, 2]
    revisions_html = dashboard.revisions_panel.children[0].value
    assert dashboard.filtered()["site"].unique().to_list() == ["test-site"] and ">7<" not in revisions_html


def test_analysts_see_pseudonymised_operators_and_no_snapshot_note_or_name(known, register, workbench_env, monkeypatch):
    monkeypatch.setenv("VIGIE_ROLE", "analyst")
    monkeypatch.setenv("VIGIE_USER", "analyste-3")
    register.decide(
        add_alert(register, minutes=4, is_test=False),
        "rejected",
        by=Principal("a", "operator"),
        reason="other",
        note="M. Durand",
    )
    dashboard = AnalysisDashboard(register.db_path, export_root=workbench_env / "exports")
    alerts = dashboard.frames.alerts
    assert not {"snapshot", "snapshot_note", "note", "details"} & set(alerts.columns)
    operators = set(alerts["operator"].drop_nulls().to_list())
    assert len(operators) == 2 and all(o.startswith("op-") and len(o) == 13 for o in operators)
    assert operators == set(AnalysisDashboard(register.db_path).frames.alerts["operator"].drop_nulls().to_list())
    assert dashboard.heatmap_background.disabled and dashboard.heatmap_background.value is False
    assert "a" not in set(dashboard.frames.audit["actor"].to_list()) and "details" not in dashboard.frames.audit.columns
    by_operator = next(c.value for c in dashboard.validation.children if "pseudonyme" in getattr(c, "value", ""))
    assert all(o in by_operator for o in operators)

    dashboard.export_folder.value = "review"
    written = {p.stem: p for p in dashboard.export()}
    exported = written["alerts"].read_text()
    assert "M. Durand" not in exported and ",a," not in exported and ".jpg" not in exported
    monkeypatch.setenv(rd.PSEUDONYM_KEY_ENV, "another server secret")
    assert rd.pseudonym("a", rd.pseudonym_key(register.db_path)) not in operators


def test_only_operators_and_the_dpo_keep_the_full_view(monkeypatch):
    views = {}
    for role in ("operator", "dpo", "analyst", "design", "", "bogus"):
        monkeypatch.setenv("VIGIE_ROLE", role)
        views[role] = analyst_only()
    assert views == {"operator": False, "dpo": False, "analyst": True, "design": True, "": True, "bogus": True}
