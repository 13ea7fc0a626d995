"""Benchmark sites are built from the evaluation sites' own cameras (no copy of zones or rules)."""

from __future__ import annotations

import pytest

from bench.sites import (
    CAPACITY_CLIPS,
    EVAL_SITES,
    QUICK_RATIO_CLIPS,
    RATIO_CLIPS,
    build_site,
    camera_id_for,
    capacity_clips,
    catalogue,
    lever_environment,
    without_levers,
    write_site,
)
from runner.config.loading import load_config

PETS = "opencv_vtest_pets_pedestrians.avi"


def test_every_bench_clip_has_an_evaluation_camera():
    known = catalogue()
    for clip in {*RATIO_CLIPS, *QUICK_RATIO_CLIPS, *CAPACITY_CLIPS["coco"], *CAPACITY_CLIPS["pose"]}:
        assert clip in known, clip


def test_a_clip_in_several_sites_gets_the_rules_of_all_of_them():
    coco = build_site([PETS], "coco")
    rules = {r["id"]: r["kind"] for r in coco.data["cameras"][0]["rules"]}
    # eval-crowd (density, movement), eval-abandoned and eval-weapon serve COCO; fire and person_down do not.
    assert rules == {
        "junction-density": "crowd_density",
        "junction-movement": "crowd_movement",
        "junction-left-object": "abandoned_object",
        "pets-weapon": "weapon",
    }
    assert any("pets-fire (fire) left out: needs fire" in n for n in coco.notes)
    assert any("pets-down (person_down) left out: needs pose keypoints" in n for n in coco.notes)
    pose = build_site([PETS], "pose")
    assert {r["kind"] for r in pose.data["cameras"][0]["rules"]} == {"crowd_density", "crowd_movement", "person_down"}


def test_zones_and_calibration_come_from_the_evaluation_camera():
    site = build_site([PETS], "coco")
    camera = site.data["cameras"][0]
    crowd = next(
        c
        for c in load_config(next(p for p in EVAL_SITES if p.parent.name == "eval-crowd")).config.cameras
        if c.id == "pets"
    )
    assert [z["id"] for z in camera["zones"]] == ["junction"]
    assert camera["zones"][0]["polygon"] == [list(p) for p in crowd.zone("junction").polygon]
    assert camera["calibration"] == crowd.calibration.model_dump(mode="json")
    assert camera["process_fps"] == 5.0


def test_the_site_passes_the_runner_loader(tmp_path):
    site = build_site(RATIO_CLIPS, "pose")
    loaded = write_site(site, tmp_path)
    assert [c.id for c in loaded.config.cameras] == list(site.clips)
    assert list(loaded.config.models) == ["person"]
    assert loaded.config.models["person"].weights.endswith("yolo11n-pose.pt")
    assert all(c.rules for c in loaded.config.cameras)


def test_the_capacity_and_ratio_cameras_run_every_rule_on_every_frame_of_their_rate(tmp_path):
    # camera_capacity_5fps counts cameras at 5 fps: a camera watched only for abandoned objects (1 fps by its
    # kind) still analyses 5 frames a second here, as the naive loop's stride does.
    loaded = write_site(build_site(capacity_clips("coco", 8), "coco"), tmp_path)
    kinds = {c.id: {r.kind for r in c.rules} for c in loaded.config.cameras}
    assert any(k == {"abandoned_object"} for k in kinds.values())
    assert all(c.analysed_fps == c.process_fps == 5.0 for c in loaded.config.cameras)
    assert all(r.rate_fps(c.process_fps) == 5.0 for c in loaded.config.cameras for r in c.rules)


def test_levers_switched_off_reach_the_loaded_config(tmp_path):
    site = build_site(QUICK_RATIO_CLIPS, "pose")
    default = write_site(site, tmp_path / "on").config
    off = write_site(without_levers(site, ["openvino", "motion_gate"]), tmp_path / "off").config
    assert default.models["person"].runtime == "auto" and all(c.motion_gate.enabled for c in default.cameras)
    assert off.models["person"].runtime == "torch" and not any(c.motion_gate.enabled for c in off.cameras)
    assert site.data["models"]["person"].get("runtime") is None  # the original is left as it was
    with pytest.raises(ValueError, match="unknown lever.*batching"):
        without_levers(site, ["batching"])


def test_unpinned_threads_is_switched_off_in_the_worker_environment_not_the_site(tmp_path, monkeypatch):
    from runner.inference.ov_engine import cpu_pinning

    site = build_site(QUICK_RATIO_CLIPS, "pose")
    assert without_levers(site, ["unpinned_threads"]).data == site.data
    assert lever_environment(["openvino", "motion_gate"]) == {}
    monkeypatch.delenv("VIGIE_CPU_PINNING", raising=False)
    assert not cpu_pinning()
    for name, value in lever_environment(["unpinned_threads"]).items():
        monkeypatch.setenv(name, value)
    assert cpu_pinning()


def test_a_camera_without_any_servable_rule_is_left_out():
    site = build_site(["urfall_fall-01-cam0.mp4", PETS], "coco")  # urfall has only person_down
    assert list(site.clips.values()) == [PETS]
    assert any("urfall" in n and "camera left out" in n for n in site.notes)


def test_unknown_clip_and_model_are_one_line_errors():
    with pytest.raises(ValueError, match="not in any evaluation site: nope.mp4"):
        build_site(["nope.mp4"], "coco")
    with pytest.raises(ValueError, match="unknown model 'yolo'"):
        build_site([PETS], "yolo")


def test_capacity_reuses_clips_past_the_list_with_distinct_camera_ids():
    clips = capacity_clips("pose", 17)
    assert len(clips) == 17 and clips[:15] == list(CAPACITY_CLIPS["pose"]) and clips[15] == clips[0]
    site = build_site(clips, "pose")
    assert len(site.data["cameras"]) == 17
    assert len({c["id"] for c in site.data["cameras"]}) == 17


def test_camera_ids_are_slugs_and_unique():
    taken: set[str] = set()
    assert (
        camera_id_for("fire_emoykim_test7_NEGATIVE_lasvegas_sign_night.mp4", taken)
        == "fire_emoykim_test7_negative_lasvegas_sign_night"
    )
    assert camera_id_for("a.mp4", taken) == "a"
    assert camera_id_for("a.mp4", taken) == "a-2"
