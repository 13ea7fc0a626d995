"""Export: revision bump, site.yaml + revisions/ + SHA256SUMS, the audit row with its actor, and
refusals (invalid config, retention above the legal caps, no identity, a revision already taken)."""

from __future__ import annotations

import copy
import hashlib
import json
import threading

import pytest

from runner.config.loading import load_config
from runner.core.access import PermissionDenied, Principal
from runner.register import Register
from tests.helpers import config_dict, write_config
from workbench.export import ConfigExporter, ExportConflict, ExportError, SiteFolder, field_diff, merge_configs

INTRUSION = {"kind": "zone_intrusion", "id": "lawn-intrusion", "zone": "lawn", "min_dwell_s": 1.0}
ACTOR = "Agent Martin (préfecture)"
DESIGNER = Principal(ACTOR, "design")


@pytest.fixture
def site(tmp_path):
    """zones/test-site/site.yaml written by hand (revision 1, never exported), and an empty register."""
    zones = tmp_path / "zones"
    (zones / "test-site").mkdir(parents=True)
    write_config(zones / "test-site" / "site.yaml", config_dict([INTRUSION]))
    register = Register(tmp_path / "vigie.db")
    return ConfigExporter(zones, register), SiteFolder(zones, "test-site"), register


def edited(min_dwell_s: float = 2.5, **overrides) -> dict:
    data = config_dict([{**INTRUSION, "min_dwell_s": min_dwell_s}])
    data.update(overrides)
    return data


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_export_bumps_the_revision_and_writes_site_yaml_revision_file_and_checksums(site):
    exporter, folder, register = site
    hand_written = folder.current_path.read_bytes()

    result = exporter.export(edited(), DESIGNER)

    assert result.revision == 2
    current = load_config(folder.current_path)
    assert current.config.revision == 2 and current.config.camera("cam-01").rules[0].min_dwell_s == 2.5
    assert folder.revision_path(2).read_bytes() == folder.current_path.read_bytes()
    assert folder.revision_path(1).read_bytes() == hand_written  # the hand-written revision is kept too
    assert folder.listed_sums() == {
        "site.r0001.yaml": sha256(folder.revision_path(1)),
        "site.r0002.yaml": sha256(folder.revision_path(2)),
    }
    assert result.sha256 == current.sha256 == sha256(folder.revision_path(2))
    assert folder.verify() == []


def test_export_logs_who_exported_which_revision_in_the_hash_chained_audit_log(site):
    exporter, folder, register = site
    result = exporter.export(edited(), Principal(f"  {ACTOR} ", "design"))
    (row,) = register.audit_rows(event="config_exported")
    details = json.loads(row["details"])
    assert row["actor"] == ACTOR and row["id"] == result.audit_id and details["role"] == "design"
    assert (details["site"], details["revision"], details["sha256"]) == ("test-site", 2, result.sha256)
    assert details["previous_revision"] == 1 and details["changes"] == len(result.changes) > 0
    assert register.verify().ok


def test_each_export_takes_the_next_number_and_numbers_are_never_reused(site):
    exporter, folder, _ = site
    exporter.export(edited(2.0), DESIGNER)
    exporter.export(edited(3.0), DESIGNER)
    folder.current_path.write_text(folder.revision_path(1).read_text())  # someone restores r1 by hand
    assert exporter.export(edited(4.0), DESIGNER).revision == 4
    assert [r.number for r in folder.revisions()] == [1, 2, 3, 4]


def test_the_plan_shows_a_field_diff_and_a_yaml_diff_against_the_current_revision(site):
    exporter, _, _ = site
    plan = exporter.plan(edited(2.5))
    described = [c.describe() for c in plan.changes]
    assert "~ revision: 1 -> 2" in described
    assert "~ cameras[cam-01].rules[lawn-intrusion].min_dwell_s: 1.0 -> 2.5" in described
    assert len(described) == 2
    diff_lines = plan.unified_diff.splitlines()
    changed = [line[0] + line[1:].strip() for line in diff_lines if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed == ["-revision: 1", "+revision: 2", "-min_dwell_s: 1.0", "+min_dwell_s: 2.5"]


def test_field_diff_matches_list_items_by_id():
    before = config_dict([INTRUSION])
    after = copy.deepcopy(before)
    after["cameras"][0]["zones"].insert(0, {"id": "plaza", "polygon": [[0, 0], [1, 0], [1, 1]]})
    changes = field_diff(before, after)
    assert [(c.path, c.new) for c in changes] == [("cameras[cam-01].zones[plaza]", after["cameras"][0]["zones"][0])]
    assert changes[0].describe().startswith("+ cameras[cam-01].zones[plaza]: {id: plaza")


def test_an_invalid_config_is_refused_with_its_field_path_and_nothing_is_written(site):
    exporter, folder, register = site
    before = folder.current_path.read_bytes()
    bad = edited(-1.0)
    bad["cameras"][0]["rules"].append({"kind": "wrong_way", "id": "lawn-wrong-way", "zone": "lawn"})
    with pytest.raises(ExportError) as caught:
        exporter.export(bad, DESIGNER)
    assert ("cameras[0].rules[0].min_dwell_s", "must be >= 0") in caught.value.problems
    assert "cameras[0].rules[0].min_dwell_s: must be >= 0" in str(caught.value)
    assert folder.current_path.read_bytes() == before and not folder.revisions_dir.exists()
    assert register.audit_rows(event="config_exported") == []


@pytest.mark.parametrize(
    ("field", "days", "message"),
    [
        ("media_days", 31, "must be <= 30"),
        ("alert_days", 366, "must be <= 365"),
    ],
)
def test_retention_above_the_legal_caps_is_never_exported(site, field, days, message):
    exporter, folder, _ = site
    with pytest.raises(ExportError) as caught:
        exporter.export(edited(retention={field: days}), DESIGNER)
    assert caught.value.problems == [(f"retention.{field}", message)]
    assert load_config(folder.current_path).config.revision == 1


def test_an_export_needs_an_identity_in_the_design_role(site):
    exporter, folder, register = site
    for actor in ("", "   ", ACTOR):  # a bare name (the API before roles) carries no role
        with pytest.raises(TypeError, match="Principal"):
            exporter.export(edited(), actor)
    for role in ("operator", "analyst", "runner"):
        with pytest.raises(PermissionDenied, match=f"role {role}"):
            exporter.export(edited(), Principal(ACTOR, role))
    assert register.audit_rows(event="config_exported") == [] and not folder.revisions_dir.exists()


def test_an_export_that_lost_the_race_for_its_revision_number_writes_nothing(site, monkeypatch):
    exporter, folder, register = site
    plan = exporter.plan(edited(2.5))  # numbered r2 ...
    ConfigExporter(folder.dir.parent, register).export(
        edited(3.0), Principal("someone else", "design")
    )  # ... which another export takes
    winner = folder.current_path.read_bytes()
    monkeypatch.setattr(exporter, "plan", lambda draft, base_revision=None: plan)
    with pytest.raises(ExportError, match="site.r0002.yaml"):
        exporter.export(edited(2.5), DESIGNER)
    assert folder.current_path.read_bytes() == winner
    assert [r["actor"] for r in register.audit_rows(event="config_exported")] == ["someone else"]


def test_verify_reports_a_revision_file_changed_after_export(site):
    exporter, folder, _ = site
    exporter.export(edited(), DESIGNER)
    path = folder.revision_path(2)
    path.write_text(path.read_text().replace("min_dwell_s: 2.5", "min_dwell_s: 9.0"))
    (problem,) = folder.verify()
    assert problem.startswith("site.r0002.yaml: sha256 ")


def test_a_new_site_gets_its_folder_and_revision_1(tmp_path):
    exporter = ConfigExporter(tmp_path / "zones", Register(tmp_path / "vigie.db"))
    result = exporter.export(edited(site="new-site", revision=7), DESIGNER)
    assert result.revision == 1
    assert load_config(tmp_path / "zones" / "new-site" / "site.yaml").config.revision == 1


# -- optimistic concurrency ---------------------------------------------------------------------------------
def test_an_export_built_on_an_older_revision_is_refused_with_what_the_other_agent_changed(site):
    exporter, folder, register = site
    theirs = edited(2.0)
    theirs["cameras"][0]["process_fps"] = 2.0
    exporter.export(theirs, Principal("Agent Autre", "design"), base_revision=1)
    before = folder.current_path.read_bytes()

    with pytest.raises(ExportConflict) as caught:
        exporter.export(edited(3.0), DESIGNER, base_revision=1)

    conflict = caught.value
    assert "1 → 2" in str(conflict) and "fusionnez ou recommencez" in str(conflict)
    assert sorted(c.path for c in conflict.theirs) == [
        "cameras[cam-01].process_fps",
        "cameras[cam-01].rules[lawn-intrusion].min_dwell_s",
    ]
    assert conflict.base["revision"] == 1 and conflict.current["revision"] == 2
    assert folder.current_path.read_bytes() == before  # nothing written, nothing logged
    assert [r["actor"] for r in register.audit_rows(event="config_exported")] == ["Agent Autre"]


def test_a_new_site_created_twice_is_a_conflict_for_the_second(tmp_path):
    exporter = ConfigExporter(tmp_path / "zones", Register(tmp_path / "vigie.db"))
    exporter.export(edited(site="new-site"), DESIGNER, base_revision=0)
    with pytest.raises(ExportConflict, match="existe déjà"):
        exporter.export(edited(3.0, site="new-site"), DESIGNER, base_revision=0)


def test_an_export_without_any_change_makes_no_revision(site):
    exporter, folder, register = site
    exporter.export(edited(2.0), DESIGNER, base_revision=1)
    with pytest.raises(ExportError, match="rien à exporter"):
        exporter.export(edited(2.0, revision=2), DESIGNER, base_revision=2)
    assert [r.number for r in folder.revisions()] == [1, 2]
    assert len(register.audit_rows(event="config_exported")) == 1


def test_merge_keeps_both_agents_edits_and_their_value_where_both_changed_one_field():
    base = config_dict([INTRUSION])
    theirs = copy.deepcopy(base)
    theirs["revision"] = 2
    theirs["cameras"][0]["process_fps"] = 2.0  # they changed the rate ...
    theirs["cameras"].append({"id": "salle", "source": "salle.avi"})  # ... and added a camera
    mine = copy.deepcopy(base)
    mine["cameras"][0]["rules"][0]["min_dwell_s"] = 4.0  # I changed a threshold ...
    mine["cameras"][0]["zones"] = mine["cameras"][0]["zones"][:1]  # ... removed a zone ...
    mine["cameras"][0]["process_fps"] = 8.0  # ... and changed the rate too: a conflict

    merged, conflicts = merge_configs(base, theirs, mine)

    assert conflicts == ["cameras[cam-01].process_fps"]
    camera = merged["cameras"][0]
    assert camera["process_fps"] == 2.0 and camera["rules"][0]["min_dwell_s"] == 4.0
    assert [z["id"] for z in camera["zones"]] == ["lawn"]
    assert [c["id"] for c in merged["cameras"]] == ["cam-01", "salle"] and merged["revision"] == 2


def test_two_exports_racing_from_one_revision_give_one_revision_and_one_conflict(tmp_path):
    zones = tmp_path / "zones"
    (zones / "test-site").mkdir(parents=True)
    write_config(zones / "test-site" / "site.yaml", config_dict([INTRUSION]))
    Register(tmp_path / "vigie.db").close()
    barrier, outcomes = threading.Barrier(4), []

    def export(dwell: float) -> None:
        exporter = ConfigExporter(zones, lambda: Register(tmp_path / "vigie.db"))
        barrier.wait()
        try:
            outcomes.append(exporter.export(edited(dwell), DESIGNER, base_revision=1).revision)
        except ExportConflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=export, args=(2.0 + i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes, key=str) == [2, "conflict", "conflict", "conflict"]
    assert [r.number for r in SiteFolder(zones, "test-site").revisions()] == [1, 2]
